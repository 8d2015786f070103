"""Composite experiments shared by chapters, tests and the CLI.

``compare_models`` trains the MoT, the attention-free MoE and the single
transformer on the same data; ``regime_report`` computes the engine's regime
criteria (issue: "find the regime") from the runs, each with its measured value.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..engine.config import Setting, SingleConfig, TrainConfig, check_seeds
from ..engine.data import make_dataset
from ..engine.training import Run, train_mot, train_single


def compare_models(setting: Setting | None = None, cfg: TrainConfig | None = None,
                   single: SingleConfig | None = None, seeds=(0, 1, 2, 3, 4),
                   progress: bool | None = None) -> dict[str, Run]:
    """Train MoT, attention-free MoE and single transformer for the same T on the same data."""
    setting = setting or Setting()
    cfg = cfg or TrainConfig()
    single = (single or SingleConfig()).replace(T=cfg.T, record_every=cfg.record_every)
    seeds = check_seeds(list(seeds))
    data = make_dataset(setting, seeds)
    return {
        "MoT": train_mot(setting, cfg, seeds, data=data, progress=progress),
        "attention-free MoE": train_mot(setting, cfg.replace(attention=False), seeds, data=data, progress=progress),
        "single transformer": train_single(setting, single, seeds, data=data, progress=progress),
    }


def _attn_alignment(run: Run, step: int) -> np.ndarray:
    """Per seed: the smallest, over experts that receive samples, of p_{v_n*,v_n*} minus the largest other p."""
    N = run.setting.N
    at = run.at("attn", step)
    sp = run.at("specialty", step).set_index(["seed", "expert"]).value
    disp = run.at("dispatch", step).groupby(["seed", "expert"]).value.sum()
    out = []
    for seed, g in at.groupby("seed"):
        vals = []
        for m, ge in g.groupby("expert"):
            if disp.loc[(seed, m)] <= 0:
                continue
            P = ge.pivot(index="i", columns="j", values="value").to_numpy()
            k = N + int(sp.loc[(seed, m)])
            other = np.delete(P.ravel(), k * P.shape[1] + k).max()
            vals.append(P[k, k] - other)
        out.append(min(vals) if vals else np.nan)
    return np.asarray(out)


def regime_report(runs: dict[str, Run], min_routing: float = 0.95, min_ratio: float = 10.0) -> pd.DataFrame:
    """The regime criteria, each computed from the runs: one row per criterion, per-seed values summarised."""
    mot = runs["MoT"]
    cfg = mot.cfg
    T1, T2, T = cfg.T1, cfg.T2, cfg.T
    N = mot.setting.N
    loss = {k: r.scalar("test_loss").loc[T].to_numpy() for k, r in runs.items()}
    lw = mot.scalar("label_weight")
    rows = [
        ("every class has a specialist at T1", "classes covered = N",
         mot.scalar("classes_covered").loc[T1].to_numpy(), lambda v: v >= N),
        (f"routing accuracy at T1 >= {min_routing}", "fresh test sample",
         mot.scalar("routing_acc").loc[T1].to_numpy(), lambda v: v >= min_routing),
        ("attention aligns in Stage II: label-token weight grows", "weight at T2 - weight at T1 > 0",
         (lw.loc[T2] - lw.loc[T1]).to_numpy(), lambda v: v > 0),
        ("attention aligns in Stage II: p(v*,v*) is the top score of each used expert",
         "p(v*,v*) - max other p > 0 at T2", _attn_alignment(mot, T2), lambda v: v > 0),
    ]
    for other in ("single transformer", "attention-free MoE"):
        if other in loss:
            rows.append((f"MoT test loss at T >= {min_ratio:g}x below the {other}'s",
                         f"loss ratio {other} / MoT at step {T}", loss[other] / loss["MoT"],
                         lambda v: v >= min_ratio))
    table = []
    for name, how, v, ok in rows:
        v = np.asarray(v, float)
        passed = bool(np.all(ok(v)))
        table.append({"criterion": name, "measured as": how, "min over seeds": float(np.nanmin(v)),
                      "median": float(np.nanmedian(v)), "max": float(np.nanmax(v)),
                      "seeds passing": f"{int(np.sum(ok(v)))}/{v.size}", "met": passed})
    return pd.DataFrame(table)


# ----------------------------------------------------------------------------- chapter 01: the setting, shown
from dataclasses import dataclass  # noqa: E402

from ..book.registry import ChapterParams, register  # noqa: E402
from . import comparator  # noqa: E402


@register("01_setting")
@dataclass(frozen=True)
class SettingChapterParams(ChapterParams):
    """Parameters of notebooks/01_setting.ipynb."""
    seeds: tuple = (0, 1, 2, 3, 4)
    N: int = 4
    d: int = 16
    L: int = 8
    sigma_xi: float = 1.0
    M: int = 16
    T1: int = 200
    T2: int = 300
    T: int = 500
    single_eta: object = "tuned"   # the single transformer's step: the fair comparison's tuned one, or a number

    def __post_init__(self):
        super().__post_init__()
        Setting(N=self.N, d=self.d, L=self.L, sigma_xi=self.sigma_xi)
        TrainConfig(M=self.M, T1=self.T1, T2=self.T2, T=self.T)
        comparator.check_eta("single_eta", self.single_eta)

    def setting(self) -> Setting:
        s = Setting(N=self.N, d=self.d, L=self.L, sigma_xi=self.sigma_xi)
        return s.replace(n_train=400, n_test=1000) if self.quick else s

    def train_config(self) -> TrainConfig:
        cfg = TrainConfig(M=self.M, T1=self.T1, T2=self.T2, T=self.T)
        if self.quick:  # same schedule shape, a fifth of the steps
            cfg = cfg.replace(T1=self.T1 // 2, T2=self.T2 // 2, T=self.T // 2)
        return cfg

    def single_config(self) -> tuple[SingleConfig, str]:
        """The comparator (H = 4 heads, J = 2 neurons per head, normalized GD) at ``single_eta``, and where its step
        comes from (``comparator.resolve``)."""
        return comparator.single_config(self.single_eta, setting=self.setting())


def sample_table(data, seed_index: int = 0, sample: int = 0) -> pd.DataFrame:
    """Projections of one sample's tokens on the 2N signals (rows: tokens in order; columns: c_n, v_n)."""
    X = data.train.X[seed_index, sample]
    P = (X @ data.signals[seed_index].T).numpy()
    rows = [f"token {k + 1}" for k in range(X.shape[0])]
    df = pd.DataFrame(P, index=rows, columns=data.signal_names())
    df["|noise|"] = (X - (X @ data.signals[seed_index].T) @ data.signals[seed_index]).norm(dim=-1).numpy()
    return df

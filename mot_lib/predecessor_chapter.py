"""Chapter 10 (notebooks/10_predecessor): the predecessor MoE experiment beside its published table.

Reads the committed full table (``predecessor_table.load_table``), summarises it per setting and model
(mean, sd and Student-t interval over seeds), sets it beside ``predecessor_table.PUBLISHED`` and computes
the verdicts; trains a small live run of setting 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import predecessor_table as pt
from . import rates
from .book import ChapterParams, register
from .config import _check
from .predecessor import train_predecessor
from .data import make_dataset


@register("10_predecessor")
@dataclass(frozen=True)
class PredecessorParams(ChapterParams):
    """Parameters of notebooks/10_predecessor.ipynb (the table itself comes from ``python -m mot_lib predecessor``)."""
    seeds: tuple = (0, 1, 2, 3, 4)      # seeds of the live run of setting 1
    n_live: int = 1000                  # training and test samples of the live run (the table uses 16,000)
    acc_tol: float = 1.0                # "within acc_tol points of the published accuracy"
    level: float = 0.95                 # coverage of the t-intervals
    table: str | None = None            # the full table's CSV (None: data/predecessor_table.csv)

    def __post_init__(self):
        super().__post_init__()
        _check("n_live", self.n_live, kind=int, lo=50, hi=16000)
        _check("acc_tol", self.acc_tol, lo=0.0, hi=100.0, lo_open=True)
        _check("level", self.level, lo=0.5, hi=1.0, hi_open=True)
        if self.table is not None and not isinstance(self.table, str):
            raise ValueError(f"table={self.table!r} must be a CSV path or None")

    def live(self) -> tuple:
        """(setting, seeds) of the live run: setting 1 at n_live samples (quick: 400 samples, 3 seeds)."""
        n = 400 if self.quick else self.n_live
        return pt.setting(1, n, n), list(self.seeds[:3] if self.quick else self.seeds)


def load(P: PredecessorParams) -> tuple[pd.DataFrame, dict, bool]:
    """(table, manifest, stale): stale when the engine modules changed since the table was computed."""
    df, meta = pt.load_table(P.table or pt.TABLE_CSV)
    return df, meta, meta["library_hash"] != pt.engine_hash()


def _est(values, level) -> rates.Estimate:
    return rates.mean_t(np.asarray(values, float), level)


def summary(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per (setting, model, loss): seeds, and mean, sd, t-interval of the test accuracy (%) and the entropy."""
    rows = []
    for (k, model, loss), g in df.groupby(["setting", "model", "loss"], sort=False):
        row = {"setting": k, "model": model, "loss": loss, "seeds": len(g)}
        for q in ("test_acc", "entropy"):
            v = g[q].to_numpy(float)
            e = _est(v, level)
            row.update({f"{q} mean": e.value, f"{q} sd": np.nanstd(v, ddof=1) if np.isfinite(v).sum() > 1 else np.nan,
                        f"{q} lo": e.lo, f"{q} hi": e.hi})
        rows.append(row)
    return pd.DataFrame(rows)


def beside_published(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """The baselines' summary with the published mean (and sd where published) beside ours."""
    s = summary(df[df.model.isin(pt.BASELINES)], level)
    pub = [{"setting": k, "model": m, "published acc": v.get("acc", np.nan), "published acc sd": v.get("acc_sd", np.nan),
            "published entropy": v.get("entropy", np.nan), "published entropy sd": v.get("entropy_sd", np.nan),
            "published runs": v.get("runs", np.nan)} for (k, m), v in pt.PUBLISHED.items()]
    out = s.merge(pd.DataFrame(pub), on=["setting", "model"], how="left")
    order = {m: i for i, m in enumerate(pt.BASELINES)}
    return out.sort_values(["setting", "model"], key=lambda c: c.map(order) if c.name == "model" else c,
                           ignore_index=True)


def reproduction_rows(df: pd.DataFrame, P: PredecessorParams) -> list[dict]:
    """Verdicts: each published accuracy against our mean (t-interval inside published +- acc_tol), each
    published entropy against our entropy interval (holds if it contains the published mean)."""
    rows = []
    test = f"mean over seeds, Student t {100 * P.level:g}%"
    for (k, model), pub in pt.PUBLISHED.items():
        g = df[(df.setting == k) & (df.model == model)]
        if g.empty:
            continue
        e = _est(g.test_acc, P.level)
        rows.append(rates.population_row(
            f"setting {k}: our {model}'s mean test accuracy is within {P.acc_tol:g} point of the published {pub['acc']:g}%",
            f"mean in [{pub['acc'] - P.acc_tol:g}, {pub['acc'] + P.acc_tol:g}]", e,
            (pub["acc"] - P.acc_tol, pub["acc"] + P.acc_tol), test, int(np.isfinite(g.test_acc).sum())))
        if "entropy" in pub:
            e = _est(g.entropy, P.level)
            row = rates.population_row(
                f"setting {k}: our {model}'s dispatch-entropy interval contains the published mean {pub['entropy']:g}",
                f"interval contains {pub['entropy']:g}", e, (pub["entropy"], pub["entropy"]), test,
                int(np.isfinite(g.entropy).sum()))
            inside = bool(e.lo <= pub["entropy"] <= e.hi)
            row.update(verdict="holds" if inside else "does not hold", note="" if inside else
                       f"the interval lies {'above' if e.lo > pub['entropy'] else 'below'} the published mean")
            rows.append(row)
    return rows


def attention_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """MoT minus attention-free MoE per (setting, loss, seed): test accuracy, entropy, steps to the loss level,
    and the MoT's attention share on the feature patch."""
    a = df[df.model.isin(pt.ATTENTION_MODELS)]
    wide = a.pivot_table(index=["setting", "loss", "seed"], columns="model",
                         values=["test_acc", "entropy", "steps_to_level", "label_weight"])
    out = pd.DataFrame({q: wide[(q, "MoT")] - wide[(q, "attention-free MoE")]
                        for q in ("test_acc", "entropy", "steps_to_level")})
    out["MoT label_weight"] = wide[("label_weight", "MoT")]
    for q in ("test_acc", "entropy", "steps_to_level"):
        out[f"{q} (MoT)"] = wide[(q, "MoT")]
        out[f"{q} (attention-free)"] = wide[(q, "attention-free MoE")]
    return out.reset_index()


def attention_summary(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per (setting, loss): both models' mean accuracy, entropy and steps to the level, and the MoT - MoE
    differences with their paired t-intervals."""
    rows = []
    for (k, loss), g in attention_pairs(df).groupby(["setting", "loss"], sort=True):
        row = {"setting": k, "loss": loss, "seeds": len(g)}
        for q, lab in (("test_acc", "acc %"), ("entropy", "entropy"), ("steps_to_level", "steps to level")):
            row[f"{lab} MoT"] = g[f"{q} (MoT)"].mean()
            row[f"{lab} MoE"] = g[f"{q} (attention-free)"].mean()
            row[f"{lab} diff"] = str(_est(g[q], level))
        row["reached level (MoT / MoE)"] = (f"{int(np.isfinite(g['steps_to_level (MoT)']).sum())} / "
                                            f"{int(np.isfinite(g['steps_to_level (attention-free)']).sum())}")
        row["MoT feature-patch attention"] = g["MoT label_weight"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def attention_rows(df: pd.DataFrame, P: PredecessorParams) -> list[dict]:
    """Verdicts: the MoT's test accuracy above the attention-free MoE's (paired difference, t-interval > 0)."""
    rows = []
    for (k, loss), g in attention_pairs(df).groupby(["setting", "loss"], sort=True):
        e = _est(g.test_acc, P.level)
        rows.append(rates.population_row(
            f"setting {k}, {loss}: MoT experts' test accuracy above the attention-free MoE's",
            "paired difference (points) > 0", e, (1e-9, np.inf),
            f"mean paired difference over seeds, Student t {100 * P.level:g}%", int(np.isfinite(g.test_acc).sum())))
    return rows


def live_runs(P: PredecessorParams, progress: bool | None = None) -> dict:
    """Setting 1 at n_live samples: the cubic MoE as published, and with the book's logistic loss and no early
    stop (the floor rule belongs to the predecessor's loss, and the rise rule stops the logistic runs at random
    steps: the router noise moves their loss by more than 0.02 from one step to the next)."""
    st, seeds = P.live()
    data = make_dataset(st, seeds)
    cfg = pt.baseline_config("cubic MoE", record_every=25)
    return {"predecessor's loss": train_predecessor(st, cfg, seeds, data=data, progress=progress),
            "logistic loss": train_predecessor(st, cfg.replace(loss="logistic", early_stop=False), seeds, data=data,
                                               progress=progress)}


def until_stop(run, quantity: str) -> pd.DataFrame:
    """A per-seed curve up to the step at which that seed stopped (NaN after it: a stopped seed's parameters
    are frozen while the batch goes on)."""
    w = run.scalar(quantity)
    stop = run.final("updates")
    return w.apply(lambda col: col.where(w.index <= stop[col.name])).loc[:stop.max()]

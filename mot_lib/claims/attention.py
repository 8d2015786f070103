"""Proposition 2 (Stage II): attention aligns with the expert's specialty.  Used by notebooks/03_proposition2.

Stages I and II are run (T = T2; Stage III is not needed).  From the recorded
scores p^(i)_{mu,nu} = mu^T W_KQ^(i) nu over the 2N signals (c_1..c_N, v_1..v_N)
this module measures, per seed and over the experts that receive traffic at T2
(at least ``min_share`` of the fresh test sample), with the specialty n_i* read
at T2 (W is frozen in Stage II, so it does not change there):

* ``spec``:  p_{v_n*, v_n*}, the specialty entry (median over used experts);
* ``other``: the largest |p_{mu,nu}| over every other pair (median over used experts);
* ``moved``: the largest |p_{mu,nu}(t) - p_{mu,nu}(T1)| over the other pairs: what
  Stage II itself added (W_KQ is frozen in Stage I, so p(T1) is the initialisation).

The claim is tested on a sweep over sigma0: a Theta(1) quantity has a log-log
slope near 0 in sigma0, an O(sigma0) quantity (sigma0 small) a slope of at least 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import stats
from ..book.registry import ChapterParams, register
from ..engine.config import Setting, TrainConfig, _check, _check_list
from ..engine.data import make_dataset
from ..engine.training import Run, train_mot


@register("03_proposition2")
@dataclass(frozen=True)
class Prop2Params(ChapterParams):
    """Parameters of notebooks/03_proposition2.ipynb."""
    seeds: tuple = tuple(range(20))                  # seeds of the main run and of the sigma0 sweeps (verdicts)
    side_seeds: int = 3                              # the first this many seeds (at most all) run the descriptive runs
    sigma0: float = 0.1                              # init scale of the main run
    sigma0s: tuple = (0.003, 0.01, 0.032, 0.1)     # sweep (1.5 decades; 0.1 is the main run, reused)
    M: int = 16                                      # experts
    T1: int = 100                                    # end of Stage I (chapter 02: specialization is done by step ~60)
    T2: int = 200                                    # end of Stage II (= T)
    eta2: float = 0.3                                # Stage II step, normalized GD (the engine's default)
    gd_etas: tuple = (10.0, 100.0, 1000.0)           # plain-GD Stage II steps tried
    gd_sweep_eta: float = 100.0                      # plain-GD step of the sigma0 sweep under GD
    lams: tuple = (0.3, 0.1)                         # lower router exploration levels tried (default lam = 1)
    regime_sigma0s: tuple = (0.01, 0.1)              # init scales of the regime table
    min_share: float = 0.01                          # an expert "receives traffic" above this share of test samples
    n_train: int = 500                               # training samples per seed (full batch)
    n_test: int = 1000                               # fresh test samples per seed (traffic is measured on them)
    record_every: int = 10                           # record cadence of the main runs (the sweeps record T1, T2 only)

    def __post_init__(self):
        super().__post_init__()
        for name in ("sigma0s", "gd_etas", "lams", "regime_sigma0s"):
            object.__setattr__(self, name, _check_list(name, getattr(self, name)))
        if len(self.sigma0s) < 3:
            raise ValueError(f"sigma0s={self.sigma0s!r} needs at least 3 values to fit a slope")
        for s in self.sigma0s:
            _check("sigma0s", s, lo=0.0, hi=10.0, lo_open=True)
        if len(set(self.sigma0s)) != len(self.sigma0s):
            raise ValueError(f"sigma0s={self.sigma0s!r} has duplicates")
        if max(self.sigma0s) / min(self.sigma0s) < 10 ** 1.5 * (1 - 1e-9):
            raise ValueError(f"sigma0s={self.sigma0s!r} must span at least 1.5 decades (max/min >= 31.6)")
        if not self.gd_etas:
            raise ValueError("gd_etas=() is empty; give at least one plain-GD step")
        for e in self.gd_etas:
            _check("gd_etas", e, lo=0.0, hi=1e4, lo_open=True)
        _check("gd_sweep_eta", self.gd_sweep_eta, lo=0.0, hi=1e4, lo_open=True)
        for lam in self.lams:
            _check("lams", lam, lo=0.0, hi=100.0, lo_open=True)
        if len(self.regime_sigma0s) < 1:
            raise ValueError("regime_sigma0s=() is empty; give at least one init scale")
        for s in self.regime_sigma0s:
            _check("regime_sigma0s", s, lo=0.0, hi=10.0, lo_open=True)
        _check("min_share", self.min_share, lo=0.0, hi=1.0, hi_open=True)
        _check("side_seeds", self.side_seeds, kind=int, lo=1, hi=10_000)
        _check("n_train", self.n_train, kind=int, lo=50, hi=1_000_000)
        _check("n_test", self.n_test, kind=int, lo=100, hi=1_000_000)
        _check("T1", self.T1, kind=int, lo=1, hi=100_000)
        _check("T2", self.T2, kind=int, lo=self.T1 + 1, hi=100_000)
        self.config()  # validates M, sigma0, eta2, record_every through TrainConfig
        self.setting()

    def setting(self) -> Setting:
        """The default setting with ``n_train`` training and ``n_test`` test samples per seed; quick=True
        draws fewer."""
        return Setting(n_train=300, n_test=600) if self.quick else Setting(n_train=self.n_train, n_test=self.n_test)

    def config(self, **changes) -> TrainConfig:
        """Stages I and II only (T = T2); quick=True halves both stages."""
        T1, T2 = (self.T1 // 2, self.T1 // 2 + (self.T2 - self.T1) // 2) if self.quick else (self.T1, self.T2)
        base = dict(M=self.M, sigma0=self.sigma0, T1=T1, T2=T2, T=T2, eta2=self.eta2,
                    record_every=self.record_every)
        base.update(changes)
        return TrainConfig(**base)


# ----------------------------------------------------------------------------- reading the scores
def attn_array(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """Recorded scores as an array (S, steps, M, 2N, 2N), seeds in ``run.seeds`` order, and the recorded steps."""
    at = run.rows("attn")
    at = at.assign(_o=at.seed.map({s: k for k, s in enumerate(run.seeds)})).sort_values(
        ["_o", "step", "expert", "i", "j"])
    steps = np.sort(at.step.unique())
    S, M, K = len(run.seeds), run.cfg.M, 2 * run.setting.N
    return at.value.to_numpy().reshape(S, len(steps), M, K, K), steps


def used_and_specialty(run: Run, step: int, min_share: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """(used (S,M) bool, specialty (S,M) int) at ``step``: used = receives >= min_share of the test sample."""
    N, M = run.setting.N, run.cfg.M
    d = run.at("dispatch", step)
    share = d.pivot_table(index="seed", columns="expert", values="value", aggfunc="sum").reindex(
        index=run.seeds, columns=range(M)).to_numpy() / N  # classes are (nearly) balanced
    sp = run.at("specialty", step).pivot(index="seed", columns="expert", values="value")
    return share >= min_share, sp.reindex(index=run.seeds, columns=range(M)).to_numpy().astype(int)


def score_parts(P: np.ndarray, spec: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
    """From scores P (..., M, 2N, 2N) and specialties (..., M): the specialty entry and the largest |other|."""
    K = 2 * N
    k = N + spec                                            # index of v_{n*} among c_1..c_N, v_1..v_N
    flat = P.reshape(*P.shape[:-2], K * K)
    diag_idx = (k * K + k)[..., None]
    own = np.take_along_axis(flat, np.broadcast_to(diag_idx, flat.shape[:-1] + (1,)), -1)[..., 0]
    mask = np.ones(flat.shape, bool)
    np.put_along_axis(mask, np.broadcast_to(diag_idx, flat.shape[:-1] + (1,)), False, -1)
    other = np.where(mask, np.abs(flat), -np.inf).max(-1)
    return own, other


def score_stats(run: Run, min_share: float = 0.01) -> pd.DataFrame:
    """Tidy per (seed, step): spec, other, moved (module docstring), medians over the experts used at T2."""
    A, steps = attn_array(run)
    T1, T2 = run.cfg.T1, run.cfg.T2
    used, spec = used_and_specialty(run, T2, min_share)
    N = run.setting.N
    own, other = score_parts(A, np.broadcast_to(spec[:, None, :], A.shape[:3]), N)
    ref = A[:, list(steps).index(T1)][:, None]
    _, moved = score_parts(A - ref, np.broadcast_to(spec[:, None, :], A.shape[:3]), N)
    rows = []
    for s, seed in enumerate(run.seeds):
        u = used[s]
        for t, step in enumerate(steps):
            rows.append({"seed": seed, "step": int(step), "spec": float(np.median(own[s, t, u])),
                         "other": float(np.median(other[s, t, u])),
                         "moved": float(np.median(moved[s, t, u])) if step >= T1 else np.nan,
                         "used": int(u.sum())})
    return pd.DataFrame(rows)


def other_pairs(run: Run, min_share: float = 0.01) -> pd.DataFrame:
    """One row per (seed, used expert) at T2: which pair holds the largest other |p|, and whether the
    specialty entry exceeds it (``spec_top``).

    Pairs are named by role, (query, key): v* and c* are the expert's own classification and
    class signals, v and c those of any other class.
    """
    A, steps = attn_array(run)
    used, spec = used_and_specialty(run, run.cfg.T2, min_share)
    N = run.setting.N
    X = A[:, list(steps).index(run.cfg.T2)]
    rows = []
    for s, seed in enumerate(run.seeds):
        for m in np.nonzero(used[s])[0]:
            k = N + spec[s, m]
            Q = np.abs(X[s, m])
            own = X[s, m, k, k]
            Q = Q.copy()
            Q[k, k] = -1.0
            a, b = np.unravel_index(np.argmax(Q), Q.shape)
            role = lambda i: "v*" if i == k else ("c*" if i == k - N else ("c" if i < N else "v"))  # noqa: E731
            rows.append({"seed": seed, "expert": int(m), "pair": f"p({role(a)}, {role(b)})",
                         "spec_top": bool(own > Q[a, b])})
    return pd.DataFrame(rows)


def other_kind(run: Run, min_share: float = 0.01) -> pd.Series:
    """Share of (seed, used expert) whose largest other |p| at T2 is each kind of pair (``other_pairs``)."""
    return other_pairs(run, min_share).pair.value_counts(normalize=True).rename("share")


# ----------------------------------------------------------------------------- experiments
def run_stage2(P: Prop2Params, data=None, seeds=None, **changes) -> Run:
    """Stages I-II at the chapter's parameters (``changes`` override TrainConfig fields), seeds batched
    (all of ``P.seeds`` unless ``seeds`` is given)."""
    setting = P.setting()
    seeds = list(P.seeds if seeds is None else seeds)
    data = data if data is not None and data.seeds == seeds else make_dataset(setting, seeds)
    return train_mot(setting, P.config(**changes), seeds, data=data)


def endpoint(run: Run, min_share: float = 0.01, **labels) -> pd.DataFrame:
    """One row per seed: spec and other at T1 (= init) and T2, what Stage II moved, and at T2 the share
    of used experts whose specialty entry is their largest entry (``top``) and the most frequent
    largest-other pair (``pair``)."""
    st = score_stats(run, min_share)
    T1, T2 = run.cfg.T1, run.cfg.T2
    a = st[st.step == T1].set_index("seed")
    b = st[st.step == T2].set_index("seed")
    op = other_pairs(run, min_share).groupby("seed")
    top = op.spec_top.mean().reindex(run.seeds)
    pair = op.pair.agg(lambda x: x.mode().iloc[0]).reindex(run.seeds)
    return pd.DataFrame({**labels, "seed": list(run.seeds), "spec_T1": a.spec.reindex(run.seeds).to_numpy(),
                         "other_T1": a.other.reindex(run.seeds).to_numpy(),
                         "spec_T2": b.spec.reindex(run.seeds).to_numpy(),
                         "other_T2": b.other.reindex(run.seeds).to_numpy(),
                         "moved_T2": b.moved.reindex(run.seeds).to_numpy(),
                         "used": b.used.reindex(run.seeds).to_numpy(), "top": top.to_numpy(),
                         "pair": pair.to_numpy(),
                         "label_weight_T2": run.scalar("label_weight").loc[T2].reindex(run.seeds).to_numpy()})


def sigma0_sweep(P: Prop2Params, data=None, known: dict | None = None, **changes) -> pd.DataFrame:
    """Stages I-II for each sigma0 in ``P.sigma0s`` (recording T1 and T2 only); ``endpoint`` rows.

    ``known`` maps a sigma0 to a finished run with the same configuration (up to
    the record cadence), which is reused instead of trained again.
    """
    setting = P.setting()
    data = data if data is not None else make_dataset(setting, list(P.seeds))
    frames = []
    for s0 in P.sigma0s:
        cfg = P.config(sigma0=s0, **changes)
        run = (known or {}).get(s0)
        if run is None or run.cfg.replace(record_every=cfg.record_every) != cfg:
            run = train_mot(setting, cfg.replace(record_every=cfg.T), list(P.seeds), data=data)
        frames.append(endpoint(run, P.min_share, sigma0=s0))
    return pd.concat(frames, ignore_index=True)


def _sweep_point(P: Prop2Params, s0: float, changes: dict) -> pd.DataFrame:
    """One point of ``sigma0_sweep``: Stages I-II at ``s0`` under ``changes``, recording T1 and T2 only."""
    cfg, seeds = P.config(sigma0=s0, **changes), list(P.seeds)
    run = train_mot(P.setting(), cfg.replace(record_every=cfg.T), seeds, data=make_dataset(P.setting(), seeds))
    return endpoint(run, P.min_share, sigma0=s0)


def sigma0_sweeps(P: Prop2Params, variants: dict[str, dict], known: dict | None = None, jobs: int | None = None
                  ) -> dict[str, pd.DataFrame]:
    """``sigma0_sweep`` under each of ``variants`` (name -> config changes), every (variant, sigma0) point on
    ``jobs`` worker processes (``executor.chapter_jobs()`` when None); ``known`` as in ``sigma0_sweep`` (its runs are
    summarised here, not sent to a worker).  The rows are those of ``sigma0_sweep``, whatever ran where."""
    from ..experiments.executor import chapter_executor
    parts: dict = {}
    with chapter_executor(jobs) as ex:
        for name, changes in variants.items():
            for s0 in P.sigma0s:
                cfg = P.config(sigma0=s0, **changes)
                run = (known or {}).get(s0)
                if run is not None and run.cfg.replace(record_every=cfg.record_every) == cfg:
                    parts[name, s0] = endpoint(run, P.min_share, sigma0=s0)
                else:
                    parts[name, s0] = ex.submit(_sweep_point, P, s0, changes)
        parts = {k: v if isinstance(v, pd.DataFrame) else v.result() for k, v in parts.items()}
    return {name: pd.concat([parts[name, s0] for s0 in P.sigma0s], ignore_index=True) for name in variants}


def gd_runs(P: Prop2Params, record_every: int = 25) -> dict[float, Run]:
    """Stage II by plain GD at each step in ``P.gd_etas`` (Stage I unchanged), sigma0 = P.sigma0, on the
    first ``side_seeds`` seeds (a descriptive comparison; the verdicts use the sweeps)."""
    side = list(P.seeds[:P.side_seeds])
    data = make_dataset(P.setting(), side)
    return {eta: run_stage2(P, data, side, stage2_opt="gd", eta2=eta, record_every=record_every)
            for eta in P.gd_etas}


def regime_table(P: Prop2Params, base: pd.DataFrame, data=None) -> pd.DataFrame:
    """Other regimes (normalized-GD Stage II): less router exploration, at the init scales ``regime_sigma0s``.

    Rows for the default exploration (lam = 1) come from ``base`` (the sigma0
    sweep's ``endpoint`` rows) when it holds that sigma0; each lower level in
    ``P.lams`` is trained.  One row per (lam, sigma0), medians over the first
    ``side_seeds`` seeds (a descriptive table).
    """
    cols = {"spec_T2": "p(v*,v*) at T2", "other_T1": "largest other |p| at T1 (init)",
            "other_T2": "largest other |p| at T2", "moved_T2": "largest change of another entry",
            "top": "share of experts with p(v*,v*) largest"}
    side = list(P.seeds[:P.side_seeds])
    data = data if data is not None and data.seeds == side else make_dataset(P.setting(), side)
    rows = []
    for lam in (TrainConfig().lam,) + tuple(P.lams):
        for s0 in P.regime_sigma0s:
            if lam == TrainConfig().lam and np.isclose(base.sigma0, s0).any():
                e = base[np.isclose(base.sigma0, s0) & base.seed.isin(side)]
            else:
                e = endpoint(run_stage2(P, data, side, lam=lam, sigma0=s0, record_every=P.T2), P.min_share)
            rows.append({"exploration lam": lam, "sigma0": s0, **{v: e[k].median() for k, v in cols.items()},
                         "most frequent largest other pair": e.pair.mode().iloc[0]})
    return pd.DataFrame(rows)


SLOPE_TEST = stats.SEEDWISE_TEST.format(what="log-log slope in sigma0")


def slope_estimate(df: pd.DataFrame, x: str, y: str):
    """The median over seeds of each seed's log-log slope of y against x, with its order-statistic interval.  A
    seed with a non-positive value cannot enter a log-log fit; its slope is NaN and it leaves the median."""
    d = df[[x, y, "seed"]]
    d = d.assign(**{y: d[y].where(d[y] > 0)})
    return stats.seedwise_fit(d, x, y)[0]


def slope_row(df: pd.DataFrame, x: str, y: str, claim: str, bound: str, accept, id: str | None = None) -> dict:
    """Log-log slope of y against x fitted per seed, then the median over seeds with its order-statistic interval,
    as a verdict row.  A seed with a non-positive value cannot enter a log-log fit; its slope is NaN and it
    leaves the median (the row's seed count says how many seeds entered)."""
    d = df[[x, y, "seed"]]
    d = d.assign(**{y: d[y].where(d[y] > 0)})
    est, n = stats.seedwise_fit(d, x, y)
    return stats.population_row(claim, bound, est, accept, SLOPE_TEST, n, id=id)

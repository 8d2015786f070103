"""Toward the theorem's regime (issue 18, point 7): the claim rows of the statements that do not hold, measured
again at larger dimension ``d``, at a decade lower init scale ``sigma0``, and at more classes ``N`` with the number
of experts scaled as ``N log N``, by ``python -m mot_lib sweep regime`` and committed as data/regime_trends/ (``book.trends`` reads it).

The theory is asymptotic (large d, small sigma0, M = Omega(N log N)); every chapter runs at d = 16, N = 4.  A row
that does not hold there may fail because the statement fails or because the regime is too small.  So each job
here is one regime point of one statement: the chapter's own measurement (its functions in ``mot_lib.claims``) and
its own row rule (the same ``population_row``, interval and acceptance), on fewer seeds, at that point; the table
keeps one row per (statement, axis, point, row id).  ``trend`` then says, per headline, whether the measured value
moves toward the stated one along each axis ("slope 0.89 -> 0.85 -> ... as d doubles"), which ``headlines`` and
``python -m mot_lib claims --json`` report.

The axes (``AXES``):

* ``d``: 16, 32, 64, 128 at N = 4 and the chapter's M;
* ``sigma0``: the chapter's init scales divided by 10 (at d = 16, N = 4) beside the default, where the statement
  is about sigma0 and the longer runs fit (Proposition 1's plain-GD Stage I needs 1/(eta sigma0) steps, ten times
  more a decade lower: left out, and said so);
* ``N``: 2, 4, 8 classes at d = 32 (d = 16 leaves no room for noise beside 2N = 16 orthogonal signals), with M
  scaled as the chapter's M times (N ln N) / (4 ln 4), rounded, at least N.

The headline claim rows themselves stay computed live in their chapters from the chapters' seeds; this table is
the regime trend beside them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

NAME = "regime_trends"
#: seeds of every regime point (the first seeds of the chapters' own defaults)
SEEDS = tuple(range(8))
DS = (16, 32, 64, 128)
NS = (2, 4, 8)
N_AXIS_D = 32
SIGMA0_FACTOR = 0.1
#: the statements whose headline does not hold, and the claim rows each regime point measures
ROWS = {
    "prop1": ("prop1.gap_at_tspec_gd", "prop1.steps_sigma0_gd"),
    "prop2": ("prop2.other_scores", "prop2.other_scores_gd"),
    "lemma1": tuple(f"lemma1.{r}.{k}" for r in ("default", "noisy")
                    for k in ("mot_loss", "moe_plateau", "moe_floor", "mot_below_floor")),
    "theorem1": ("theorem1.mot_gd", "theorem1.mot_gd_train"),
}
#: the axes each statement is swept along (module docstring)
AXES = {"prop1": ("d", "N"), "prop2": ("d", "sigma0", "N"), "lemma1": ("d", "N"), "theorem1": ("d", "N")}


def experts(M0: int, N: int) -> int:
    """The number of experts at N classes when the chapter uses M0 at N = 4: M0 (N ln N) / (4 ln 4), rounded, at
    least N."""
    return max(N, int(round(M0 * N * math.log(N) / (4 * math.log(4)))))


@dataclass(frozen=True)
class Point:
    """One regime point of one statement."""
    statement: str
    axis: str          # "d", "sigma0" or "N"
    d: int = 16
    N: int = 4
    sigma0_factor: float = 1.0
    seeds: tuple = SEEDS
    quick: bool = False     # the chapters' quick schedules (``--smoke``: a check that the sweep runs)

    def label(self) -> dict:
        return {"statement": self.statement, "axis": self.axis, "d": self.d, "N": self.N,
                "sigma0_factor": self.sigma0_factor}


def points(seeds=SEEDS) -> list[Point]:
    """Every regime point: per statement, each of its axes (the default point, d = 16 and N = 4, appears on each
    axis it lies on: the trend along an axis is read from that axis's own rows)."""
    out = []
    for st, axes in AXES.items():
        for ax in axes:
            if ax == "d":
                out += [Point(st, "d", d=d, seeds=tuple(seeds)) for d in DS]
            elif ax == "sigma0":
                out += [Point(st, "sigma0", sigma0_factor=f, seeds=tuple(seeds)) for f in (1.0, SIGMA0_FACTOR)]
            else:
                out += [Point(st, "N", d=N_AXIS_D, N=n, seeds=tuple(seeds)) for n in NS]
    return out


def _at(cls, p: Point, **fields):
    """The chapter's parameters ``cls`` at regime point ``p``: its setting with p's d and N (every other field of
    the setting as the chapter has it), its M scaled for N, and ``fields``."""
    class At(cls):
        def setting(self):
            return super().setting().replace(d=p.d, N=p.N)
    M0 = cls().M if hasattr(cls(), "M") else None
    if M0 is not None and p.N != 4:
        fields.setdefault("M", experts(M0, p.N))
    return At(seeds=tuple(p.seeds), quick=p.quick, **fields)


#: the accepted range of each row (the chapters' own: their notebooks pass the same values to the same functions)
ACCEPT = {"prop1.gap_at_tspec_gd": (0.25, 0.75), "prop1.steps_sigma0_gd": (-math.inf, 0.75),
          "prop2.other_scores": (0.75, math.inf), "prop2.other_scores_gd": (0.75, math.inf),
          **{f"lemma1.{r}.mot_loss": (1.0, math.inf) for r in ("default", "noisy")},
          **{f"lemma1.{r}.{k}": (0.5, 1.0) for r in ("default", "noisy")
             for k in ("moe_plateau", "moe_floor", "mot_below_floor")},
          "theorem1.mot_gd": (-math.inf, 0.25), "theorem1.mot_gd_train": (-math.inf, 0.25)}


def _prop1(p: Point) -> list[dict]:
    from . import specialization as spz
    P = _at(spz.Prop1Params, p, long_seeds=len(p.seeds), gd_seeds=len(p.seeds))
    df = spz.gd_sweep(P, "sigma0")
    theta = r"$\Theta(\sigma_0^{0.5})$"
    return [spz.exponent_row(df, "sigma0", "gap_at_t_spec", "plain GD: gap at t_spec", 0.5, theta,
                             id="prop1.gap_at_tspec_gd"),
            spz.upper_bound_row(df.assign(inv_sigma0=1 / df.sigma0), "inv_sigma0", "t_spec",
                                "plain GD: steps Stage I needs", 0.5, "exponent of $1/\\sigma_0$",
                                id="prop1.steps_sigma0_gd")]


def _prop2(p: Point) -> list[dict]:
    from . import attention as att
    base = att.Prop2Params()
    P = _at(att.Prop2Params, p, sigma0s=tuple(s * p.sigma0_factor for s in base.sigma0s))
    O = r"$O(\sigma_0)$: slope at least 0.75"
    ngd = att.sigma0_sweep(P)
    gd = att.sigma0_sweep(P, stage2_opt="gd", eta2=P.gd_sweep_eta)
    return [att.slope_row(ngd, "sigma0", "other_T2", "largest other |p| at T2 (normalized GD)", O,
                          ACCEPT["prop2.other_scores"], id="prop2.other_scores"),
            att.slope_row(gd, "sigma0", "other_T2", "largest other |p| at T2 (plain GD)", O,
                          ACCEPT["prop2.other_scores_gd"], id="prop2.other_scores_gd")]


def _lemma1(p: Point) -> list[dict]:
    from . import floor as fl
    P = _at(fl.FloorParams, p)
    out = []
    for regime, setting in (("default", P.default_setting()), ("noisy", P.noisy_setting())):
        setting = setting.replace(d=p.d, N=p.N)
        cfg = P.train_config() if p.N == 4 else P.train_config(M=experts(P.train_config().M, p.N))
        out += fl.verdict_rows(_lemma1_runs(P, setting, cfg), regime, P)
    return out


def _lemma1_runs(P, setting, cfg) -> dict:
    """``floor.run_regime``, except that where the attention-free MoE's tuned Stage III step diverges on a verdict
    seed (the chapter stops there), the next step of the tuning table's order is taken (the chapter's choice when
    nothing diverges, so the same runs as the chapter's)."""
    from . import floor as fl
    from ..engine.data import make_dataset
    from ..engine.training import train_mot
    _, tab = fl.tune_af_eta3(P, setting, cfg)
    seeds = list(P.seeds)
    data = make_dataset(setting, seeds)
    mot = train_mot(setting, cfg, seeds, data=data)
    for eta in tab[~tab.diverged].sort_values("train loss at T", kind="stable").eta3:
        base, tuned = fl.stage3_branches(setting, cfg, seeds, (float(eta),), data=data)
        if tuned[float(eta)] is not None:
            return {"MoT": mot, "attention-free MoE": tuned[float(eta)], fl.AT_MOT_STEPS: base}
    raise ValueError(f"every Stage III step of af_eta3_grid={list(P.af_eta3_grid)} diverged on a verdict seed")


def _theorem1(p: Point) -> list[dict]:
    from . import convergence as cv
    from ..engine.data import make_dataset
    P = _at(cv.Theorem1Params, p)
    setting = P.setting()
    cfg_M = {} if p.N == 4 else {"M": experts(cv.TrainConfig().M, p.N)}
    eta, _ = cv.tune_step(P, setting) if not cfg_M else _tune_M(P, setting, cfg_M)
    cfg = P.mot_config("gd", eta3=eta, lam3=P.lam3, every=P.gd_every).replace(**cfg_M)
    seeds = list(P.seeds)
    run, diverged = cv.train_surviving(setting, cfg, seeds, make_dataset(setting, seeds), loss_every=1,
                                       detail=False)                                           # as the chapter
    df = cv.measure(P, {cv.GD: run})
    fits = cv.all_fits(df, diverged)
    b = r"growth exponent $k \le 0.25$"
    return [cv.growth_row("plain-GD Stage III, expected loss", b, fits[cv.GD], ACCEPT["theorem1.mot_gd"],
                          id="theorem1.mot_gd", diverged=diverged),
            cv.growth_row("plain-GD Stage III, training loss", b, fits[cv.GD_TRAIN], ACCEPT["theorem1.mot_gd_train"],
                          id="theorem1.mot_gd_train", diverged=diverged)]


def _tune_M(P, setting, cfg_M):
    """``convergence.tune_step`` with the experts scaled for N (its configurations take M from the default)."""
    from . import convergence as cv

    class Scaled(type(P)):
        def mot_config(self, *a, **k):
            return super().mot_config(*a, **k).replace(**cfg_M)
    Q = Scaled(**{f: getattr(P, f) for f in P.__dataclass_fields__})
    return cv.tune_step(Q, setting)


MEASURE = {"prop1": _prop1, "prop2": _prop2, "lemma1": _lemma1, "theorem1": _theorem1}
#: relative cost of a point (to hand the heaviest out first): grows with d and with the experts
COST = {"prop1": 3.0, "prop2": 1.0, "lemma1": 2.0, "theorem1": 3.0}


def cost(p: Point) -> float:
    return COST[p.statement] * (p.d / 16) * (p.N / 4 + 0.5)


def run_point(p: Point) -> pd.DataFrame:
    """The rows of one regime point: label columns, id, measured, lo, hi, seeds, verdict, the accepted range, and a
    note.  A measurement that stops (every step diverged, say) gives its rows without an estimate, the reason in
    the note, rather than stopping the sweep."""
    from ..engine.training import DivergenceError
    try:
        rows, note = MEASURE[p.statement](p), "none"
    except (ValueError, DivergenceError) as e:
        rows = [{"id": i, "measured": math.nan, "interval": [math.nan, math.nan], "seeds": 0,
                 "verdict": "inconclusive"} for i in ROWS[p.statement]]
        note = " ".join(f"{type(e).__name__}: {e}".split())
    out = []
    for r in rows:
        lo, hi = r["interval"]
        a_lo, a_hi = ACCEPT[r["id"]]
        out.append({**p.label(), "id": r["id"], "measured": r["measured"], "lo": lo, "hi": hi,
                    "seeds": r.get("seeds"), "verdict": r["verdict"], "accept_lo": a_lo, "accept_hi": a_hi,
                    "quick": p.quick, "note": note})
    return pd.DataFrame(out)


def smoke_points() -> list[Point]:
    """A check that the sweep runs and writes its table (``--smoke``): every statement at d = 16 and 32 on the
    chapters' quick schedules, 2 seeds."""
    return [Point(st, "d", d=d, seeds=(0, 1), quick=True) for st in AXES for d in DS[:2]]


def _in_worker(args) -> pd.DataFrame:
    point, threads = args
    import torch
    if threads:
        torch.set_num_threads(threads)
    return run_point(point)


def run(pts: list[Point], ex=None, threads: int = 1, cache=None, fingerprint=None) -> pd.DataFrame:
    """Every point (heaviest first) on executor ``ex`` (None: in this process), resumable under ``cache``; the
    rows of all, in the points' order (so the table does not depend on where the jobs ran).  A point that lies on
    two axes (d = 32, N = 4 is on the d axis and on the N axis) is measured once."""
    from dataclasses import replace

    from ..experiments import executor
    unique = list(dict.fromkeys(replace(p, axis="") for p in pts))
    order = sorted(range(len(unique)), key=lambda i: -cost(unique[i]))
    got = executor.run(_in_worker, [(p, threads) for p in unique], ex or executor.InProcess(), cache=cache,
                       fingerprint=fingerprint, desc=NAME, order=order,
                       describe=lambda a: f"{a[0].statement} at d={a[0].d} N={a[0].N} sigma0 x{a[0].sigma0_factor:g}")
    by = dict(zip(unique, got))
    out = []
    for p in pts:
        rows = by[replace(p, axis="")].assign(axis=p.axis)
        if "note" not in rows:          # a result kept from before the note existed: its measurement did not stop
            rows = rows.assign(note="none")
        if sorted(rows.id) != sorted(ROWS[p.statement]):
            raise ValueError(f"{p}: its measurement wrote rows {sorted(rows.id)}, not {sorted(ROWS[p.statement])}")
        out.append(rows)
    return pd.concat(out, ignore_index=True)

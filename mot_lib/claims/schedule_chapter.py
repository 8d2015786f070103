"""Chapter 09 (notebooks/09_training_schedule): does the MoT need three stages, and which commits first, an
expert to a class or the gate to an expert?

Reads the committed sweep ``sweeps.load("training_schedule")`` (its jobs: ``schedule.jobs``; four parts:
schedules, grid, scaling, explore), summarises it per configuration over seeds (medians of step counts that
may lie beyond the run, with order-statistic intervals: ``beyond.censored_median_ci``), computes the verdicts
(shares of passing seeds with Wilson intervals: ``beyond.share_row``) and every sentence of the chapter that
holds a number, and reruns a few of the table's rows live (``ScheduleParams.live_jobs``, ``beyond.live_check``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import beyond
from .. import stats
from ..experiments import schedule
from ..experiments import sweeps
from ..book.registry import ChapterParams, register
from ..engine.config import Setting, _check

#: the label columns of the table (what a row's configuration is)
LABELS = ["part", "schedule", "T1", "T2", "T", "M", "lam", "eta_router"]
#: the schedules in words (``TrainConfig.schedule``)
SCHEDULE_NAMES = {"three_stage": "three stages (I, II, III)", "joint": "one stage (joint)",
                  "I_joint": "I, then II+III joint", "joint_III": "I+II joint, then III"}
BASE = schedule.BASE
#: the digits the table stores (``sweeps.save`` writes the per-seed rows with %.8g)
TABLE_DIGITS = 8


@register("09_training_schedule")
@dataclass(frozen=True)
class ScheduleParams(ChapterParams):
    """Parameters of notebooks/09_training_schedule.ipynb (the table itself comes from
    ``python -m mot_lib sweep schedule``)."""
    seeds: tuple = (0, 1)          # seeds of the live rerun (the table's seeds are in its rows)
    eps: float = 1e-3              # the test-loss level of "reaches eps" (one of sweeps.EPS_GRID)
    level: float = 0.95            # coverage of the Wilson and order-statistic intervals
    seed_share: float = 0.5        # a row holds when the share of passing seeds is above this

    def __post_init__(self):
        super().__post_init__()
        _check("eps", self.eps, lo=0.0, hi=1.0, lo_open=True)
        if self.eps not in sweeps.EPS_GRID:
            raise ValueError(f"eps={self.eps!r} is not allowed: the table records the iterations to the test-loss "
                             f"levels {', '.join(f'{e:g}' for e in sweeps.EPS_GRID)} only; choose one of those")
        _check("level", self.level, lo=0.5, hi=1.0, hi_open=True)
        _check("seed_share", self.seed_share, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        outside = [s for s in self.seeds if s not in schedule.SEEDS]
        if outside:
            raise ValueError(f"seeds={list(self.seeds)!r}: the live rerun is compared with the table's rows, which "
                             f"hold seeds {schedule.SEEDS[0]}-{schedule.SEEDS[-1]}; {outside} are not among them")

    @property
    def steps_col(self) -> str:
        """The table's column of iterations to ``eps``."""
        return steps_col(self.eps)

    def live_jobs(self) -> list:
        """The table's jobs rerun live on ``seeds``: three stages at the defaults (part "schedules"), the grid's
        half Stage I (T1 = T1/2, Stage II of its default length) and the default cell of the exploration sweep;
        quick: the first of them on the first seed.  (One-stage joint training trains attention at every step and
        costs about twice as much as the three together, too much for the chapter's time budget.)"""
        half = BASE.T1 // 2
        want = [{"part": "schedules", "schedule": "three_stage"},
                {"part": "grid", "T1": half, "T2": half + BASE.T2 - BASE.T1},
                {"part": "explore", "lam": BASE.lam, "eta_router": BASE.eta_router}]
        seeds = tuple(self.seeds[:1]) if self.quick else tuple(self.seeds)
        out = []
        for w in want[:1] if self.quick else want:
            job = next(j for j in schedule.jobs() if all(j.labels[k] == v for k, v in w.items()))
            out.append(dataclasses.replace(job, seeds=seeds))
        return out


def steps_col(eps: float) -> str:
    return f"steps_to_{eps:g}"


# ---------------------------------------------------------------------- the table
def load() -> tuple[pd.DataFrame, pd.DataFrame, dict, str | None]:
    """(rows, curves, manifest, stale): stale is why the table is stale now (``sweeps.why_stale``), or None; a
    missing, changed or malformed file raises a ValueError naming it (``sweeps.load``)."""
    rows, curves, meta = sweeps.load(schedule.NAME)
    return rows, curves, meta, sweeps.why_stale(meta, ("schedule",))


def part(rows: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of one part of the sweep; a table without it raises, naming the part."""
    g = rows[rows.part == name]
    if g.empty:
        raise ValueError(f"the table {schedule.NAME} has no rows of part {name!r}; parts: {sorted(rows.part.unique())}; "
                         f"recreate it with `python -m mot_lib sweep schedule`")
    return g


def seeds_text(counts) -> str:
    """'20 seeds' when every configuration has as many, else '10 seeds (20 at one)' style."""
    c = pd.Series(counts).value_counts().sort_values(ascending=False)
    if len(c) == 1:
        return f"{c.index[0]} seeds each"
    main = c.index[0]
    rest = ", ".join(f"{k} at {v} of them" for k, v in c.iloc[1:].items())
    return f"{main} seeds each ({rest})"


def table_status(rows: pd.DataFrame, meta: dict, stale: str | None) -> str:
    """What the committed table holds (per part: configurations and seeds) and whether it is current."""
    parts = []
    for name in ("schedules", "grid", "scaling", "explore"):
        g = part(rows, name)
        n = g.groupby(LABELS[1:]).seed.size()
        parts.append(f"{name} ({len(n)} configurations, {seeds_text(n)})")
    cpu = ""
    if isinstance(meta.get("seconds"), (int, float)) and isinstance(meta.get("jobs"), int):
        cpu = f" (about {meta['seconds'] * meta['jobs'] / 60:.0f} CPU-minutes: {meta['seconds']} s on {meta['jobs']} worker processes)"
    return "\n".join([f"table: data/{schedule.NAME}/{sweeps.ROWS}, {len(rows)} runs (configuration x seed){cpu}: "
                       + "; ".join(parts)] + [sweeps.status(meta, stale)])


def defaults_markdown() -> str:
    """The book's default schedule and step sizes (``schedule.BASE``, the TrainConfig defaults)."""
    b = BASE
    return (f"The book's defaults, used wherever the sweep does not vary them: T1 = {b.T1}, T2 = {b.T2}, T = {b.T}; "
            f"M = {b.M} experts; $\\eta_1$ = {b.eta1:g} (`eta1`), $\\eta_2$ = {b.eta2:g} (`eta2`), $\\eta_3$ = {b.eta3:g} "
            f"(`eta3`), $\\eta_r$ = {b.eta_router:g} (`eta_router`), $\\lambda$ = {b.lam:g} (`lam`), "
            f"$\\sigma_0$ = {b.sigma0:g} (`sigma0`); the test loss is recorded every {b.record_every} steps.")


def _st(x: float, T: int) -> str:
    """A step count for a table: '220', '> T' beyond the run, '' when unknown."""
    return "" if math.isnan(x) else (f"{x:.0f}" if np.isfinite(x) else f"> {T}")


def _iv(e: stats.Estimate, T: int) -> str:
    """'220 [220, 230]' with '> T' for a step count beyond the run."""
    return f"{_st(e.value, T)} {_ivs(e, T)}"


def _ivs(e: stats.Estimate, T: int) -> str:
    """The interval alone: '[220, 230]'."""
    return f"[{_st(e.lo, T)}, {_st(e.hi, T)}]"


# ---------------------------------------------------------------------- 1. three stages against one and two
def schedule_summary(rows: pd.DataFrame, eps: float, level: float = 0.95) -> pd.DataFrame:
    """Per schedule: seeds, the median iterations to test loss ``eps`` with its interval (``censored_median_ci``:
    a seed that never reaches it within the run counts as beyond it), how many never reach it, the median
    final test loss and the median test loss at step 200."""
    g = part(rows, "schedules")
    out = []
    for sch in schedule.SCHEDULES:
        s = g[g.schedule == sch]
        if s.empty:
            continue
        steps = s[steps_col(eps)].to_numpy(float)
        out.append({"schedule": sch, "seeds": len(s), "T": int(s["T"].iloc[0]), "T1": int(s.T1.iloc[0]),
                    "T2": int(s.T2.iloc[0]), "steps": beyond.censored_median_ci(steps, level),
                    "never": int(np.isnan(steps).sum()), "final": float(s.final_test_loss.median()),
                    "at_200": float(s.loss_at_200.median())})
    return pd.DataFrame(out)


def schedule_display(summary: pd.DataFrame, eps: float, level: float = 0.95) -> pd.DataFrame:
    """``schedule_summary`` as text for the reader."""
    return pd.DataFrame({
        "schedule": [SCHEDULE_NAMES[s] for s in summary.schedule],
        "seeds": summary.seeds,
        f"median iterations to test loss {eps:g} [{100 * level:g}% interval]": [
            _iv(e, T) for e, T in zip(summary.steps, summary["T"])],
        "never within the run": [f"{k} of {n}" for k, n in zip(summary.never, summary.seeds)],
        "median final test loss": [f"{v:.2g}" for v in summary.final],
        "median test loss at step 200": [f"{v:.2g}" for v in summary.at_200],
    })


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def paired_steps(rows: pd.DataFrame, eps: float) -> pd.DataFrame:
    """Iterations to ``eps`` per seed (index) and schedule (columns), NaN = never within the run."""
    g = part(rows, "schedules")
    return g.pivot(index="seed", columns="schedule", values=steps_col(eps))


def compare_pairs(a, b) -> dict:
    """Seeds where ``a`` reaches its level earlier than ``b``, at the same step (or neither reaches it),
    or later (``beyond.faster`` both ways)."""
    fa, fb = beyond.faster(a, b), beyond.faster(b, a)
    return {"faster": int(fa.sum()), "slower": int(fb.sum()), "equal": int((~fa & ~fb).sum()), "n": len(fa)}


def same_run_until(curves: pd.DataFrame, a: str, b: str, until: int) -> float:
    """Largest absolute difference of the test-loss curves of schedules ``a`` and ``b`` at the recorded steps
    <= ``until``, over every seed (0: the same run so far)."""
    c = curves[(curves.part == "schedules") & (curves.quantity == "test_loss") & (curves.step <= until)]
    w = c.pivot_table(index=["seed", "step"], columns="schedule", values="value")
    return float((w[a] - w[b]).abs().max())


def schedule_curves(curves: pd.DataFrame, quantity: str) -> dict:
    """{schedule: wide table (index step, one column per seed)} of a recorded quantity of part "schedules"."""
    c = curves[(curves.part == "schedules") & (curves.quantity == quantity)]
    if c.empty:
        raise ValueError(f"the table's curves hold no {quantity!r} for part 'schedules'")
    return {s: g.pivot(index="step", columns="seed", values="value") for s, g in c.groupby("schedule", sort=False)}


def schedules_markdown(rows: pd.DataFrame, curves: pd.DataFrame, eps: float, level: float = 0.95) -> str:
    """What the schedules part shows, in sentences computed from the table."""
    summ = schedule_summary(rows, eps, level).set_index("schedule")
    steps = paired_steps(rows, eps)
    T, T1, T2 = (int(summ.loc["three_stage", k]) for k in ("T", "T1", "T2"))
    three = summ.loc["three_stage"]
    lines = [f"* **Three stages** reach test loss {eps:g} at a median of {beyond.steps_text(three.steps.value)} "
             f"iterations ({100 * level:g}% interval {_ivs(three.steps, T)}); "
             + (f"all {three.seeds} seeds reach it within the {T} iterations." if three.never == 0 else
                f"{three.never} of its {three.seeds} seeds never do within the {T} iterations.")]
    for other in ("joint", "I_joint", "joint_III"):
        if other not in summ.index:
            continue
        o = summ.loc[other]
        c = compare_pairs(steps["three_stage"], steps[other])
        line = (f"* **{_cap(SCHEDULE_NAMES[other])}**: median {beyond.steps_text(o.steps.value)} "
                f"(interval {_ivs(o.steps, T)}), {o.never} of {o.seeds} seeds never within {T}; "
                f"per seed, three stages are earlier on {c['faster']}, at the same recorded step (or neither reaches "
                f"it) on {c['equal']} and later on {c['slower']} of {c['n']}.")
        until = {"I_joint": T1, "joint_III": T2}.get(other)
        base = "three_stage" if other == "I_joint" else ("joint" if other == "joint_III" else None)
        if until is not None and base in summ.index:
            diff = same_run_until(curves, base, other, until)
            same = "the same run" if diff == 0 else f"differing by at most {diff:.1g}"
            line += (f" Up to step {until} it is {SCHEDULE_NAMES[base]} (the test-loss curves are {same} "
                     f"on every seed).")
        lines.append(line)
    return "\n".join(lines)


# ---------------------------------------------------------------------- 2. the stage boundaries
def grid_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The grid part with the length of Stage II, ``gap`` = T2 - T1."""
    g = part(rows, "grid")
    return g.assign(gap=g.T2 - g.T1)


def grid_table(rows: pd.DataFrame, what: str, eps: float | None = None) -> pd.DataFrame:
    """Over (T1 rows, T2 - T1 columns): the median over seeds of column ``what`` of the grid, or, for
    ``what="reached"``, how many seeds end with test loss <= ``eps``."""
    g = grid_rows(rows)
    if what == "reached":
        if eps is None:
            raise ValueError("grid_table(what='reached') needs eps")
        return g.assign(ok=g.final_test_loss <= eps).pivot_table(index="T1", columns="gap", values="ok", aggfunc="sum")
    if what not in g:
        raise ValueError(f"what={what!r} is not a column of the table; choose 'reached' or one of {list(g.columns)}")
    return g.pivot_table(index="T1", columns="gap", values=what, aggfunc="median")


def grid_seeds(rows: pd.DataFrame) -> int:
    """Seeds per grid cell (the smallest count, if they differ)."""
    return int(grid_rows(rows).groupby(["T1", "gap"]).seed.size().min())


def smallest_working(g: pd.DataFrame, by: str, eps: float) -> pd.Series:
    """Per seed (index): the smallest value of column ``by`` among ``g``'s runs of that seed that end with test
    loss <= ``eps``; NaN where none does."""
    ok = g[g.final_test_loss <= eps]
    return ok.groupby("seed")[by].min().reindex(sorted(g.seed.unique())).astype(float)


def boundaries(rows: pd.DataFrame, eps: float, level: float = 0.95) -> pd.DataFrame:
    """The smallest T1 that works with Stage II at its default length, and the smallest Stage II that works with
    T1 at its default, per seed, as a median over seeds with its interval (NaN per seed: none in the grid works)."""
    g = grid_rows(rows)
    gap0 = BASE.T2 - BASE.T1
    out = []
    for what, sub, by in ((f"smallest T1 (T2 − T1 = {gap0})", g[g.gap == gap0], "T1"),
                          (f"smallest T2 − T1 (T1 = {BASE.T1})", g[g.T1 == BASE.T1], "gap")):
        if sub.empty:
            raise ValueError(f"the grid has no runs for {what}")
        v = smallest_working(sub, by, eps)
        out.append({"question": what, "grid": sorted(sub[by].unique().tolist()), "seeds": len(v),
                    "none": int(v.isna().sum()), "median": beyond.censored_median_ci(v.to_numpy(), level),
                    "per seed": v})
    return pd.DataFrame(out)


def _grid_iv(e: stats.Estimate) -> str:
    def s(x):
        return "" if math.isnan(x) else (f"{x:.0f}" if np.isfinite(x) else "none in the grid")
    return f"{s(e.value)} [{s(e.lo)}, {s(e.hi)}]"


def boundaries_display(b: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    return pd.DataFrame({
        "the smallest value that works, per seed": b.question,
        "grid": [", ".join(map(str, v)) for v in b.grid],
        "seeds": b.seeds,
        f"median [{100 * level:g}% interval]": [_grid_iv(e) for e in b["median"]],
        "seeds where none works": b.none,
    })


def grid_markdown(rows: pd.DataFrame, eps: float, level: float = 0.95) -> str:
    """What the grid shows, in sentences computed from the table: which cells work, the routing accuracy at
    T1 (is a short Stage I a routing failure?), the size a normalized-GD Stage I can give the experts, and seeds
    that reach eps during the run but end above it."""
    g = grid_rows(rows)
    n = grid_seeds(rows)
    reached = grid_table(rows, "reached", eps)
    works = [(t1, gap, int(reached.loc[t1, gap])) for t1 in reached.index for gap in reached.columns
             if reached.loc[t1, gap] > n / 2]
    any_ = [(t1, gap, int(reached.loc[t1, gap])) for t1 in reached.index for gap in reached.columns
            if reached.loc[t1, gap] > 0]
    T = int(g["T"].iloc[0])
    lines = []
    t1s = sorted({t1 for t1, _, _ in any_})
    if any_:
        lines.append(
            f"* Runs that end at test loss ≤ {eps:g} (T = {T}) appear only at T1 = {', '.join(map(str, t1s))}: "
            + "; ".join(f"T1 = {t1}, T2 − T1 = {gap}: {k} of {n} seeds" for t1, gap, k in any_)
            + f". Every other cell of the grid: 0 of {n}."
            + (f" More than half the seeds work in {len(works)} cell{'s' if len(works) != 1 else ''}." if works else ""))
    else:
        lines.append(f"* No cell of the grid ends at test loss ≤ {eps:g} on any seed (T = {T}).")
    racc = grid_table(rows, "routing_acc_T1")
    t1min = int(racc.index.min())
    fin = grid_table(rows, "final_test_loss")
    lines.append(
        f"* A short Stage I is not a routing failure: the median routing accuracy at T1 is already "
        f"{racc.loc[t1min].min():.4f} at T1 = {t1min} (smallest median over the grid: {racc.min().min():.4f}). "
        f"The cause we point to is the experts' size, which the table does not record (a one-seed check while "
        f"writing this chapter found the experts' norms near eta1·T1 after Stage I and barely changed by Stage III): "
        f"a normalized-GD step moves each expert's vector by exactly eta1 = {BASE.eta1:g}, "
        f"so Stage I can grow it by at most eta1·T1 ({', '.join(f'{BASE.eta1 * t:g} at T1 = {t}' for t in racc.index)}), "
        f"and a cubic expert's output scales with the cube of that size. Stage III's plain GD (eta3 = {BASE.eta3:g}) "
        f"barely grows a small vector (the cubic's gradient vanishes with the square of its size): at T1 = {t1min} the "
        f"median final test loss is still {fin.loc[t1min].min():.3f} to {fin.loc[t1min].max():.3f} over T2 − T1, "
        f"against log 2 = {math.log(2):.3f} for an output of 0.")
    col = steps_col(eps)
    left = g[np.isfinite(g[col]) & (g.final_test_loss > eps)]
    if len(left):
        cells = left.groupby(["T1", "gap"]).size()
        lines.append(
            f"* \"Works\" means the run *ends* at test loss ≤ {eps:g}. {len(left)} runs reach it during the run and "
            f"end above it (" + "; ".join(f"T1 = {a}, T2 − T1 = {b}: {k}" for (a, b), k in cells.items())
            + ")" + (": they reach it within Stage II (by T2) and rise above it again in Stage III."
                     if bool((left[col] <= left.T2).all()) else "."))
    return "\n".join(lines)


def label_weight_markdown(rows: pd.DataFrame) -> str:
    """What the label token's attention weight at T2 means (query sum pooling: uniform attention gives every
    token weight 1, attention of every query on the label token alone gives L) and what the grid measures."""
    L = Setting().L
    lw = grid_table(rows, "label_weight_T2")
    t1 = BASE.T1 if BASE.T1 in lw.index else lw.index.max()
    row = lw.loc[t1]
    return (f"The label token's attention weight is summed over the {L} queries (the book's query sum pooling): "
            f"uniform attention gives every token weight 1, and every query attending to the label token alone gives "
            f"{L}. At T1 = {t1} its median at T2 is "
            + ", ".join(f"{v:.2f} after {gap} steps of Stage II" for gap, v in row.items())
            + f"; over the whole grid it ranges from {lw.min().min():.2f} to {lw.max().max():.2f}.")


def scaling_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return part(rows, "scaling")


def scaling_table(rows: pd.DataFrame, eps: float, level: float = 0.95) -> pd.DataFrame:
    """Per number of experts M: the smallest T1 that works per seed (Stage II of ``schedule.SCALING_GAP`` steps
    and Stage III of ``schedule.SCALING_III`` after it) as a median with its interval, how many seeds work at no
    T1 of the grid, and Proposition 1's prediction T1 ∝ M scaled from the default M's measured median."""
    g = scaling_rows(rows)
    per = {M: smallest_working(g[g.M == M], "T1", eps) for M in sorted(g.M.unique())}
    med = {M: beyond.censored_median_ci(v.to_numpy(), level) for M, v in per.items()}
    ref = med.get(BASE.M)
    grid_max = int(g.T1.max())
    out = []
    for M, v in per.items():
        pred = ref.value * M / BASE.M if ref is not None and np.isfinite(ref.value) else math.nan
        out.append({"M": M, "seeds": len(v), "median": med[M], "none": int(v.isna().sum()),
                    "predicted": pred, "grid max": grid_max, "per seed": v})
    return pd.DataFrame(out)


def scaling_counts(rows: pd.DataFrame, eps: float) -> pd.DataFrame:
    """Seeds that end with test loss <= ``eps``, over (M rows, T1 columns) of the scaling part."""
    g = scaling_rows(rows)
    return g.assign(ok=g.final_test_loss <= eps).pivot_table(index="M", columns="T1", values="ok", aggfunc="sum")


def _pred_text(p: float, grid_max: int) -> str:
    if not np.isfinite(p):
        return "undefined (no T1 works at the default M)"
    return f"{p:g}" + (" (beyond the grid)" if p > grid_max else "")


def scaling_display(tab: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    return pd.DataFrame({
        "experts M": tab.M, "seeds": tab.seeds,
        f"smallest working T1: median [{100 * level:g}% interval]": [_grid_iv(e) for e in tab["median"]],
        "seeds where no T1 works": tab.none,
        f"Proposition 1: T1 ∝ M, from M = {BASE.M}": [_pred_text(p, g) for p, g in zip(tab.predicted, tab["grid max"])],
    })


def scaling_checks(tab: pd.DataFrame, rows: pd.DataFrame, eps: float) -> list[dict]:
    """Per M other than the default: Proposition 1's predicted T1 (T1 ∝ M, anchored at the default M's median
    smallest working T1), the measured median, and whether they agree.  T1 = O(M / (eta sigma0^0.5)) is an upper
    bound on the iterations Stage I needs, so a measured median at or below the prediction agrees; a prediction
    beyond the grid agrees with a measurement of "no T1 of the grid works"."""
    t = tab.set_index("M")
    counts = scaling_counts(rows, eps)
    grid = sorted(counts.columns)
    out = []
    for M, r in t.iterrows():
        if M == BASE.M:
            continue
        p, m = r.predicted, r["median"].value
        if not np.isfinite(p):
            agrees = None
        elif p > r["grid max"]:
            agrees = True if not np.isfinite(m) else bool(m <= p)
        else:
            agrees = bool(np.isfinite(m) and m <= p)
        at = min(grid, key=lambda x: abs(x - p)) if np.isfinite(p) else None
        out.append({"M": int(M), "predicted": p, "measured": m, "agrees": agrees, "beyond grid": bool(p > r["grid max"]),
                    "grid max": int(r["grid max"]), "at": at, "works at": None if at is None else int(counts.loc[M, at]),
                    "seeds": int(r.seeds), "works somewhere": int(r.seeds - r.none)})
    return out


def _check_text(c: dict) -> str:
    meas = f"{c['measured']:.0f}" if np.isfinite(c["measured"]) else f"none of the grid (> {c['grid max']})"
    if c["agrees"] is None:
        return f"M = {c['M']}: no prediction; measured {meas}"
    if c["beyond grid"]:
        return (f"M = {c['M']}: predicted {c['predicted']:g}, beyond the grid; measured {meas}: "
                + ("consistent with it" if c["agrees"] else "earlier than predicted, within the bound"))
    return (f"M = {c['M']}: predicted {c['predicted']:g}; measured {meas} ({c['works at']} of {c['seeds']} seeds work at "
            f"T1 = {c['at']}, {c['works somewhere']} at some T1): " + ("as predicted" if c["agrees"] else "later than predicted"))


def scaling_markdown(tab: pd.DataFrame, rows: pd.DataFrame, eps: float) -> str:
    """Proposition 1's T1 ∝ M / (eta sigma0^0.5) against the measured smallest working T1, per M."""
    grid = sorted(scaling_rows(rows).T1.unique())
    t = tab.set_index("M")
    if BASE.M not in t.index or not np.isfinite(t.loc[BASE.M, "median"].value):
        return (f"At the default M = {BASE.M} no T1 of the grid ({', '.join(map(str, grid))}) works on most seeds, so "
                "the prediction has no measured anchor.")
    ref = t.loc[BASE.M, "median"].value
    return (f"Proposition 1 gives T1 = O(M/(eta sigma0^0.5)): at fixed eta and sigma0, T1 proportional to M. Anchored "
            f"at the default M = {BASE.M}, whose median smallest working T1 is {ref:.0f}, it predicts half that for "
            f"half the experts and double for double. "
            + "; ".join(_check_text(c) for c in scaling_checks(tab, rows, eps))
            + f". The grid of T1 ({', '.join(map(str, grid))}) roughly doubles from step to step, so a factor of two "
            f"is its resolution; the prediction is an upper bound, so a measured T1 at or below it agrees with it.")


# ---------------------------------------------------------------------- 3. experts or gate first
def explore_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return part(rows, "explore")


def explore_T(rows: pd.DataFrame) -> int:
    return int(explore_rows(rows)["T"].iloc[0])


def explore_table(rows: pd.DataFrame, col: str, level: float = 0.95) -> pd.DataFrame:
    """Over (lam rows, eta_router columns): the median over seeds of a step count ``col`` (t_spec, t_agree), a
    seed that never gets there within the run counting as beyond it (inf: the median is beyond the run)."""
    g = explore_rows(rows)
    return g.pivot_table(index="lam", columns="eta_router", values=col,
                         aggfunc=lambda v: beyond.censored_median_ci(v.to_numpy(float), level).value, dropna=False)


def explore_counts(rows: pd.DataFrame, col: str = "t_spec") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(seeds where ``col`` is within the run, seeds) over (lam, eta_router)."""
    g = explore_rows(rows).assign(ok=lambda d: np.isfinite(d[col]))
    k = g.pivot_table(index="lam", columns="eta_router", values="ok", aggfunc="sum")
    n = g.pivot_table(index="lam", columns="eta_router", values="ok", aggfunc="size")
    return k, n


def explore_curves(curves: pd.DataFrame, quantity: str, lam: float = BASE.lam,
                   eta_router: float = BASE.eta_router) -> pd.DataFrame:
    """A recorded quantity of one cell of the exploration sweep: index step, one column per seed."""
    c = curves[(curves.part == "explore") & (curves.quantity == quantity) & (curves.lam == lam)
               & (curves.eta_router == eta_router)]
    if c.empty:
        raise ValueError(f"the table's curves hold no {quantity!r} at lam={lam:g}, eta_router={eta_router:g}")
    return c.pivot(index="step", columns="seed", values="value")


def _rng(vals) -> str:
    """'12.5' for one value, '85 to 130' for several."""
    vals = sorted(set(float(v) for v in vals))
    return f"{vals[0]:g}" if len(vals) == 1 else f"{vals[0]:g} to {vals[-1]:g}"


def explore_markdown(rows: pd.DataFrame, curves: pd.DataFrame, level: float = 0.95) -> str:
    """Who commits first, in sentences computed from the exploration sweep."""
    T = explore_T(rows)
    ts, ta = explore_table(rows, "t_spec", level), explore_table(rows, "t_agree", level)
    k, n = explore_counts(rows, "t_spec")
    g = explore_rows(rows)
    lines = []
    zero = [lam for lam in ts.index if lam == 0]
    if zero:
        r = g[g.lam == 0]
        lines.append(
            f"* **Without exploration** (lam = 0) the experts specialize within {T} steps on {int(k.loc[0].sum())} of "
            f"{int(n.loc[0].sum())} seeds (all eta_router); the final routing accuracy has median "
            f"{r.final_routing_acc.median():.2f}. (Without exploration the gate's choice and its explored choice are "
            f"the same by definition, so t_agree is the first recorded step.)")
    pos = [lam for lam in ts.index if lam > 0]
    if pos:
        v = ts.loc[pos].to_numpy().ravel()
        kk, nn = int(k.loc[pos].to_numpy().sum()), int(n.loc[pos].to_numpy().sum())
        tsp = g[g.lam > 0].t_spec.dropna()
        lines.append(f"* **With exploration** (lam > 0) the experts specialize on {kk} of {nn} seeds, at a median "
                     f"t_spec of {_rng(v[np.isfinite(v)])} steps over the cells (per seed {_rng(tsp)}).")
        fin = [(lam, er, ta.loc[lam, er]) for lam in pos for er in ta.columns if np.isfinite(ta.loc[lam, er])]
        inf = [(lam, er) for lam in pos for er in ta.columns if not np.isfinite(ta.loc[lam, er])]
        text = "* The gate commits (its choice without exploration agrees with its explored choice on " \
               f"{100 * sweeps.AGREE_MIN:g}% of the training samples) later"
        if fin:
            text += ": median t_agree " + ", ".join(f"{t:g} at (lam, eta_router) = ({lam:g}, {er:g})" for lam, er, t in fin)
        if inf:
            text += ("; in the other cells, (lam, eta_router) = " + ", ".join(f"({lam:g}, {er:g})" for lam, er in inf)
                     + ", the median is beyond the run (at least half the seeds never commit)")
        lines.append(text + ".")
        d = g[(g.lam == BASE.lam) & (g.eta_router == BASE.eta_router)]
        if len(d):
            never = int(np.isnan(d.t_agree).sum())
            agree = explore_curves(curves, "explore_agree").iloc[-1]
            lines.append(
                f"* At the book's default (lam = {BASE.lam:g}, eta_router = {BASE.eta_router:g}, {len(d)} seeds): median "
                f"t_spec {beyond.censored_median_ci(d.t_spec.to_numpy(), level).value:g} steps (per seed "
                f"{_rng(d.t_spec.dropna())}); the gate never commits within {T} steps on {never} of {len(d)} seeds: "
                f"at step {T} the explored choice is the gate's own on a median {agree.median():.2f} of the training "
                f"samples (range {agree.min():.2f} to {agree.max():.2f} over seeds).")
    return "\n".join(lines)


# ---------------------------------------------------------------------- the verdicts
def _pass_rate_text(n: int, level: float, seed_share: float) -> int | None:
    """The smallest number of passing seeds out of ``n`` whose Wilson interval lies above ``seed_share``."""
    for k in range(n + 1):
        if stats.wilson(k, n, level)[0] > seed_share:
            return k
    return None


def rules_markdown(P: ScheduleParams, rows: pd.DataFrame) -> str:
    """The rules of the verdicts, with the numbers they use (parameters and the table's seed counts)."""
    ns = sorted({len(part(rows, "schedules").pipe(lambda d: d[d.schedule == "three_stage"])), grid_seeds(rows)})
    need = "; ".join(f"with {n} seeds, at least {_pass_rate_text(n, P.level, P.seed_share)} must pass" for n in ns)
    T = explore_T(rows)
    return "\n".join([
        f"Each row is a per-seed pass/fail property, decided on the share of passing seeds: **holds** when the "
        f"Wilson {100 * P.level:g}% interval of that share lies above `seed_share` = {P.seed_share:g}, **does not hold** "
        f"when it lies below, **inconclusive** otherwise ({need}). Why {P.seed_share:g}: as in the claim chapters "
        f"(Lemma 1's per-seed properties), the question is about the typical seed, so a row holds when more than "
        f"half the population of seeds passes, and the interval says whether the table's seeds show that. The "
        f"questions and this rule come from the issue that asked for the chapter, written after the table was "
        f"computed: they are not blind to it, and each row states what the table shows, with an interval that says "
        f"how far its seeds settle it.",
        "",
        f"* *Earlier than another schedule* (rows 1-3): a seed passes when three stages reach test loss ≤ `eps` = "
        f"{P.eps:g} at an earlier recorded step than the other schedule on the same seed (same data, "
        f"initialisation and exploration draws; `beyond.faster`). Reaching it beats never reaching it within the "
        f"{BASE.T} iterations; the same step, or neither reaching it, fails. The test loss is recorded every "
        f"{BASE.record_every} iterations, so \"earlier\" means at least one recording earlier.",
        f"* *Reaches eps* (rows 4-6): a seed passes when its run ends with test loss ≤ {P.eps:g}.",
        f"* *Specialize before the gate commits* (row 7): a seed passes when t_spec < t_agree (recorded every "
        f"{schedule.EXPLORE_EVERY} steps), a t_agree beyond the {T} steps counting as later.",
        f"* *Specialize within {T} steps* (row 8): a seed passes when its t_spec is within the run.",
    ])


def _cell(rows: pd.DataFrame, where: str, **labels) -> pd.DataFrame:
    g = part(rows, where)
    for k, v in labels.items():
        g = g[g[k] == v]
    if g.empty:
        raise ValueError(f"the table {schedule.NAME} has no runs of part {where!r} with {labels}; recreate it with "
                         f"`python -m mot_lib sweep schedule`")
    return g.sort_values("seed")


def verdict_rows(rows: pd.DataFrame, P: ScheduleParams) -> list[dict]:
    """The chapter's verdicts (``beyond.share_row``), in the order of ``rules_markdown``."""
    out = []
    steps = paired_steps(rows, P.eps)
    lvl, share = P.level, P.seed_share
    bound = f"share of seeds > {share:g}"
    for other, name in (("joint", "one-stage joint training"), ("I_joint", "Stage I then II+III joint"),
                        ("joint_III", "I+II joint then Stage III")):   # ids schedule.vs_<other> (the claim registry)
        if other not in steps or "three_stage" not in steps:
            raise ValueError(f"the table's part 'schedules' lacks the schedule {other!r} or 'three_stage'")
        out.append(beyond.share_row(
            f"Three stages reach test loss {P.eps:g} in fewer iterations than {name}", bound,
            beyond.faster(steps["three_stage"], steps[other]), lvl, share,
            f"three stages reach it at an earlier recorded step than {name}, same data and initialisation",
            id=f"schedule.vs_{other}"))
    T1h, gap0 = BASE.T1 // 2, BASE.T2 - BASE.T1
    g = _cell(rows, "grid", T1=T1h, T2=T1h + gap0)
    out.append(beyond.share_row(
        f"A Stage I of half the default (T1 = {T1h}, T2 − T1 = {gap0}) reaches test loss {P.eps:g} by T = {int(g['T'].iloc[0])}",
        bound, g.final_test_loss <= P.eps, lvl, share, f"the run ends at test loss ≤ {P.eps:g}", id="schedule.half_stage1"))
    g = _cell(rows, "grid", T1=BASE.T1, T2=BASE.T1)
    out.append(beyond.share_row(
        f"Skipping Stage II (T2 = T1 = {BASE.T1}) reaches test loss {P.eps:g} by T = {int(g['T'].iloc[0])}",
        bound, g.final_test_loss <= P.eps, lvl, share, f"the run ends at test loss ≤ {P.eps:g}", id="schedule.skip_stage2"))
    g = _cell(rows, "scaling", M=BASE.M // 2, T1=T1h)
    out.append(beyond.share_row(
        f"Proposition 1's scaling: with half the experts (M = {BASE.M // 2}), half the default Stage I (T1 = {T1h}, "
        f"T2 − T1 = {int(g.T2.iloc[0] - g.T1.iloc[0])}) reaches test loss {P.eps:g} by T = {int(g['T'].iloc[0])}",
        bound, g.final_test_loss <= P.eps, lvl, share, f"the run ends at test loss ≤ {P.eps:g}",
        id="schedule.half_M_half_stage1"))
    g = _cell(rows, "explore", lam=BASE.lam, eta_router=BASE.eta_router)
    T = int(g["T"].iloc[0])
    out.append(beyond.share_row(
        f"The experts specialize before the gate commits (t_spec < t_agree) at the default lam = {BASE.lam:g}, "
        f"eta_router = {BASE.eta_router:g}", bound, beyond.faster(g.t_spec, g.t_agree), lvl, share,
        f"t_spec < t_agree, a gate that does not commit within {T} steps counting as later", id="schedule.spec_before_gate"))
    g = _cell(rows, "explore", lam=0.0, eta_router=BASE.eta_router)
    out.append(beyond.share_row(
        f"Without exploration (lam = 0, eta_router = {BASE.eta_router:g}) the experts specialize within {T} steps",
        bound, np.isfinite(g.t_spec.to_numpy(float)), lvl, share, f"t_spec is within the {T} steps",
        id="schedule.spec_without_exploration"))
    return out


# ---------------------------------------------------------------------- what this answers
def answers_markdown(rows: pd.DataFrame, verdicts: list[dict], P: ScheduleParams) -> str:
    """One computed answer per question: is the three-stage schedule needed; how sensitive is it to T1 and T2;
    do Proposition 1's boundaries work; who commits first.  ``verdicts``: ``verdict_rows`` (in its order)."""
    v = [r["verdict"] for r in verdicts]
    steps = paired_steps(rows, P.eps)
    summ = schedule_summary(rows, P.eps, P.level).set_index("schedule")
    T = int(summ.loc["three_stage", "T"])
    word = {"holds": "earlier on most seeds", "does not hold": "not earlier on most seeds",
            "inconclusive": "undecided"}

    def med(s):
        return beyond.steps_text(summ.loc[s, "steps"].value)

    parts = []
    for i, other in enumerate(("joint", "I_joint", "joint_III")):
        c = compare_pairs(steps["three_stage"], steps[other])
        parts.append(f"against {SCHEDULE_NAMES[other]} (median {med(other)}, {summ.loc[other, 'never']} of "
                     f"{summ.loc[other, 'seeds']} seeds never within {T}) {word[v[i]]} (earlier on {c['faster']}, "
                     f"the same step on {c['equal']}, later on {c['slower']})")
    first = (f"**Is the three-stage schedule needed?** Three stages reach test loss {P.eps:g} at a median of "
             f"{med('three_stage')} iterations: " + "; ".join(parts) + ".")
    if v[0] == v[2] == "holds" and v[1] == "does not hold":
        first += (" What is needed is a Stage I that trains the experts with attention frozen before attention "
                  "trains; separating Stage II from Stage III is not.")
    elif v[:3] == ["holds"] * 3:
        first += " Each of the three stages is needed."
    elif "holds" not in v[:3]:
        first += " At these step sizes one stage does as well."
    b = boundaries(rows, P.eps, P.level).set_index("question")
    reached = grid_table(rows, "reached", P.eps)
    n = grid_seeds(rows)
    ok = [(t1, gap) for t1 in reached.index for gap in reached.columns if reached.loc[t1, gap] > n / 2]
    q1, q2 = b.index
    second = (f"**How sensitive is it to T1 and T2?** On the grid T1 in {{{', '.join(map(str, reached.index))}}} and "
              f"T2 − T1 in {{{', '.join(map(str, reached.columns))}}} (T = {int(grid_rows(rows)['T'].iloc[0])}), more "
              f"than half of the {n} seeds end at test loss ≤ {P.eps:g} only at "
              + ("(T1, T2 − T1) = " + ", ".join(f"({a}, {c})" for a, c in ok) if ok else "no cell")
              + f"; per seed, the smallest working T1 has median {_grid_iv(b.loc[q1, 'median'])} and the smallest "
              f"working Stage II {_grid_iv(b.loc[q2, 'median'])}.")
    tab = scaling_table(rows, P.eps, P.level)
    checks = scaling_checks(tab, rows, P.eps)
    known = [c for c in checks if c["agrees"] is not None]
    lead = ("Yes" if known and all(c["agrees"] for c in known) else
            "No" if known and not any(c["agrees"] for c in known) else "In part" if known else "Untested")
    ref = tab.set_index("M").loc[BASE.M, "median"].value
    third = (f"**Do Proposition 1's boundaries work?** {lead}. T1 ∝ M, anchored at the default M = {BASE.M} (median "
             f"smallest working T1: {beyond.steps_text(ref)}), gives " + "; ".join(_check_text(c) for c in checks) + ".")
    T_ex = explore_T(rows)
    g = _cell(rows, "explore", lam=BASE.lam, eta_router=BASE.eta_router)
    ts = explore_table(rows, "t_spec", P.level)
    ta = explore_table(rows, "t_agree", P.level)
    pos = [lam for lam in ts.index if lam > 0]
    tsv = ts.loc[pos].to_numpy().ravel()
    tav = ta.loc[pos].to_numpy().ravel()
    lead = {"holds": "The experts", "does not hold": "Not the experts", "inconclusive": "Unclear"}[v[6]]
    fourth = (f"**Who commits first?** {lead}: with exploration the experts specialize after a median "
              f"{_rng(tsv[np.isfinite(tsv)])} steps; the gate's choice without exploration agrees with its explored "
              f"choice on {100 * sweeps.AGREE_MIN:g}% of samples "
              + (f"after a median {_rng(tav[np.isfinite(tav)])} steps where it does so within {T_ex}, and "
                 if np.isfinite(tav).any() else "")
              + f"never within {T_ex} steps on {int(np.isnan(g.t_agree).sum())} of {len(g)} seeds at the default "
              f"lam = {BASE.lam:g}, eta_router = {BASE.eta_router:g}. Without exploration (lam = 0) "
              f"{verdicts[7]['measured'] * 100:.0f}% of seeds specialize within {T_ex} steps.")
    return "\n\n".join([first, second, third, fourth])


# ---------------------------------------------------------------------- the live rerun
def live_display(check: pd.DataFrame) -> pd.DataFrame:
    """``beyond.live_check``'s table as text: labels that differ between the jobs, seed, committed and live
    values (4 significant digits) and the relative difference (1 digit)."""
    keep = [k for k in LABELS if k in check and (k == "part" or check[k].nunique() > 1)] + ["seed"]
    out = check[keep].copy()
    cols = [c[:-len(" (table)")] for c in check.columns if c.endswith(" (table)")]
    for c in cols:
        out[f"{c}: table"] = [_num(x) for x in check[f"{c} (table)"]]
        out[f"{c}: live"] = [_num(x) for x in check[f"{c} (live)"]]
        out[f"{c}: rel. diff"] = [f"{x:.0e}" for x in check[f"{c} rel. diff"]]
    return out


def _num(x) -> str:
    return "never" if not np.isfinite(x) else f"{x:.4g}"


def live_markdown(check: pd.DataFrame) -> str:
    """How far the live numbers are from the committed ones, against the table's rounding."""
    rel = check[[c for c in check.columns if c.endswith("rel. diff")]].to_numpy(float)
    worst = float(np.max(rel)) if rel.size else math.nan
    tol = 5 * 10.0 ** -TABLE_DIGITS
    both_never = sum(int((~np.isfinite(check[c]) & ~np.isfinite(check[c.replace("(table)", "(live)")])).sum())
                     for c in check.columns if c.endswith("(table)"))
    text = (f"{rel.size} numbers compared ({len(check)} seed runs); the largest relative difference is {worst:.0e}. "
            f"The table stores {TABLE_DIGITS} significant digits, so a relative difference up to {tol:.0e} is its "
            f"rounding; the runs are float64, so a change of the engine would move them by far more."
            + (f" {both_never} of the numbers are 'never' (beyond the run) in both." if both_never else ""))
    if not np.isfinite(worst) or worst > tol:
        text += (f" **Some numbers differ by more than the table's rounding**: the engine or the machine gives other "
                 f"numbers than the table's (see the staleness line at the top).")
    return text


# ---------------------------------------------------------------------- figures
def heatmap(ax, table: pd.DataFrame, fmt, title: str, xlabel: str, ylabel: str, log: bool = False,
            vmin=None, vmax=None, cmap="viridis", mark=None, beyond_text: str | None = None, cbar_label: str = ""):
    """An annotated heatmap of ``table`` (rows bottom to top as in its index); ``fmt(value)`` gives each cell's
    text; inf cells (a step count beyond the run) are drawn at the top of the colour scale, hatched, and read
    ``beyond_text``; ``mark`` = (row label, column label) outlines one cell (the book's default)."""
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    v = table.to_numpy(float)
    fin = v[np.isfinite(v)]
    lo = vmin if vmin is not None else (fin.min() if fin.size else 0.0)
    hi = vmax if vmax is not None else (fin.max() if fin.size else 1.0)
    norm = mcolors.LogNorm(lo, hi) if log else mcolors.Normalize(lo, hi)
    shown = np.where(np.isinf(v), hi, v)
    im = ax.imshow(shown, origin="lower", aspect="auto", cmap=cmap, norm=norm)
    cmap_obj = plt.get_cmap(cmap)
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            x = v[i, j]
            if np.isnan(x):
                continue
            if np.isinf(x):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", lw=0, color="0.6"))
                text = beyond_text or "never"
            else:
                text = fmt(x)
            r, g, b, _ = cmap_obj(norm(shown[i, j]))
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white")
    ax.set_xticks(range(v.shape[1]), [f"{c:g}" for c in table.columns])
    ax.set_yticks(range(v.shape[0]), [f"{r:g}" for r in table.index])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(False)
    if mark is not None and mark[0] in table.index and mark[1] in table.columns:
        i, j = list(table.index).index(mark[0]), list(table.columns).index(mark[1])
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2.5, color="red"))
    cb = ax.figure.colorbar(im, ax=ax)
    if cbar_label:
        cb.set_label(cbar_label)
    return im

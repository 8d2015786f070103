"""What the chapters of the part "Beyond the paper" share: paired per-seed verdicts, medians of censored
step counts, and the live rerun of a committed sweep's rows (notebooks/08_fair_comparison,
notebooks/09_training_schedule).  The sweeps themselves are ``mot_lib.sweeps``.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from .. import stats as rates
from ..experiments import sweeps


def faster(a, b) -> np.ndarray:
    """Per seed: does ``a`` reach its level in fewer steps (or FLOPs) than ``b``?  NaN means never reached
    within the run: a reached level beats a never-reached one; two never-reached ones are not faster."""
    a = np.where(np.isfinite(np.asarray(a, float)), a, np.inf)
    b = np.where(np.isfinite(np.asarray(b, float)), b, np.inf)
    return (a < b) & np.isfinite(a)


def share_row(claim: str, bound: str, passed, level: float, seed_share: float, what: str, id: str | None = None) -> dict:
    """A verdict on a per-seed property: holds when the Wilson interval of the share of passing seeds lies above
    ``seed_share``, does not hold when it lies below, inconclusive otherwise.  ``what`` says what a seed is."""
    passed = np.asarray(passed, bool)
    est = rates.share(passed, level)
    test = (f"share of seeds where {what} ({int(passed.sum())} of {len(passed)}), Wilson {100 * level:g}%, "
            f"against more than {seed_share:g}")
    return rates.population_row(claim, bound, est, rates.above(seed_share, 1.0), test, len(passed), id=id)


def censored_median_ci(values, level: float = 0.95) -> rates.Estimate:
    """Median over seeds of a step count where NaN means "not within the run" (counted as +inf, so it sorts
    last), with the distribution-free order-statistic interval of ``rates.median_ci``; an end can be inf."""
    v = np.asarray(values, float)
    v = np.sort(np.where(np.isnan(v), np.inf, v))
    n = v.size
    if n == 0:
        return rates.Estimate(math.nan, math.nan, math.nan)
    med = float(v[(n - 1) // 2]) if n % 2 else float((v[n // 2 - 1] + v[n // 2]) / 2)
    j = int(stats.binom.ppf((1 - level) / 2, n, 0.5))
    if stats.binom.cdf(j - 1, n, 0.5) > (1 - level) / 2:
        j -= 1
    if j < 1:
        return rates.Estimate(med, math.nan, math.nan)
    return rates.Estimate(med, float(v[j - 1]), float(v[n - j]))


def steps_text(x: float) -> str:
    """A step count for a sentence: '220', or 'not within the run' for inf/NaN."""
    return f"{x:.0f}" if np.isfinite(x) else "not within the run"


def live_check(jobs: list, table: pd.DataFrame, keys: list[str],
               columns=("final_test_loss", "steps_to_0.001")) -> pd.DataFrame:
    """Rerun ``jobs`` (``sweeps.Job``s, a few seeds each) here and set the numbers beside the committed table's
    rows with the same labels and seed: per job and seed, each of ``columns`` committed, live, and their relative
    difference (float64 runs: rounding-level differences between machines, larger only if the engine changed)."""
    out = []
    for job in jobs:
        live, _ = sweeps.run_job(job)
        for _, r in live.iterrows():
            sel = np.ones(len(table), bool)
            for k in keys:
                sel &= (table[k] == r[k]).to_numpy()
            sel &= (table["seed"] == r["seed"]).to_numpy()
            row = {k: r[k] for k in keys} | {"seed": int(r["seed"])}
            ref = table[sel]
            for c in columns:
                committed = float(ref[c].iloc[0]) if len(ref) else math.nan
                row[f"{c} (table)"] = committed
                row[f"{c} (live)"] = float(r[c])
                both = np.isfinite(committed) and np.isfinite(r[c])
                row[f"{c} rel. diff"] = abs(r[c] - committed) / max(abs(committed), 1e-300) if both else \
                    (0.0 if not np.isfinite(committed) and not np.isfinite(r[c]) else math.inf)
            out.append(row)
    return pd.DataFrame(out)

"""Rates, fits with bootstrap intervals over seeds, and computed verdicts.

Used by the Proposition 1/2 chapters (log-log slopes against sigma0, M, 1/eta)
and by Theorem 1 (iterations-to-eps under exponential vs power-law decay).
A verdict is always computed from an interval, never typed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

VERDICTS = ("holds", "does not hold", "inconclusive")


def iterations_to_eps(steps, values, eps: float) -> float:
    """First recorded step at which ``values`` <= eps (NaN if never reached)."""
    steps, values = np.asarray(steps), np.asarray(values)
    hit = np.nonzero(values <= eps)[0]
    return float(steps[hit[0]]) if hit.size else float("nan")


def linear_fit(x, y) -> tuple[float, float, float]:
    """Least-squares y = a + b x: (slope b, intercept a, R^2)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.ptp(x) == 0:
        return float("nan"), float("nan"), float("nan")
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    ss = np.sum((y - y.mean()) ** 2)
    return float(b), float(a), float(1 - np.sum(resid ** 2) / ss) if ss > 0 else 1.0


def fit_power_law(x, y) -> tuple[float, float, float]:
    """log y = log A + p log x: (exponent p, log A, R^2)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0)
    return linear_fit(np.log(x[ok]), np.log(y[ok]))


def fit_exponential(t, y) -> tuple[float, float, float]:
    """log y = log A - c t: (rate c, log A, R^2); c > 0 means exponential decay."""
    t, y = np.asarray(t, float), np.asarray(y, float)
    ok = y > 0
    b, a, r2 = linear_fit(t[ok], np.log(y[ok]))
    return -b, a, r2


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a bootstrap percentile interval over seeds."""
    value: float
    lo: float
    hi: float

    def __str__(self):
        return f"{self.value:.3g} [{self.lo:.3g}, {self.hi:.3g}]"


def bootstrap_fit(df: pd.DataFrame, x: str, y: str, fit=fit_power_law, n_boot: int = 1000,
                  level: float = 0.95, seed: int = 0, by: str = "seed") -> Estimate:
    """Fit ``fit`` to all rows of df, with a percentile interval from resampling whole seeds.

    df has one row per (seed, x); resampling seeds (not points) keeps each seed's
    points together, so the interval reflects seed-to-seed variation.
    """
    groups = [g for _, g in df.groupby(by)]
    point = fit(df[x], df[y])[0]
    if len(groups) < 2:
        return Estimate(point, float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        pick = pd.concat([groups[i] for i in rng.integers(len(groups), size=len(groups))])
        stats.append(fit(pick[x], pick[y])[0])
    stats = np.asarray(stats)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return Estimate(point, float("nan"), float("nan"))
    a = (1 - level) / 2
    return Estimate(point, float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a)))


def bootstrap_mean(values, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> Estimate:
    """Mean over seeds with a bootstrap percentile interval."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(v.size, size=(n_boot, v.size))].mean(1)
    a = (1 - level) / 2
    return Estimate(float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a)))


def verdict(est: Estimate, accept: tuple[float, float]) -> str:
    """holds if the interval lies inside ``accept`` = (lo, hi), does not hold if it is
    disjoint from it, inconclusive otherwise (or if the interval is undefined)."""
    lo, hi = accept
    if not (np.isfinite(est.lo) and np.isfinite(est.hi)):
        return "inconclusive"
    if est.lo >= lo and est.hi <= hi:
        return "holds"
    if est.hi < lo or est.lo > hi:
        return "does not hold"
    return "inconclusive"


def verdict_row(claim: str, bound: str, est: Estimate, accept: tuple[float, float]) -> dict:
    """One row of a chapter's verdict table (the scorecard reads these)."""
    return {"claim": claim, "bound": bound, "measured": float(est.value),
            "interval": [float(est.lo), float(est.hi)], "verdict": verdict(est, accept)}

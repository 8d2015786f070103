"""Rates, population-level intervals over seeds (Wilson shares, Student t means, order-statistic medians, per-seed fits), and computed verdicts.

Used by the Proposition 1/2 chapters (log-log slopes against sigma0, M, 1/eta)
and by Theorem 1 (iterations-to-eps under exponential vs power-law decay).
A verdict is always computed from an interval, never typed.
"""
from __future__ import annotations

import math
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
    """Least-squares y = a + b x: (slope b, intercept a, R^2), with ``np.polyfit``.

    Not ``scipy.stats.linregress``: its intercept differs in the last digits (checked on 1000 random fits, all
    differ at about 1e-13 relative), which would move the committed verdict files and tables' canaries."""
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
    """A point estimate with its interval over seeds."""
    value: float
    lo: float
    hi: float

    def __str__(self):
        return f"{self.value:.3g} [{self.lo:.3g}, {self.hi:.3g}]"


class Accept(tuple):
    """An accepted range ``(lo, hi)`` whose edges may be open.  It is a 2-tuple, so code that unpacks
    ``lo, hi = accept`` keeps working; a plain tuple is a closed range.  A strict comparison ("below",
    "fewer", "more than", "> 0") declares its edge open, so that an interval touching equality (a tie)
    does not count as inside: ``above(0.0)`` is (0, inf), ``above(0.5, 1.0)`` is (0.5, 1] (a share that
    must exceed a half and may reach 1 exactly), ``below(0.0)`` is (-inf, 0)."""

    def __new__(cls, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
        self = super().__new__(cls, (float(lo), float(hi)))
        self.lo_open, self.hi_open = bool(lo_open), bool(hi_open)
        return self

    def __repr__(self):
        return f"{'(' if self.lo_open else '['}{self[0]:g}, {self[1]:g}{')' if self.hi_open else ']'}"

    def __reduce__(self):
        return (Accept, (self[0], self[1], self.lo_open, self.hi_open))


def above(x: float, hi: float = math.inf) -> Accept:
    """The accepted range of a strict "greater than x" claim: (x, hi], x itself excluded."""
    return Accept(x, hi, lo_open=True)


def below(x: float, lo: float = -math.inf) -> Accept:
    """The accepted range of a strict "less than x" claim: [lo, x), x itself excluded."""
    return Accept(lo, x, hi_open=True)


def _edges(accept) -> tuple[float, float, bool, bool]:
    lo, hi = accept
    return lo, hi, bool(getattr(accept, "lo_open", False)), bool(getattr(accept, "hi_open", False))


def _inside(x: float, accept) -> bool:
    lo, hi, lo_open, hi_open = _edges(accept)
    return (x > lo if lo_open else x >= lo) and (x < hi if hi_open else x <= hi)


def verdict(est: Estimate, accept: tuple[float, float]) -> str:
    """holds if the interval lies inside ``accept`` = (lo, hi), does not hold if it is
    disjoint from it, inconclusive otherwise (or if the interval is undefined).  A plain tuple is a
    closed range; an ``Accept`` with an open edge (``above``, ``below``) excludes that edge, so an
    interval that reaches it (e.g. a paired difference of exactly 0 against "> 0") is not inside."""
    lo, hi, lo_open, hi_open = _edges(accept)
    if not (np.isfinite(est.lo) and np.isfinite(est.hi)):
        return "inconclusive"
    if _inside(est.lo, accept) and _inside(est.hi, accept):
        return "holds"
    if (est.hi <= lo if lo_open else est.hi < lo) or (est.lo >= hi if hi_open else est.lo > hi):
        return "does not hold"
    return "inconclusive"


def verdict_row(claim: str, bound: str, est: Estimate, accept: tuple[float, float]) -> dict:
    """One row of a chapter's verdict table (the scorecard reads these)."""
    return {"claim": claim, "bound": bound, "measured": float(est.value),
            "interval": [float(est.lo), float(est.hi)], "verdict": verdict(est, accept)}


# ---------------------------------------------------------------------- population-level verdicts
# A verdict is a statement about the population of seeds, decided by a rule fixed in the chapter's
# parameters before looking at the results:
#  * a per-seed pass/fail property: the share of passing seeds, with a Wilson score interval
#    (``share``), against a stated share;
#  * a continuous per-seed quantity (a ratio, a cosine): its mean with a Student-t interval (``mean_t``,
#    nominal coverage at any number of seeds for roughly normal per-seed values);
#  * an exponent fitted per seed (a log-log slope, a growth exponent; heavy-tailed across seeds): its
#    median with the distribution-free order-statistic interval (``median_ci``, exact coverage >= level
#    for any continuous distribution; ``seedwise_fit``, ``SEEDWISE_TEST``).
# ``verdict`` then compares the interval with the acceptance range; ``population_row`` writes the row
# with the test, the number of seeds and, for an inconclusive row, which way it leans and what would
# settle it.

def _z(level: float) -> float:
    from statistics import NormalDist
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial share k/n (nominal coverage even near 0 and 1).

    The same interval as ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``, but it differs from
    scipy's in the last bit for about half of all (k, n) with n <= 300 (scipy rounds in another order), which
    would move the committed verdict files; ``n <= 0`` gives NaN here where scipy raises."""
    if n <= 0:
        return float("nan"), float("nan")
    z = _z(level)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def share(passed, level: float = 0.95) -> Estimate:
    """Share of seeds whose property holds, with a Wilson interval.  NaN entries count as failures
    (a seed that never reached the property did not pass)."""
    v = np.asarray(passed, float)
    v = np.where(np.isfinite(v), v, 0.0)
    k, n = int(round(v.sum())), v.size
    lo, hi = wilson(k, n, level)
    return Estimate(k / n if n else float("nan"), lo, hi)


def mean_t(values, level: float = 0.95) -> Estimate:
    """Mean over seeds with a Student-t interval (NaN values are dropped); the quantile is scipy's
    ``stats.t.ppf``.  Not ``scipy.stats.t.interval(level, n - 1, loc=mean, scale=sem)``: its ends differ in the
    last bit for about a third of samples (another order of the products), which would move committed verdict
    files; and it gives no interval rule for one seed (here: NaN ends) or NaN values (here: dropped)."""
    from scipy import stats
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    m = float(v.mean())
    if v.size < 2:
        return Estimate(m, float("nan"), float("nan"))
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return Estimate(m, m - half, m + half)


def median_ci(values, level: float = 0.95, above: int = 0) -> Estimate:
    """Median over seeds with the distribution-free interval between order statistics
    (coverage >= level for any continuous distribution; undefined below 6 seeds at 95%).  ``above``: seeds without a
    value that rank above every value (a run that diverged, counted against an upper bound rather than left out,
    which would keep only the survivors); they enter as +inf.  scipy has no such
    interval (``scipy.stats.bootstrap`` gives a resampling interval, random and without the coverage guarantee);
    the order statistics come from scipy's ``stats.binom``."""
    from scipy import stats
    v = np.sort(np.asarray(values, float))
    v = v[np.isfinite(v)]
    if above < 0:
        raise ValueError(f"above={above} is not allowed; give the number of seeds ranked above every value (>= 0)")
    v = np.concatenate([v, np.full(int(above), np.inf)])
    n = v.size
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    med = float(np.median(v))
    # largest j with P(Bin(n, 1/2) < j) <= (1 - level)/2: the interval [v_(j), v_(n+1-j)] (1-based)
    j = int(stats.binom.ppf((1 - level) / 2, n, 0.5))
    if stats.binom.cdf(j - 1, n, 0.5) > (1 - level) / 2:
        j -= 1
    if j < 1:
        return Estimate(med, float("nan"), float("nan"))
    return Estimate(med, float(v[j - 1]), float(v[n - j]))


def seeds_to_settle(est: Estimate, accept: tuple[float, float], n: int) -> int | None:
    """Rough number of seeds at which the interval's half-width would clear the nearest acceptance
    edge, keeping its point estimate and spread (None if the point sits on the edge or nothing is known)."""
    if not (np.isfinite(est.lo) and np.isfinite(est.hi) and np.isfinite(est.value)) or n < 2:
        return None
    edges = [e for e in accept if np.isfinite(e)]
    if not edges:
        return None
    dist = min(abs(est.value - e) for e in edges)
    half = max(est.hi - est.value, est.value - est.lo)
    if dist <= 0 or half <= 0:
        return None
    return int(math.ceil(n * (half / dist) ** 2))


def leaning(est: Estimate, accept: tuple[float, float], n: int, more: str = "") -> str:
    """For an inconclusive verdict: where the interval lies against the acceptance range and what
    would settle it.  Empty for a decided verdict."""
    v = verdict(est, accept)
    if v != "inconclusive":
        return ""
    if not (np.isfinite(est.lo) and np.isfinite(est.hi)):
        return "no interval (too few finite per-seed values)" + (f"; {more}" if more else "")
    lo, hi, lo_open, _ = _edges(accept)
    inside = _inside(est.value, accept) if np.isfinite(est.value) else False
    edge = lo if (np.isfinite(lo) and (est.lo <= lo if lo_open else est.lo < lo)) else hi
    side = "inside" if inside else "outside"
    k = seeds_to_settle(est, accept, n)
    need = f"about {k} seeds would settle it" if k else "more seeds would not settle it: the estimate sits on the edge"
    return (f"leans {'holds' if inside else 'does not hold'}: the point estimate lies {side} the accepted range "
            f"and the interval crosses its edge {edge:g}; {need}" + (f"; {more}" if more else ""))


def population_row(claim: str, bound: str, est: Estimate, accept: tuple[float, float], test: str,
                   n: int, more: str = "", id: str | None = None) -> dict:
    """A verdict row that states its population test: ``test`` says what is estimated over the seeds
    and how the interval is made (e.g. "share of seeds passing, Wilson 95%"), ``n`` how many seeds; ``id`` the
    row's id in the claim registry (``book.claim_registry``), without which ``write_verdicts`` refuses it."""
    row = verdict_row(claim, bound, est, accept)
    row.update(test=test, seeds=int(n), note=leaning(est, accept, n, more))
    if id is not None:      # the row's id in the claim registry (mot_lib/book/claim_registry.py)
        row = {"id": id, **row}
    return row


def add_note(row: dict, text: str) -> dict:
    """``row`` (a ``population_row``) with ``text`` appended to its note, after "; " when it has one: what a row's
    rule leaves out (a diverged seed) is said even when its verdict is decided and ``leaning`` wrote nothing."""
    row["note"] = f"{row['note']}; {text}" if row.get("note") else text
    return row


def per_seed_fits(df: pd.DataFrame, x: str, y: str, fit=fit_power_law, by: str = "seed") -> pd.Series:
    """``fit`` applied to each seed's points alone: the exponent/slope/rate per seed (NaN where a seed
    has too few usable points).  The population verdict is then on these per-seed values."""
    return df.groupby(by).apply(lambda g: fit(g[x], g[y])[0], include_groups=False).astype(float)


#: The test of every verdict on a per-seed fitted exponent (a log-log slope, a growth exponent), ``{what}`` naming it.
#: The median, not the mean: one seed of 8-16 with a slope of 2 among slopes near 0 (draw 1206, set 2, seed 186344)
#: made a Student-t interval five times as wide and its verdict hang on whether such a seed was drawn; the
#: order-statistic interval has its coverage for any distribution of the per-seed exponents.
SEEDWISE_TEST = "median over seeds of each seed's {what}, order-statistic 95% (distribution-free)"


def seedwise_fit(df: pd.DataFrame, x: str, y: str, fit=fit_power_law, by: str = "seed",
                 level: float = 0.95, above: int = 0) -> tuple[Estimate, int]:
    """Median over seeds of the per-seed fit with its distribution-free order-statistic interval (``median_ci``;
    NaN ends below 6 seeds at 95%), and how many seeds it counts: those with a finite fit and the ``above`` seeds
    ranked above every fit (``median_ci``)."""
    v = per_seed_fits(df, x, y, fit, by)
    return median_ci(v.to_numpy(), level, above), int(np.isfinite(v).sum()) + int(above)

"""Proposition 1 (Stage I): expert specialization and routing.  Used by notebooks/02_proposition1.

Only Stage I is run (T1 = T2 = T): the FFN vectors W by normalized GD with
attention frozen, the gate by GD with exploration.  Measured per seed:

* ``t_spec``: the first recorded step at which every class has a specialist
  (``classes_covered == N``) and the routing accuracy on the fresh test sample
  is at least ``route_min``: "the steps Stage I needs";
* the specialization gap <W, v_n*> - max_{n != n*} <W, v_n> of the experts that
  receive at least ``min_share`` of the test samples, summarised by its median
  over those experts, read at two times:
  - at ``t_spec`` (the moment specialization is established), and
  - at the stated horizon ``T1_stated = c eta^-1 sigma0^-0.5 M``, with c
    calibrated so that ``T1_stated`` equals the book's default T1 at the
    reference configuration (``stated_T1``).

Normalized GD moves every expert that receives a sample by exactly eta per
step, so the gap at a late step is set by eta times the number of steps, not by
the initialisation; that is why the reading time is explicit everywhere here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import stats
from ..book.registry import ChapterParams, register
from ..engine.config import MAX_STEPS, Setting, TrainConfig, _check, _check_list
from ..engine.data import Dataset, make_dataset
from ..engine.training import Run, train_mot, train_surviving

#: A stated exponent p is accepted when the slope's 95% interval lies in [p - TOL, p + TOL];
#: an O(x^p) upper bound when the interval lies at or below p + TOL.
TOL = 0.25


@register("02_proposition1")
@dataclass(frozen=True)
class Prop1Params(ChapterParams):
    """Parameters of notebooks/02_proposition1.ipynb (every knob of the chapter)."""
    seeds: tuple = tuple(range(20))  # seeds of the main run and of the short sweeps (a batch dimension)
    long_seeds: int = 8              # the first this many seeds (at most all) run the long sweeps (stated T1, small eta)
    M: int = 16                      # experts of the main run (and the reference of the stated T1)
    sigma0: float = 0.1              # init scale of the main run (reference of the stated T1)
    eta1: float = 0.02               # normalized-GD step of Stage I (reference of the stated T1)
    eta_router: float = 0.5          # gate's GD step
    lam: float = 1.0                 # exploration r ~ U[0, lam]
    T1: int = 200                    # Stage I length of the main run = stated T1 at the reference
    record_every: int = 4            # record cadence of the main run
    n_train: int = 500               # training samples per seed (full batch; Stage I needs no more)
    n_test: int = 500                # fresh test samples per seed (routing is measured on them)
    route_min: float = 0.95          # routing accuracy that counts as "routed to specialists"
    seed_share: float = 0.5          # the routing claim holds if more than this share of seeds pass (Wilson 95%)
    min_share: float = 0.01          # an expert is "used" if it receives this share of test samples
    sigma0s: tuple = (0.01, 0.0237, 0.0562, 0.133, 0.316)   # sweep for the gap (1.5 decades)
    Ms: tuple = (8, 16, 32)          # sweep of the number of experts
    etas: tuple = (0.005, 0.01, 0.02, 0.04)                # sweep of the normalized-GD step
    horizon: int = 40                # steps of the finely recorded runs at eta1 (x eta1/eta for smaller eta)
    small_eta: float = 0.002         # a second regime: the sigma0 sweep again at this step (0 = skip)
    small_eta_steps: int = 250       # steps of the second regime's runs (recorded every 2 sqrt(sigma0/min))
    gd_seeds: int = 16               # the first this many seeds (at most all) run the plain-GD sweeps (gd_sigma0s, gd_etas)
    gd_eta1: float = 100.0           # plain-GD step of Stage I (the paper's optimizer): the main GD run and sweeps
    gd_T1: int = 500                 # Stage I length of the plain-GD main run (all seeds, at sigma0, gd_eta1, M)
    gd_sigma0s: tuple = (0.0237, 0.0562, 0.133, 0.316)  # plain-GD sigma0 sweep (gd_seeds seeds)
    gd_etas: tuple = (25.0, 50.0, 100.0)                # plain-GD step sweep (gd_seeds seeds; 200 diverged)

    def __post_init__(self):
        super().__post_init__()
        for name, kind, lo, hi in (("sigma0s", (int, float), 0.0, 10.0), ("Ms", int, 2, 256),
                                   ("etas", (int, float), 0.0, 10.0), ("gd_sigma0s", (int, float), 0.0, 10.0),
                                   ("gd_etas", (int, float), 0.0, 1e4)):
            v = _check_list(name, getattr(self, name), kind=kind, lo=lo, hi=hi, lo_open=kind is not int)
            object.__setattr__(self, name, v)
            if len(v) < 3 or len(set(v)) != len(v):
                raise ValueError(f"{name}={v!r} needs at least 3 distinct values to fit a slope")
        if max(self.sigma0s) / min(self.sigma0s) < 30:
            raise ValueError(f"sigma0s={self.sigma0s!r} must span about 1.5 decades or more (max/min >= 30)")
        _check("n_train", self.n_train, kind=int, lo=50, hi=1_000_000)
        _check("n_test", self.n_test, kind=int, lo=100, hi=1_000_000)
        _check("long_seeds", self.long_seeds, kind=int, lo=2, hi=10_000)
        _check("gd_seeds", self.gd_seeds, kind=int, lo=2, hi=10_000)
        _check("route_min", self.route_min, lo=0.0, hi=1.0, lo_open=True)
        _check("seed_share", self.seed_share, lo=0.0, hi=1.0, lo_open=True)
        _check("min_share", self.min_share, lo=0.0, hi=1.0, hi_open=True)
        _check("horizon", self.horizon, kind=int, lo=5, hi=100_000)
        _check("small_eta", self.small_eta, lo=0.0, hi=10.0)
        _check("small_eta_steps", self.small_eta_steps, kind=int, lo=2, hi=100_000)
        _check("T1", self.T1, kind=int, lo=1, hi=1_000_000)
        _check("gd_eta1", self.gd_eta1, lo=0.0, hi=1e4, lo_open=True)
        _check("gd_T1", self.gd_T1, kind=int, lo=2, hi=100_000)
        self.setting()
        self.stage1()
        self._check_derived_steps()

    def _check_derived_steps(self):
        """The longest runs the notebook builds have lengths derived from the parameters (``fine`` at the smallest
        of ``etas``, ``stated_T1`` at the smallest of ``sigma0s``): check them here, naming what was typed and
        the largest value that fits, rather than when the run is built."""
        def down(x):              # x rounded down to 4 significant digits: a bound that is itself allowed
            k = 10.0 ** (math.floor(math.log10(x)) - 3)
            return math.floor(x / k) * k
        q = 2 if self.quick else 1
        e = min(self.etas)
        T = self.fine(e)[0]
        if T > MAX_STEPS:
            raise ValueError(f"eta1={self.eta1!r} (with horizon={self.horizon} and the smallest of etas, {e:g}) gives "
                             f"T={T:.3g} steps for the finely recorded run at eta={e:g} (horizon x eta1/eta), above the "
                             f"maximum {MAX_STEPS}; choose eta1 <= {down(MAX_STEPS * q * e / self.horizon):g} "
                             "(or a smaller horizon, or larger etas)")
        T = max(self.gd_horizon(sigma0=min(self.gd_sigma0s)), self.gd_horizon(eta=min(self.gd_etas)))
        if T > MAX_STEPS:
            raise ValueError(f"gd_T1={self.gd_T1!r} gives T={T} steps for the longest plain-GD run (gd_T1 x "
                             f"sigma0/min(gd_sigma0s) or gd_T1 x gd_eta1/min(gd_etas), the larger), above "
                             f"the maximum {MAX_STEPS}; choose a smaller gd_T1 or larger gd_sigma0s / gd_etas")
        s = min(self.sigma0s)
        T = self.stated_T1(sigma0=s)
        if T > MAX_STEPS:
            top = down(MAX_STEPS * (4 if self.quick else 1) / math.sqrt(self.sigma0 / s))
            raise ValueError(f"T1={self.T1!r} (with sigma0={self.sigma0:g} and the smallest of sigma0s, {s:g}) gives "
                             f"T={T:.3g} steps for the run to the stated T1 at sigma0={s:g} (T1 x sqrt(sigma0/{s:g})), "
                             f"above the maximum {MAX_STEPS}; choose T1 <= {top:g} (or a smaller sigma0, or larger sigma0s)")

    # ------------------------------------------------------------------ configurations
    def setting(self) -> Setting:
        """The chapter's data (quick: a smaller training and test sample)."""
        if self.quick:
            return Setting(n_train=min(self.n_train, 400), n_test=min(self.n_test, 500))
        return Setting(n_train=self.n_train, n_test=self.n_test)

    def stage1(self, T: int | None = None, **changes) -> TrainConfig:
        """A Stage-I-only schedule of T steps (T1 = T2 = T) at the chapter's defaults plus ``changes``."""
        T = self.T1 if T is None else int(T)
        base = dict(M=self.M, sigma0=self.sigma0, eta1=self.eta1, eta_router=self.eta_router, lam=self.lam,
                    record_every=self.record_every)
        base.update(changes)
        return TrainConfig(T1=T, T2=T, T=T, **base)

    def stated_T1(self, sigma0: float | None = None, eta: float | None = None, M: int | None = None) -> int:
        """T1 = c eta^-1 sigma0^-0.5 M, with c fixed so that the main run's (sigma0, eta1, M) give ``T1``.

        quick=True divides it by 4 (a smoke run, not the chapter's numbers).
        """
        sigma0 = self.sigma0 if sigma0 is None else sigma0
        eta = self.eta1 if eta is None else eta
        M = self.M if M is None else M
        T = self.T1 * (self.eta1 / eta) * math.sqrt(self.sigma0 / sigma0) * (M / self.M)
        return max(1, int(round(T / (4 if self.quick else 1))))

    def gd_horizon(self, sigma0: float | None = None, eta: float | None = None, M: int | None = None) -> int:
        """Length of a plain-GD Stage I run: ``gd_T1`` at (sigma0, gd_eta1, M), times sigma0/sigma0' x gd_eta1/eta'
        x M'/M elsewhere: room for steps that grow like 1/(eta sigma0) (a cubic neuron under plain GD escapes its
        initialisation in time about 1/(eta sigma0), not 1/(eta sigma0^0.5)) and like M.  quick=True: half."""
        sigma0 = self.sigma0 if sigma0 is None else sigma0
        eta = self.gd_eta1 if eta is None else eta
        M = self.M if M is None else M
        T = self.gd_T1 * (self.sigma0 / sigma0) * (self.gd_eta1 / eta) * (M / self.M)
        return max(2, int(round(T / (2 if self.quick else 1))))

    def small_steps(self) -> int:
        """Steps of the second regime's runs (quick: half)."""
        return max(2, self.small_eta_steps // (2 if self.quick else 1))

    def small_every(self, sigma0: float) -> int:
        """Record cadence of the second regime's run at ``sigma0``: 2 at the smallest sigma0, growing as
        sigma0^0.5 (t_spec grows with sigma0 there, so the relative resolution stays about the same)."""
        return max(1, int(round(2 * math.sqrt(sigma0 / min(self.sigma0s)))))

    def fine(self, eta: float) -> tuple[int, int]:
        """(steps, record cadence) of a finely recorded run at step eta: longer and coarser for smaller eta."""
        k = max(1.0, self.eta1 / eta)
        steps = int(round(self.horizon * k / (2 if self.quick else 1)))
        return steps, max(1, int(k // 2))


# ---------------------------------------------------------------------- measurements
def used_experts(run: Run, step: int, min_share: float = 0.01) -> pd.DataFrame:
    """Boolean (seed x expert): the expert receives at least ``min_share`` of the test samples at ``step``."""
    d = run.at("dispatch", step).groupby(["seed", "expert"]).value.sum()
    return (d / run.setting.N >= min_share).unstack()


def expert_gaps(run: Run, seed: int | None = None) -> pd.DataFrame:
    """Gap of every expert over time (index step, columns (seed, expert)), or of one seed's experts."""
    g = run.rows("gap").pivot_table(index="step", columns=["seed", "expert"], values="value")
    return g if seed is None else g[seed]


def gap_of_used(run: Run, step: int, min_share: float = 0.01) -> pd.Series:
    """Median specialization gap over the experts used at ``step``, per seed (NaN if none is used)."""
    g = run.at("gap", step).set_index(["seed", "expert"]).value.unstack()
    used = used_experts(run, step, min_share).reindex_like(g).fillna(False).astype(bool)
    return g.where(used).median(axis=1)


def gap_curve(run: Run, min_share: float = 0.01) -> pd.DataFrame:
    """gap_of_used at every recorded step (index step, one column per seed), computed in one pass."""
    g = run.rows("gap").set_index(["step", "seed", "expert"]).value
    d = run.rows("dispatch").groupby(["step", "seed", "expert"]).value.sum() / run.setting.N
    used = (d >= min_share).reindex(g.index, fill_value=False)
    return g.where(used).groupby(level=["step", "seed"]).median().unstack("seed")


def spec_time(run: Run, route_min: float = 0.95) -> pd.Series:
    """First recorded step > 0 with every class covered and routing accuracy >= route_min (NaN if never)."""
    ok = (run.scalar("routing_acc") >= route_min) & (run.scalar("classes_covered") >= run.setting.N)
    ok = ok[ok.index > 0]
    return ok.apply(lambda c: float(c.index[c.to_numpy()][0]) if c.any() else float("nan"))


def dispatch_at(run: Run, seed: int, step: int) -> pd.DataFrame:
    """Dispatch matrix (class x expert) of one seed at a recorded step."""
    return run.at("dispatch", step, seed).pivot(
        index="i", columns="expert", values="value")


def align_at(run: Run, seed: int, step: int) -> pd.DataFrame:
    """<W^(i), v_n> (class x expert) of one seed at a recorded step."""
    return run.at("align", step, seed).pivot(
        index="i", columns="expert", values="value")


def summarize(run: Run, route_min: float = 0.95, min_share: float = 0.01, **labels) -> pd.DataFrame:
    """One row per seed: t_spec, the gap at init (median over all experts) and at t_spec, and the gap
    and routing at the run's last step."""
    t = spec_time(run, route_min)
    g0 = run.at("gap", 0).groupby("seed").value.median()
    curve = gap_curve(run, min_share)           # gap of the used experts at every recorded step, one pass
    end = run.cfg.T
    ra = run.scalar("routing_acc").loc[end]
    cov = run.scalar("classes_covered").loc[end]
    rows = []
    for seed in run.seeds:
        ts = t.loc[seed]
        rows.append({**labels, "seed": seed, "gap_init": g0.loc[seed], "t_spec": ts,
                     "gap_at_t_spec": curve.loc[int(ts), seed] if np.isfinite(ts) else np.nan,
                     "T_end": end, "gap_end": curve.loc[end, seed], "routing_end": ra.loc[seed],
                     "covered_end": cov.loc[seed]})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- experiments
def main_run(P: Prop1Params, data: Dataset | None = None) -> Run:
    """Stage I of T1 steps (quick: T1/4) at the chapter's configuration, all seeds batched."""
    setting = P.setting()
    return train_mot(setting, P.stage1(P.stated_T1()), list(P.seeds), data=data)


def gd_main_run(P: Prop1Params, data: Dataset | None = None) -> Run:
    """Stage I by plain GD (the paper's optimizer) at ``gd_eta1`` for ``gd_horizon()`` steps, all seeds batched; a
    seed whose training diverges (plain GD at a large step can) is left out and named in ``run.diverged``
    (``train_surviving``; ``routing_row`` counts it as failing)."""
    T = P.gd_horizon()
    return train_surviving(P.setting(), P.stage1(T, stage1_opt="gd", eta1=P.gd_eta1, record_every=max(1, T // 100)),
                           list(P.seeds), data=data)[0]


def gd_sweep(P: Prop1Params, field: str, data: Dataset | None = None, seeds: list | None = None,
             values: tuple | None = None) -> pd.DataFrame:
    """Stage I by plain GD over ``gd_sigma0s``, ``gd_etas`` or ``Ms`` (field "sigma0", "eta1" or "M"), each run
    ``gd_horizon`` steps long and recorded about 150 times; one row per (value, seed) as ``summarize`` gives, and
    column ``diverged``: a (value, seed) whose training diverged has that row with every measurement NaN (it leaves
    the fits, and the rows' notes name it).  ``values``: the values of the field to run (default: the chapter's)."""
    if field not in ("sigma0", "M", "eta1"):
        raise ValueError(f"field={field!r} is not allowed; choose one of ['M', 'eta1', 'sigma0']")
    setting = P.setting()
    seeds = list(P.seeds if seeds is None else seeds)
    data = data if data is not None and data.seeds == seeds else make_dataset(setting, seeds)
    frames = []
    for v in {"sigma0": P.gd_sigma0s, "M": P.Ms, "eta1": P.gd_etas}[field] if values is None else values:
        change = {"eta1": P.gd_eta1, field: v}
        T = P.gd_horizon(**{"sigma0": {"sigma0": v}, "M": {"M": v}, "eta1": {"eta": v}}[field])
        run, diverged = train_surviving(setting, P.stage1(T, stage1_opt="gd", record_every=max(1, T // 150),
                                                          **change), seeds, data=data)
        f = summarize(run, P.route_min, P.min_share, **{field: v}, eta=change["eta1"]).assign(diverged=False)
        if diverged:
            gone = pd.DataFrame({field: v, "eta": change["eta1"], "seed": diverged, "diverged": True})
            f = pd.concat([f, gone], ignore_index=True).set_index("seed").loc[seeds].reset_index()[f.columns]
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def gd_table(P: Prop1Params, main: Run, by_sigma0: pd.DataFrame, by_eta: pd.DataFrame) -> pd.DataFrame:
    """One row per plain-GD run (the main run, each value of the two sweeps): the median t_spec and gap at t_spec
    over seeds, how many seeds never specialized within the horizon, and how many diverged (left out)."""
    t = spec_time(main, P.route_min)
    sweeps = [(by_sigma0, "sigma0"), (by_eta, "eta1")]      # gd_sweep frames: each has its ``diverged`` column
    rows = [{"run": f"main (all seeds, sigma0={P.sigma0:g}, eta={P.gd_eta1:g}, {main.cfg.T} steps)",
             "median t_spec": t.median(), "median gap at t_spec": np.nan, "runs without t_spec": int(t.isna().sum()),
             "runs that diverged": len(main.diverged)}]
    for df, col in sweeps:
        for v, g in df.groupby(col):
            ok = g[~g.diverged.astype(bool)]
            rows.append({"run": f"{'eta' if col == 'eta1' else col}={v:g}", "median t_spec": ok.t_spec.median(),
                         "median gap at t_spec": ok.gap_at_t_spec.median(),
                         "runs without t_spec": int(ok.t_spec.isna().sum()), "runs that diverged": len(g) - len(ok)})
    return pd.DataFrame(rows)


def chapter_sweeps(P: Prop1Params, jobs: int | None = None) -> tuple[dict[str, pd.DataFrame], Run, pd.DataFrame,
                                                                     pd.DataFrame]:
    """Every sweep of the chapter on one pool of ``jobs`` worker processes (``executor.chapter_jobs()`` when None):
    (the normalized-GD sweeps: ``fine_s``, ``fine_M``, ``fine_e`` finely recorded on every seed over ``sigma0s``, ``Ms``,
    ``etas``, ``stated_s`` to the stated T1 and ``small_s`` at ``small_eta`` on the first ``long_seeds`` seeds, empty
    when ``small_eta`` is 0; the plain-GD main run on every seed; the plain-GD sweeps over ``gd_sigma0s`` and
    ``gd_etas`` on the first ``gd_seeds`` seeds), with each plain-GD value its own job and every job submitted
    longest first (steps x seeds), so that neither worker waits for the other (two pools one after the other left a
    worker idle: 88.7 s for the chapter, 80.6 s on one pool).  The numbers do not depend on where a job ran: each
    run draws from its own seeds' streams."""
    from ..experiments.executor import chapter_executor
    first, long, n_all = list(P.seeds[:P.gd_seeds]), list(P.seeds[:P.long_seeds]), len(P.seeds)
    fine = P.fine(P.eta1)[0]
    todo = [(P.gd_horizon(sigma0=v) * len(first), ("gd_s", v), gd_sweep, (P, "sigma0"), {"seeds": first, "values": (v,)})
            for v in P.gd_sigma0s]
    todo += [(P.gd_horizon(eta=v) * len(first), ("gd_e", v), gd_sweep, (P, "eta1"), {"seeds": first, "values": (v,)})
             for v in P.gd_etas]
    todo += [(P.gd_horizon() * n_all, "gd_main", gd_main_run, (P,), {}),
             (sum(P.fine(e)[0] for e in P.etas) * n_all, "fine_e", sweep, (P, "eta1"), {}),
             (sum(P.stated_T1(sigma0=v) for v in P.sigma0s) * len(long), "stated_s", sweep, (P, "sigma0"),
              {"at": "stated", "seeds": long}),
             (fine * len(P.sigma0s) * n_all, "fine_s", sweep, (P, "sigma0"), {}),
             (sum(fine * M / P.M for M in P.Ms) * n_all, "fine_M", sweep, (P, "M"), {})]
    if P.small_eta > 0:
        todo.append((P.small_steps() * len(P.sigma0s) * len(long), "small_s", sweep, (P, "sigma0"),
                     {"eta": P.small_eta, "steps": P.small_steps(), "every": P.small_every, "seeds": long}))
    todo.sort(key=lambda job: -job[0])
    with chapter_executor(jobs) as ex:
        futures = {key: ex.submit(fn, *args, **kw) for _, key, fn, args, kw in todo}
        done = {key: f.result() for key, f in futures.items()}
    sw = {k: done[k] for k in ("fine_e", "stated_s", "fine_s", "fine_M")}
    sw["small_s"] = done["small_s"] if "small_s" in done else done["fine_s"].iloc[:0]
    gd_s = pd.concat([done[("gd_s", v)] for v in P.gd_sigma0s], ignore_index=True)
    gd_e = pd.concat([done[("gd_e", v)] for v in P.gd_etas], ignore_index=True)
    return sw, done["gd_main"], gd_s, gd_e


def sweep(P: Prop1Params, field: str, data: Dataset | None = None, eta: float | None = None,
          at: str = "fine", steps: int | None = None, every: int | None = None,
          seeds: list | None = None) -> pd.DataFrame:
    """Stage I over ``sigma0s``, ``Ms`` or ``etas`` (field "sigma0", "M" or "eta1"); seeds batched per value.

    at="fine": a finely recorded run of ``P.fine(eta)`` steps (t_spec and the gap at t_spec);
    at="stated": one run per value to the stated T1 = c eta^-1 sigma0^-0.5 M, recorded only at its
    start and end (the gap at the stated T1).  ``eta`` overrides the Stage I step of the sigma0 and
    M sweeps (the second regime); ``steps`` and ``every`` (an int, or a function of the swept value)
    override the fine run's length and cadence.
    """
    if field not in ("sigma0", "M", "eta1"):
        raise ValueError(f"field={field!r} is not allowed; choose one of ['M', 'eta1', 'sigma0']")
    if at not in ("fine", "stated"):
        raise ValueError(f"at={at!r} is not allowed; choose one of ['fine', 'stated']")
    setting = P.setting()
    seeds = list(P.seeds if seeds is None else seeds)
    data = data if data is not None and data.seeds == seeds else make_dataset(setting, seeds)
    base_eta = P.eta1 if eta is None else eta
    frames = []
    for v in {"sigma0": P.sigma0s, "M": P.Ms, "eta1": P.etas}[field]:
        e = v if field == "eta1" else base_eta
        change = {field: v, "eta1": e}
        if at == "fine":
            T, rec = P.fine(e)
            T = T if steps is None else steps
            rec = rec if every is None else (every(v) if callable(every) else every)
        else:
            T = P.stated_T1(sigma0=change.get("sigma0"), eta=e, M=change.get("M"))
            rec = T
        run = train_mot(setting, P.stage1(T, record_every=rec, **change), seeds, data=data)
        frames.append(summarize(run, P.route_min, P.min_share, **{field: v}, eta=e))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------- fits and verdicts
SLOPE_TEST = stats.SEEDWISE_TEST.format(what="log-log slope")


def slope(df: pd.DataFrame, x: str, y: str) -> tuple[stats.Estimate, int]:
    """Log-log slope of y against x fitted per seed (its points across the sweep), then the median over
    seeds with its order-statistic interval; also how many seeds had a slope (a seed needs 2 finite positive points)."""
    d = df[[x, y, "seed"]].replace([np.inf, -np.inf], np.nan).dropna()
    d = d[(d[x] > 0) & (d[y] > 0)]
    if d[x].nunique() < 2:
        return stats.Estimate(float("nan"), float("nan"), float("nan")), 0
    return stats.seedwise_fit(d, x, y)


def exponent_row(df, x, y, claim, stated: float, bound: str, id: str | None = None) -> dict:
    """Verdict row for a stated exponent (Theta): accepted if the interval of the median per-seed slope
    lies in stated +- TOL."""
    est, n = slope(df, x, y)
    return _with_diverged(stats.population_row(claim, f"{bound}: slope in [{stated - TOL:g}, {stated + TOL:g}]", est,
                                                (stated - TOL, stated + TOL), SLOPE_TEST, n, id=id), df, x)


def upper_bound_row(df, x, y, claim, stated: float, bound: str, id: str | None = None) -> dict:
    """Verdict row for an O(x^stated) upper bound: accepted if the interval of the median per-seed slope
    lies at or below stated + TOL."""
    est, n = slope(df, x, y)
    return _with_diverged(stats.population_row(claim, f"{bound}: slope at most {stated + TOL:g}", est,
                                               (-math.inf, stated + TOL), SLOPE_TEST, n, id=id), df, x)


def _with_diverged(row: dict, df: pd.DataFrame, x: str) -> dict:
    """``row`` with its note naming the runs of sweep ``df`` that diverged (``gd_sweep``'s ``diverged`` column)."""
    if "diverged" not in df or not df.diverged.any():
        return row
    gone = df[df.diverged.astype(bool)]
    return stats.add_note(row, f"{len(gone)} run(s) diverged and are left out: "
                          + ", ".join(f"seed {int(r.seed)} at {x}={getattr(r, x):.3g}" for r in gone.itertuples()))


def routing_row(run: Run, route_min: float = 0.95, seed_share: float = 0.5, id: str = "prop1.routing",
                claim: str = "the gate routes each class to its specialists at the end of Stage I") -> dict:
    """Share of seeds whose last Stage I step has every class covered and routing accuracy >= route_min,
    with its Wilson interval; accepted if the interval lies above ``seed_share`` (a share of exactly
    seed_share is not more than it).  A seed whose training diverged (``run.diverged``) counts as failing."""
    end = run.cfg.T
    ok = ((run.scalar("routing_acc").loc[end] >= route_min)
          & (run.scalar("classes_covered").loc[end] >= run.setting.N)).astype(float).to_numpy()
    ok = np.concatenate([ok, np.zeros(len(run.diverged))])
    row = stats.population_row(
        claim,
        f"share of seeds with every class covered and routing accuracy $\\ge {route_min:g}$: above {seed_share:g}",
        stats.share(ok), stats.above(seed_share, 1.0), "share of seeds passing, Wilson 95%", len(ok), id=id)
    if run.diverged:
        stats.add_note(row, f"{len(run.diverged)} seed(s) diverged and count as failing "
                            f"({', '.join(map(str, run.diverged))})")
    return row


def lowest(df: pd.DataFrame, col: str, k: int = 3) -> pd.DataFrame:
    """The rows of a sweep at its ``k`` smallest values of ``col`` (the asymptotic end for sigma0 -> 0)."""
    keep = np.sort(df[col].unique())[:k]
    return df[df[col].isin(keep)]


def missing(df: pd.DataFrame, col: str = "t_spec") -> int:
    """How many (seed, value) runs never specialized within their horizon."""
    return int(df[col].isna().sum())

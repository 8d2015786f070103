"""Lemma 1: does the attention-free MoE have an error floor that the MoT removes?  Used by notebooks/04_lemma1.

The attention-free MoE is the MoT with ``attention=False`` (W_KQ fixed at 0, so
each one-neuron cubic expert sums its per-token outputs); both models are
trained on the same data, from the same seeds, with the same three-stage
schedule (Stage II trains only the router for the attention-free MoE).

Measured per seed, on the fresh test sample:
* the *floor*: the mean test loss and the mean test error over the last
  ``tail`` share of training (the recorded steps t >= (1 - tail) T);
* whether it is a floor at all: the slope of log test loss against log step
  over the same tail (0 = flat; about -1 is plain GD's 1/t on separable data);
* the MoT's final test loss and error against the attention-free floor.

Two regimes are run: the book's default (noise orthogonal to the signals) and
a *noisy* one (isotropic noise, a louder class token so that routing survives
the noise), plus small sweeps of sigma_xi and L in the noisy regime.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..book import datafiles
from .. import stats
from ..book.registry import ChapterParams, register
from ..engine.config import Setting, TrainConfig, _check, _check_list
from ..engine.data import make_dataset
from ..engine.training import Run, train_mot

MODELS = ("MoT", "attention-free MoE")


@register("04_lemma1")
@dataclass(frozen=True)
class FloorParams(ChapterParams):
    """Parameters of notebooks/04_lemma1.ipynb."""
    seeds: tuple = tuple(range(16))  # full three-stage runs of two models in two regimes: 16 seeds fit the budget
    n_test: int = 2000               # fresh test samples per seed (the error floor is read on them)
    T1: int = 200                    # end of Stage I
    T2: int = 300                    # end of Stage II
    T: int = 500                     # end of Stage III
    record_every: int = 10           # record cadence of the two main regimes
    tail: float = 1 / 3              # the floor is read off the last `tail` share of training
    # the noisy regime (isotropic noise; a louder class token keeps routing intact)
    noisy_sigma_xi: float = 1.5
    noisy_beta: float = 4.0
    # sweeps, run in the noisy regime on the first `sweep_seeds` seeds
    sigma_xis: tuple = (1.0, 1.5, 2.0)
    Ls: tuple = (5, 8, 12)
    sweep_seeds: int = 2
    sweep_every: int = 25            # record cadence in the sweeps
    # verdict thresholds (stated in the notebook)
    flat_tol: float = 0.2            # a plateau: tail slope of log loss vs log step within [-flat_tol, flat_tol]
    min_floor_err: float = 0.005     # a nonzero error floor: tail test error at least this
    seed_share: float = 0.5          # a per-seed property holds if more than this share of seeds pass (Wilson 95%)
    # the attention-free MoE's own Stage III step (it has no attention to train in Stage II; its Stage I step is
    # the MoT's, which chapter 08's joint tuning keeps at 16 experts): chosen per regime on tune_seeds
    af_eta3_grid: tuple = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
    tune_seeds: tuple = (2147483642, 2147483643, 2147483644)  # the top of the seed range: no verdict set uses it

    def __post_init__(self):
        super().__post_init__()
        TrainConfig(T1=self.T1, T2=self.T2, T=self.T, record_every=self.record_every)
        _check("tail", self.tail, lo=0.0, hi=1.0, lo_open=True)
        _check("n_test", self.n_test, kind=int, lo=100, hi=1_000_000)
        if self.tail * self.T < 2 * self.record_every:
            raise ValueError(f"tail={self.tail!r} covers fewer than 2 recorded steps (T={self.T}, "
                             f"record_every={self.record_every}); allowed tail*T >= 2*record_every")
        _check("noisy_sigma_xi", self.noisy_sigma_xi, lo=0.0, hi=100.0)    # Setting's ranges, named as typed
        _check("noisy_beta", self.noisy_beta, lo=0.0, hi=100.0)
        Setting(sigma_xi=self.noisy_sigma_xi, beta=self.noisy_beta, noise_orthogonal=False)
        for name, kind, lo, hi in (("sigma_xis", (int, float), 0.0, 100.0), ("Ls", int, 3, 256)):
            v = _check_list(name, getattr(self, name), kind=kind)
            object.__setattr__(self, name, v)
            if len(v) < 2:
                raise ValueError(f"{name}={v!r} needs at least 2 values")
            for x in v:
                _check(name, x, kind=kind, lo=lo, hi=hi)
        _check("sweep_seeds", self.sweep_seeds, kind=int, lo=1, hi=len(self.seeds))
        _check("sweep_every", self.sweep_every, kind=int, lo=1, hi=self.T)
        _check("flat_tol", self.flat_tol, lo=0.0, hi=10.0, lo_open=True)
        _check("min_floor_err", self.min_floor_err, lo=0.0, hi=1.0, lo_open=True)
        _check("seed_share", self.seed_share, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        object.__setattr__(self, "af_eta3_grid", _check_list("af_eta3_grid", self.af_eta3_grid, lo=0.0, hi=1e8,
                                                            lo_open=True))
        object.__setattr__(self, "tune_seeds", _check_list("tune_seeds", self.tune_seeds, kind=int, lo=0,
                                                          hi=2**31 - 1))
        if not self.af_eta3_grid:
            raise ValueError("af_eta3_grid=[] is empty; give at least one Stage III step")
        if not self.tune_seeds or len(set(self.tune_seeds)) != len(self.tune_seeds):
            raise ValueError(f"tune_seeds={list(self.tune_seeds)} must be a non-empty list of distinct seeds")
        if set(self.tune_seeds) & set(self.seeds):
            raise ValueError(f"tune_seeds={list(self.tune_seeds)} share seeds with seeds={list(self.seeds)}; the "
                             "step is chosen on other seeds than the verdict's")

    # -------------------------------------------------------------- configs
    def default_setting(self) -> Setting:
        """The book's default setting (noise orthogonal to the signals, sigma_xi = 1)."""
        s = Setting(n_test=self.n_test)
        return s.replace(n_train=400, n_test=min(self.n_test, 1000)) if self.quick else s

    def noisy_setting(self, **changes) -> Setting:
        """Isotropic noise at ``noisy_sigma_xi`` with class-token amplitude ``noisy_beta``."""
        s = self.default_setting().replace(noise_orthogonal=False, sigma_xi=self.noisy_sigma_xi,
                                           beta=self.noisy_beta)
        return s.replace(**changes) if changes else s

    def train_config(self, **changes) -> TrainConfig:
        """The MoT's three-stage schedule (quick=True: half the steps)."""
        cfg = TrainConfig(T1=self.T1, T2=self.T2, T=self.T, record_every=self.record_every)
        if self.quick:
            cfg = cfg.replace(T1=self.T1 // 2, T2=self.T2 // 2, T=self.T // 2)
        return cfg.replace(**changes) if changes else cfg


# ------------------------------------------------------------------ experiments
#: the attention-free MoE at the MoT's steps in every stage (the chapter's ablation; the lever search's model)
AT_MOT_STEPS = "attention-free MoE, the MoT's steps"


def run_pair(setting: Setting, cfg: TrainConfig, seeds, progress: bool | None = None,
             af_eta3: float | None = None) -> dict[str, Run]:
    """Train the MoT and the attention-free MoE on the same data, same seeds, same schedule; ``af_eta3``: the
    attention-free MoE's own Stage III step (None: the MoT's)."""
    seeds = list(seeds)
    data = make_dataset(setting, seeds)
    af = cfg.replace(attention=False) if af_eta3 is None else cfg.replace(attention=False, eta3=af_eta3)
    return {"MoT": train_mot(setting, cfg, seeds, data=data, progress=progress),
            "attention-free MoE": train_mot(setting, af, seeds, data=data, progress=progress)}


def stage3_branches(setting: Setting, cfg: TrainConfig, seeds, etas, data=None) -> tuple[Run, dict]:
    """The attention-free MoE at the MoT's steps (``cfg``), and from its state at T2 a Stage III at each step of
    ``etas`` ({eta: Run, or None where a seed diverged}); Stages I and II are trained once (``Run.resume_point``)."""
    from ..engine.training import DivergenceError
    seeds = list(seeds)
    data = data if data is not None else make_dataset(setting, seeds)
    af = cfg.replace(attention=False)
    base = train_mot(setting, af, seeds, data=data, snapshot_at=(af.T2,))
    out = {}
    for eta in etas:
        try:
            r = train_mot(setting, af.replace(eta3=eta), seeds, data=data, start=base.resume_point(af.T2))
        except DivergenceError:
            out[eta] = None
            continue
        # the whole history: Stages I and II are the base run's (the same steps), Stage III the branch's
        r.history = pd.concat([base.history[base.history.step < af.T2], r.history], ignore_index=True)
        r._by_quantity = None
        out[eta] = r
    return base, out


def tune_af_eta3(P: FloorParams, setting: Setting, cfg: TrainConfig) -> tuple[float, pd.DataFrame]:
    """The attention-free MoE's Stage III step: of ``P.af_eta3_grid``, the one with the lowest median final
    training loss (the loss Stage III descends) on ``P.tune_seeds``, among the steps at which no tuning seed
    diverges; and the tuning table (median training loss at T2 and at T, median test loss and error at T)."""
    base, runs = stage3_branches(setting, cfg, P.tune_seeds, P.af_eta3_grid)
    rows = []
    for eta, r in runs.items():
        tr = r.scalar("train_loss") if r is not None else None
        rows.append({"eta3": eta, "diverged": r is None,
                     "train loss at T2": float(base.scalar("train_loss").loc[cfg.T2].median()),
                     "train loss at T": float(tr.iloc[-1].median()) if r is not None else np.inf,
                     "test loss at T": float(r.scalar("test_loss").iloc[-1].median()) if r is not None else np.inf,
                     "test error at T": float(1 - r.scalar("test_acc").iloc[-1].median()) if r is not None else np.nan})
    tab = pd.DataFrame(rows)
    ok = tab[~tab.diverged]
    if ok.empty:
        raise ValueError(f"af_eta3_grid={list(P.af_eta3_grid)}: every step diverged on a tuning seed; give smaller steps")
    best = float(ok.sort_values("train loss at T", kind="stable").eta3.iloc[0])
    return best, tab.assign(chosen=tab.eta3 == best)


def run_regime(P: FloorParams, setting: Setting, cfg: TrainConfig) -> tuple[dict[str, Run], float, pd.DataFrame]:
    """One regime: the MoT; the attention-free MoE at its own Stage III step (chosen on the tuning seeds,
    ``tune_af_eta3``), the one the verdicts read; and the same at the MoT's steps (``AT_MOT_STEPS``, the ablation
    that shares its Stages I and II).  Returns (runs, the chosen step, the tuning table)."""
    eta, tab = tune_af_eta3(P, setting, cfg)
    seeds = list(P.seeds)
    data = make_dataset(setting, seeds)
    mot = train_mot(setting, cfg, seeds, data=data)
    base, tuned = stage3_branches(setting, cfg, seeds, (eta,), data=data)
    if tuned[eta] is None:
        raise ValueError(f"the attention-free MoE's Stage III step {eta:g}, chosen on tune_seeds="
                         f"{list(P.tune_seeds)}, diverged on a verdict seed; give a smaller af_eta3_grid")
    return {"MoT": mot, "attention-free MoE": tuned[eta], AT_MOT_STEPS: base}, eta, tab


def run_regimes(P: FloorParams, regimes: dict[str, Setting], cfg: TrainConfig, jobs: int | None = None
                ) -> tuple[dict, dict, dict]:
    """``run_regime`` for every regime, on ``jobs`` worker processes (``executor.chapter_jobs()`` when None): the
    regimes are independent, and their numbers do not depend on where they ran.  Returns ({regime: runs},
    {regime: chosen step}, {regime: tuning table})."""
    from ..experiments.executor import chapter_executor
    with chapter_executor(jobs) as ex:
        futures = {name: ex.submit(run_regime, P, s, cfg) for name, s in regimes.items()}
        done = {name: f.result() for name, f in futures.items()}
    return ({k: v[0] for k, v in done.items()}, {k: v[1] for k, v in done.items()},
            {k: v[2] for k, v in done.items()})


def sweeps(P: FloorParams, centre: Setting, reuse: dict, af_eta3: float, jobs: int | None = None,
           **setting_changes) -> dict[str, pd.DataFrame]:
    """``sweep`` over sigma_xi and over L around the noisy regime's ``centre`` (its main run in ``reuse``), the two
    on ``jobs`` worker processes (``executor.chapter_jobs()`` when None); ``setting_changes`` as in ``sweep``."""
    import dataclasses
    from ..experiments.executor import chapter_executor
    # the centre's runs travel as their histories only (``sweep`` summarises them; their data and weights are large)
    light = {k: dataclasses.replace(r, data=None, params={}, snapshots={}, streams={}) for k, r in reuse.items()}
    with chapter_executor(jobs) as ex:
        futures = {field: ex.submit(sweep, P, field, reuse={getattr(centre, field): light}, af_eta3=af_eta3,
                                    **setting_changes)
                   for field in ("sigma_xi", "L")}
        return {field: f.result() for field, f in futures.items()}


def tail_steps(run: Run, tail: float) -> pd.Index:
    """Recorded steps in the last ``tail`` share of training (t >= (1 - tail) T)."""
    steps = run.scalar("test_loss").index
    return steps[steps >= (1 - tail) * run.cfg.T]


def per_seed_summary(run: Run, tail: float) -> pd.DataFrame:
    """One row per seed: final and tail-mean test loss and error, routing accuracy, tail slope of log loss."""
    loss = run.scalar("test_loss")
    err = 1 - run.scalar("test_acc")
    steps = tail_steps(run, tail)
    slope = [stats.fit_power_law(steps, loss.loc[steps, s])[0] for s in loss.columns]
    return pd.DataFrame({
        "seed": loss.columns.to_numpy(),
        "final_loss": loss.iloc[-1].to_numpy(), "tail_loss": loss.loc[steps].mean().to_numpy(),
        "final_err": err.iloc[-1].to_numpy(), "tail_err": err.loc[steps].mean().to_numpy(),
        "routing_acc": run.final("routing_acc").to_numpy(), "tail_slope": np.asarray(slope),
    })


def log_ratio_estimate(num, den) -> stats.Estimate:
    """Geometric-mean ratio num/den over seeds (paired): the mean of the per-seed log ratios with a
    Student-t interval, mapped back by exp."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    lr = np.log(np.clip(num, 1e-300, None)) - np.log(np.clip(den, 1e-300, None))
    e = stats.mean_t(lr)
    return stats.Estimate(float(np.exp(e.value)), float(np.exp(e.lo)), float(np.exp(e.hi)))


def sweep(P: FloorParams, field: str, reuse: dict | None = None, af_eta3: float | None = None,
          **setting_changes) -> pd.DataFrame:
    """Both models in the noisy regime with ``field`` (sigma_xi or L) swept; one row per (value, model, seed).

    ``reuse`` maps a value to an already trained pair (e.g. the main noisy run, which
    is the sweep's centre point); only its first ``sweep_seeds`` seeds are summarised.
    ``af_eta3``: the attention-free MoE's Stage III step (the noisy regime's tuned one; None: the MoT's).
    ``setting_changes`` change the noisy setting for every point (tests use it to shrink it).
    """
    if field not in ("sigma_xi", "L"):
        raise ValueError(f"field={field!r} is not allowed; choose one of ['L', 'sigma_xi']")
    values = {"sigma_xi": P.sigma_xis, "L": P.Ls}[field]
    seeds = list(P.seeds[:P.sweep_seeds])
    cfg = P.train_config(record_every=P.sweep_every)
    reuse = reuse or {}
    rows = []
    for v in values:
        runs = reuse.get(v) or run_pair(P.noisy_setting(**{**setting_changes, field: v}), cfg, seeds,
                                        af_eta3=af_eta3)
        for name, run in ((k, r) for k, r in runs.items() if k in MODELS):
            s = per_seed_summary(run, P.tail)
            rows.append(s[s.seed.isin(seeds)].assign(**{field: v, "model": name}))
    return pd.concat(rows, ignore_index=True)


def regime_table(pairs: dict[str, dict[str, Run]], tail: float) -> pd.DataFrame:
    """Median over seeds of the per-seed summary, one row per (regime, model)."""
    rows = []
    for regime, runs in pairs.items():
        for name, run in runs.items():
            s = per_seed_summary(run, tail).drop(columns="seed").median()
            rows.append({"regime": regime, "model": name, **s.to_dict()})
    return pd.DataFrame(rows).set_index(["regime", "model"])


# ------------------------------------------------------------------ verdicts
def verdict_rows(runs: dict[str, Run], regime: str, P: FloorParams) -> list[dict]:
    """The verdict rows for one regime, computed from its two runs, each a statement about the population
    of seeds:

    1. the MoT's final test loss is below the attention-free MoE's: the geometric-mean ratio MoE / MoT
       (mean of per-seed log ratios, Student-t 95%), accepted if its interval lies above 1;
    2. the attention-free MoE's test loss plateaus: a seed passes if its tail log-log slope lies within
       [-flat_tol, flat_tol];
    3. the attention-free MoE has a nonzero error floor: a seed passes if its tail-mean test error is at
       least min_floor_err;
    4. the MoT's final test error is below that floor: a seed passes if its final error is below the
       MoE's tail error by at least min_floor_err (the size that makes a floor nonzero).
    Rows 2-4 are pass/fail properties of a seed: each holds if the Wilson 95% interval of the share of
    passing seeds lies above ``seed_share`` (more than half of the seeds by default).  A mean over seeds
    does not fit them: in the default regime the error is exactly 0 on almost every seed and a few
    percent on one or two, and a t interval on such data swings with whether those seeds are drawn.
    """
    mot, moe = (per_seed_summary(runs[k], P.tail) for k in MODELS)
    n = len(mot)
    share = "share of seeds passing, Wilson 95%"
    most = f"a share above {P.seed_share:g}"
    return [
        stats.population_row(f"[{regime}] MoT final test loss below the attention-free MoE's",
                             "ratio MoE / MoT above 1", log_ratio_estimate(moe.final_loss, mot.final_loss),
                             stats.above(1.0), "geometric mean over seeds of the per-seed ratio, Student t 95% (log scale)",
                             n, id=f"lemma1.{regime}.mot_loss"),
        stats.population_row(f"[{regime}] attention-free MoE test loss plateaus (a floor)",
                             f"seeds whose tail slope of log loss against log $t$ lies in "
                             f"$[-{P.flat_tol:g}, {P.flat_tol:g}]$: {most}",
                             stats.share((moe.tail_slope.abs() <= P.flat_tol).to_numpy(float)),
                             stats.above(P.seed_share, 1.0),
                             share, n, id=f"lemma1.{regime}.moe_plateau"),
        stats.population_row(f"[{regime}] attention-free MoE has a nonzero test-error floor",
                             f"seeds whose tail test error is at least {P.min_floor_err:g}: {most}",
                             stats.share((moe.tail_err >= P.min_floor_err).to_numpy(float)),
                             stats.above(P.seed_share, 1.0),
                             share, n, id=f"lemma1.{regime}.moe_floor"),
        stats.population_row(f"[{regime}] MoT final test error below the attention-free floor",
                             f"seeds whose MoT final error is at least {P.min_floor_err:g} below the MoE's tail "
                             f"error: {most}",
                             stats.share((moe.tail_err - mot.final_err >= P.min_floor_err).to_numpy(float)),
                             stats.above(P.seed_share, 1.0), share, n, id=f"lemma1.{regime}.mot_below_floor"),
    ]


# ------------------------------------------------------------------ the levers tried while searching for a floor
LEVERS = (  # (noise_orthogonal, sigma_xi, beta, L, n_train): the exploration summarised in the notebook's table
    (True, 1.0, 1.0, 8, 1000), (False, 1.0, 1.0, 8, 1000), (False, 1.0, 2.0, 8, 1000), (False, 1.0, 3.0, 8, 1000),
    (False, 1.5, 3.0, 8, 1000), (False, 1.5, 4.0, 8, 1000), (False, 2.0, 2.0, 8, 1000), (False, 2.0, 3.0, 8, 1000),
    (False, 1.0, 2.0, 16, 1000), (False, 1.5, 2.0, 8, 200), (True, 2.0, 1.0, 16, 1000), (True, 2.0, 2.0, 8, 1000),
    (False, 0.5, 3.0, 8, 1000),
)


def explore_levers(seeds=(0, 1, 2), levers=LEVERS, record_every: int = 25, tail: float = 1 / 3,
                   progress: bool | None = None) -> pd.DataFrame:
    """Re-run the lever search (about 4 s per lever, 51 s for all on an idle 2-core machine: the notebook reads
    its cached result, ``load_levers``, rather than running it; ``python -m mot_lib levers`` rewrites it).

    Each lever is a setting (noise_orthogonal, sigma_xi, beta, L, n_train) under the
    default schedule; one row per lever with the medians over seeds of each model's
    final test loss and error, final routing accuracy and tail slope of log loss.
    """
    rows = []
    for orth, sx, beta, L, n in levers:
        st = Setting(noise_orthogonal=orth, sigma_xi=sx, beta=beta, L=L, n_train=n)
        runs = run_pair(st, TrainConfig(record_every=record_every), list(seeds), progress=progress)
        row = {"noise": "orthogonal" if orth else "isotropic", "sigma_xi": sx, "beta": beta, "L": L, "n_train": n}
        for name, run in runs.items():
            s = per_seed_summary(run, tail).median()
            row.update({f"{q} | {name}": s[q] for q in LEVER_QUANTITIES})
        rows.append(row)
    return pd.DataFrame(rows)


LEVER_QUANTITIES = ("final_loss", "final_err", "routing_acc", "tail_slope")
LEVER_COLUMNS = ["noise", "sigma_xi", "beta", "L", "n_train"] + [
    f"{q} | {m}" for m in MODELS for q in LEVER_QUANTITIES]
#: The cached lever search (written by ``python -m mot_lib levers``, read by notebooks/04_lemma1), and beside it
#: its manifest (lemma1_levers.json: the CSV's sha256 and rows, the canaries of ``levers_canaries``).
LEVERS_CSV = Path(__file__).resolve().parents[2] / "data" / "lemma1_levers.csv"
#: the modules that hold the lever search's rules (their hash is recorded for information)
LEVER_MODULES = ("engine.data", "engine.metrics", "stats", "claims.floor")


def levers_canaries() -> dict:
    """Tiny float64 runs of the lever search's two models (``run_pair``: 200 samples, 2 seeds, 24 steps):
    ``canary`` (the engine: final test losses and the sum of the absolute final weights of each parameter
    tensor) and ``canary_rules`` (the runs through the search's per-seed rule ``per_seed_summary``, and the
    medians over seeds that its rows hold)."""
    runs = run_pair(Setting(n_train=200, n_test=200), TrainConfig(T=24, T1=8, T2=16, record_every=4), [0, 1],
                    progress=False)
    engine, rules = [], []
    flat = lambda df: np.nan_to_num(df.to_numpy(float), nan=-1.0).ravel().tolist()   # noqa: E731
    for r in runs.values():
        engine += r.final("test_loss").tolist() + [float(r.params[k].abs().sum()) for k in sorted(r.params)]
        s = per_seed_summary(r, 1 / 3)[list(LEVER_QUANTITIES)]
        rules += flat(s) + flat(s.median().to_frame().T)
    return {"canary": engine, "canary_rules": rules}


def levers_stale(meta: dict) -> str | None:
    """Why the cached lever search of manifest ``meta`` is stale now (its canaries differ), or None."""
    from ..book.staleness import table_stale
    return table_stale(meta, levers_canaries)


def save_levers(df: pd.DataFrame, path=LEVERS_CSV, meta: dict | None = None) -> Path:
    """Write the lever search's table (``explore_levers``) as CSV and its manifest (``<name>.json`` beside it:
    the CSV's sha256 and rows, the canaries, the hash of its rule modules), both or neither
    (``datafiles.write_files``)."""
    from ..book.staleness import fingerprint
    path = Path(path)
    text = df[LEVER_COLUMNS].to_csv(index=False, float_format="%.6g")
    info = {"command": "python -m mot_lib levers", **fingerprint(LEVER_MODULES, levers_canaries), **(meta or {}),
            "files": {path.name: datafiles.entry(text.encode(), path.name)}}
    datafiles.write_files({path: text, path.with_suffix(".json"): json.dumps(info, indent=2)})
    return path


def load_levers(path=LEVERS_CSV, levers=LEVERS) -> pd.DataFrame:
    """Read the cached lever search: one row per lever of ``levers``, its values in range, the CSV's sha256 and rows
    those its manifest records; a missing, changed, unreadable or malformed file raises naming the file."""
    path = Path(path)
    redo = datafiles.redo_text("python -m mot_lib levers", path)
    if not path.exists():
        raise datafiles.MissingFile(f"{path}: the cached lever search is missing; "
                                    f"recreate it with `python -m mot_lib levers`")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable CSV ({e}); recreate it with `python -m mot_lib levers`") from None
    if list(df.columns) != LEVER_COLUMNS:
        raise ValueError(f"{path}: expected the columns {LEVER_COLUMNS}, found {list(df.columns)}; "
                         f"recreate it with `python -m mot_lib levers`")
    num = df[LEVER_COLUMNS[1:]]
    if not num.apply(lambda c: pd.api.types.is_numeric_dtype(c)).all() or not df.noise.isin(
            ["orthogonal", "isotropic"]).all():
        raise ValueError(f"{path}: a value is not a number (or noise is not orthogonal/isotropic); "
                         f"recreate it with `python -m mot_lib levers`")
    key = ["noise", "sigma_xi", "beta", "L", "n_train"]
    expected = pd.DataFrame([("orthogonal" if orth else "isotropic", sx, beta, L, n) for orth, sx, beta, L, n in levers],
                            columns=key)
    ranges = {f"{q} | {m}": rg for m in MODELS for q, rg in (
        ("final_loss", datafiles.Range(0.0, nan=False)), ("final_err", datafiles.Range(0.0, 1.0, nan=False)),
        ("routing_acc", datafiles.Range(0.0, 1.0)), ("tail_slope", datafiles.Range()))}
    datafiles.check_schema(df, path, redo, {c: "str" if c == "noise" else "num" for c in LEVER_COLUMNS}, key=key,
                           expected=expected, source="the levers of floor.LEVERS", ranges=ranges)
    mf = path.with_suffix(".json")
    try:
        meta = json.loads(mf.read_text())
    except FileNotFoundError:
        raise datafiles.MissingFile(f"{datafiles.rel(mf)} (the manifest of {path.name}) is missing; {redo}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{datafiles.rel(mf)}: not readable JSON ({e}); {redo}") from None
    datafiles.check_files(path.parent, meta if isinstance(meta, dict) else {}, redo, where=datafiles.rel(mf))
    return df

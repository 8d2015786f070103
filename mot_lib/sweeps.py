"""Sweeps too large for a chapter: run by ``python -m mot_lib sweep``, committed under ``data/``, read by the
chapters of the part "Beyond the paper" (08_fair_comparison, 09_training_schedule).

A sweep is a list of ``Job``s: one model configuration (a ``TrainConfig`` or ``SingleConfig`` as a dict of
fields, a ``Setting`` as a dict of changes) on a few seeds, with labels that say what it is (model, size,
step multiplier, stage boundaries...).  ``run_job`` trains it (seeds batched) and returns one row per seed
(``summarize``: final test loss and accuracy, the loss at fixed iteration budgets, iterations to each eps of
a grid, the routing accuracy at T1, the label token's attention weight at T2, the specialization and
gate-commitment steps, the parameter and FLOP counts) and the per-step curves of the quantities the job
keeps.  Every seed draws its data, initialisation and exploration from its own streams, so a seed's numbers
do not depend on the job (or the process) it runs in: the CLI spreads jobs over worker processes.

The files: ``data/<name>.csv`` (the per-seed rows), ``data/<name>_curves.csv`` (step, seed, quantity,
value, and the labels), ``data/<name>.json`` (the manifest: the fingerprint of ``canary.fingerprint`` over
``ENGINE_MODULES`` and the canary of every model family, the command, seeds, time, machine).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import capacity, rates
from .config import Setting, SingleConfig, TrainConfig, check_seeds

DATA = Path(__file__).resolve().parent.parent / "data"
#: loss levels of "iterations to eps" (test loss) and the iteration budgets at which the test loss is read
EPS_GRID = (1e-1, 1e-2, 1e-3)
BUDGETS = (100, 200, 500)
#: the modules a sweep table is computed with (the chapters' rule modules are added by each table)
ENGINE_MODULES = ("config", "data", "metrics", "models", "training", "rates", "capacity", "sweeps")
#: routing accuracy that counts as "routed" (t_spec), and explore_agree that counts as "the gate has committed"
ROUTE_MIN = 0.95
AGREE_MIN = 0.95


@dataclass(frozen=True)
class Job:
    """One configuration on some seeds.  ``labels``: what the rows are (columns of the table); ``kind``:
    "mot" (``train_mot``, any routed model) or "single"; ``cfg``: the config's fields; ``setting``: changes
    to the default ``Setting``; ``curves``: recorded quantities kept per step; ``cost``: relative CPU cost
    (only to hand the heaviest jobs out first)."""
    table: str
    labels: dict
    kind: str
    cfg: dict
    seeds: tuple
    setting: dict = field(default_factory=dict)
    curves: tuple = ()
    cost: float = 1.0

    def config(self) -> TrainConfig | SingleConfig:
        if self.kind not in ("mot", "single"):
            raise ValueError(f"kind={self.kind!r} is not allowed; choose 'mot' or 'single'")
        return (TrainConfig if self.kind == "mot" else SingleConfig)(**self.cfg)

    def the_setting(self) -> Setting:
        return Setting(**self.setting)


def first_step(curve: pd.Series, ok) -> float:
    """First recorded step > 0 whose value satisfies ``ok`` (NaN if none)."""
    c = curve[curve.index > 0]
    hit = c.index[ok(c.to_numpy())]
    return float(hit[0]) if len(hit) else math.nan


def summarize(run, cfg, setting: Setting) -> pd.DataFrame:
    """One row per seed of a finished run (module docstring); NaN where a quantity does not apply."""
    tl = run.scalar("test_loss")
    total, active = capacity.param_counts(cfg, setting.d)
    rows = []
    routed = run.model == "mot"
    if routed:
        racc, agree, cov = run.scalar("routing_acc"), run.scalar("explore_agree"), run.scalar("classes_covered")
        lw = run.scalar("label_weight")
    for s in run.seeds:
        curve = tl[s]
        row = {"seed": s, "final_test_loss": curve.iloc[-1], "final_test_acc": run.final("test_acc")[s],
               "params_total": total, "params_active": active, "step_flops": capacity.step_flops(cfg, setting)}
        for b in BUDGETS:
            row[f"loss_at_{b}"] = curve.loc[b] if b in curve.index else math.nan
        for e in EPS_GRID:
            row[f"steps_to_{e:g}"] = rates.iterations_to_eps(curve.index, curve.to_numpy(), e)
        if routed:
            row["routing_acc_T1"] = racc[s].loc[cfg.T1] if cfg.T1 in racc.index else math.nan
            row["label_weight_T2"] = lw[s].loc[cfg.T2] if cfg.T2 in lw.index else math.nan
            row["final_routing_acc"] = racc[s].iloc[-1]
            ok = (racc[s] >= ROUTE_MIN) & (cov[s] >= setting.N)
            row["t_spec"] = first_step(ok.astype(float), lambda v: v > 0.5)
            row["t_agree"] = first_step(agree[s], lambda v: v >= AGREE_MIN)
        rows.append(row)
    return pd.DataFrame(rows)


def run_job(job: Job, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-seed rows, curves) of one job, labelled with ``job.labels``."""
    from .training import train_mot, train_single
    cfg, st = job.config(), job.the_setting()
    seeds = check_seeds(list(job.seeds))
    from .training import DivergenceError
    train = train_mot if job.kind == "mot" else train_single
    try:
        run = train(st, cfg, seeds, progress=progress)
    except DivergenceError:            # a step size too large for one seed: each seed alone, the diverged marked
        if len(seeds) > 1:
            parts = [run_job(Job(**{**job.__dict__, "seeds": (s,)}), progress) for s in seeds]
            return (pd.concat([r for r, _ in parts], ignore_index=True),
                    pd.concat([c for _, c in parts], ignore_index=True))
        rows = pd.DataFrame([{"seed": seeds[0], "final_test_loss": math.inf, "diverged": True}])
        for k, v in reversed(list(job.labels.items())):
            rows.insert(0, k, v)
        return rows, pd.DataFrame(columns=list(job.labels) + ["step", "seed", "value", "quantity"])
    rows = summarize(run, cfg, st).assign(diverged=False)
    curves = []
    for q in job.curves:
        w = run.scalar(q)
        long = w.stack().rename("value").reset_index()      # step, seed, value
        curves.append(long.assign(quantity=q))
    curves = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=["step", "seed", "value", "quantity"])
    for k, v in reversed(list(job.labels.items())):
        rows.insert(0, k, v)
        curves.insert(0, k, v)
    return rows, curves


def _run_job_in_worker(args) -> tuple[pd.DataFrame, pd.DataFrame]:
    job, threads = args
    import torch
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    out = run_job(job)
    print(f"{job.table}: {job.labels} seeds {list(job.seeds)}: {time.time() - t0:.0f} s", flush=True)
    return out


def _indexed(args):
    i, job, threads = args
    return i, _run_job_in_worker((job, threads))


def run_jobs(jobs: list[Job], workers: int = 1, threads: int = 1,
             partial: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every job (heaviest first), in ``workers`` processes; (rows, curves) of all, in the jobs' order.
    ``partial``: a CSV to which each finished job's rows are appended (a run that is stopped keeps them)."""
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].cost * len(jobs[i].seeds))
    args = [(i, jobs[i], threads) for i in order]
    back = [None] * len(jobs)

    def keep(i, out):
        back[i] = out
        if partial is not None:
            out[0].to_csv(partial, mode="a", header=not Path(partial).exists(), index=False, float_format="%.8g")
    if workers > 1:
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(workers) as pool:
            for i, out in pool.imap_unordered(_indexed, args, chunksize=1):
                keep(i, out)
    else:
        for a in args:
            keep(*_indexed(a))
    rows = pd.concat([r for r, _ in back], ignore_index=True)
    kept = [c for _, c in back if len(c)]
    curves = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=["step", "seed", "value", "quantity"])
    return rows, curves


def smoke(job: Job) -> Job:
    """The job at a tiny size (2 seeds, 200 samples, 40 steps; stage boundaries at most 10 and 20): a check
    that a sweep runs and writes its files, in seconds (``python -m mot_lib sweep ... --smoke``)."""
    c = dict(job.cfg, T=40, record_every=10)
    if job.kind == "mot":
        c["T1"], c["T2"] = min(c["T1"], 10), min(c["T2"], 20)
    return Job(job.table, job.labels, job.kind, c, tuple(job.seeds[:2]), {**job.setting, "n_train": 200, "n_test": 200},
               job.curves, job.cost)


def chunked(seeds, size: int) -> list[tuple]:
    """Seeds in groups of ``size`` (the unit of work of one job)."""
    seeds = list(seeds)
    return [tuple(seeds[i:i + size]) for i in range(0, len(seeds), size)]


def save(name: str, rows: pd.DataFrame, curves: pd.DataFrame, meta: dict, folder: Path = DATA) -> Path:
    """Write data/<name>.csv, data/<name>_curves.csv and data/<name>.json (the manifest ``meta``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_csv(folder / f"{name}.csv", index=False, float_format="%.8g")
    curves.to_csv(folder / f"{name}_curves.csv", index=False, float_format="%.6g")
    (folder / f"{name}.json").write_text(json.dumps(meta, indent=2))
    return folder / f"{name}.csv"


def load(name: str, folder: Path = DATA) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(rows, curves, manifest) of a committed sweep; a missing or malformed file raises naming it."""
    folder = Path(folder)
    redo = f"recreate it with `python -m mot_lib sweep {name.split('_')[0]}`"
    paths = [folder / f"{name}.csv", folder / f"{name}_curves.csv", folder / f"{name}.json"]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p} is missing; {redo}")
    try:
        rows, curves = pd.read_csv(paths[0]), pd.read_csv(paths[1])
        meta = json.loads(paths[2].read_text())
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{folder / name}: not readable ({e}); {redo}") from None
    if "seed" not in rows or "library_hash" not in meta or "canary" not in meta:
        raise ValueError(f"{paths[0]}: expected a 'seed' column and a manifest with 'library_hash' and 'canary'; {redo}")
    return rows, curves, meta


def canary() -> list[float]:
    """Tiny float64 runs of every model family the sweeps hold, through the shared engine: the MoT under the
    four schedules, the shared-attention MoE (J = 1 and J = 3), the attention-free MoE with J = 3 neurons,
    the single transformer at (H, J) = (2, 3); 2 seeds, 200 samples.  Final test losses and the sum of the
    absolute final weights of each parameter tensor."""
    from .data import make_dataset
    from .training import train_mot, train_single
    st, seeds = Setting(n_train=200, n_test=200), [0, 1]
    data = make_dataset(st, seeds)
    base = TrainConfig(T=24, T1=8, T2=16, record_every=8)
    cfgs = [base.replace(schedule=s) for s in ("three_stage", "joint", "I_joint", "joint_III")]
    cfgs += [base.replace(shared_attention=True), base.replace(shared_attention=True, J=3),
             base.replace(attention=False, J=3)]
    runs = [train_mot(st, c, seeds, data, progress=False) for c in cfgs]
    runs.append(train_single(st, SingleConfig(H=2, J=3, T=10, record_every=5), seeds, data, progress=False))
    out = []
    for r in runs:
        out += r.final("test_loss").tolist() + [float(r.params[k].abs().sum()) for k in sorted(r.params)]
    return out


def fingerprint(modules) -> dict:
    from .canary import fingerprint as fp
    return fp(tuple(ENGINE_MODULES) + tuple(modules), canary)


def why_stale(meta: dict, modules) -> str | None:
    from .canary import why_stale as ws
    return ws(meta, tuple(ENGINE_MODULES) + tuple(modules), canary)


def status(meta: dict, stale: str | None) -> str:
    """What a committed sweep is and whether it is current (the staleness flag)."""
    flag = (f"STALE: {stale}; rerun the command above" if stale else
            "current: the modules of its rules are those it was computed with, and the engine's canary runs give "
            "the numbers they gave then")
    return "\n".join([f"computed by: {meta.get('command')}",
                      f"on: {meta.get('cpus')} CPU cores, torch {meta.get('torch')}, {meta.get('seconds')} s, "
                      f"{meta.get('jobs')} jobs",
                      f"engine hash {meta['library_hash'][:12]} (modules {', '.join(meta['modules'])}); {flag}"])


def seed_band(values: np.ndarray) -> tuple[float, float, float]:
    """(median, 25th, 75th percentile) over seeds, ignoring NaN."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (math.nan,) * 3
    return float(np.median(v)), float(np.percentile(v, 25)), float(np.percentile(v, 75))

"""Sweeps too large for a chapter: run by ``python -m mot_lib sweep``, committed under ``data/``, read by the
chapters of the part "Beyond the paper" (08_fair_comparison, 09_training_schedule).

A sweep is a list of ``Job``s: one model configuration (a ``TrainConfig`` or ``SingleConfig`` as a dict of
fields, a ``Setting`` as a dict of changes) on a few seeds, with labels that say what it is (model, size,
step multiplier, stage boundaries...).  ``run_job`` trains it (seeds batched) and returns one row per seed
(``summarize``: final test loss and accuracy, the loss at fixed iteration budgets, iterations to each eps of
a grid, the routing accuracy at T1, the label token's attention weight at T2, the specialization and
gate-commitment steps, the parameter and FLOP counts) and the per-step curves of the quantities the job
keeps.  Every seed draws its data, initialisation and exploration from its own streams, so a seed's numbers
do not depend on the job (or the process) it runs in: the CLI hands the jobs to one executor (``executor``: in
process, local processes, a Dask cluster), which keeps each finished job's result so a stopped run resumes.

The files, one folder per table (``datafiles.write_set`` swaps the whole folder in at once): ``data/<name>/rows.csv``
(the per-seed rows), ``data/<name>/curves.csv`` (step, seed, quantity, value, and the labels) and
``data/<name>/manifest.json`` (the sha256 and rows of both files, the canaries of ``canaries``, the hash of the
rule modules for information, the command, time, machine).  ``load`` checks the files and the schema (``check``)
and raises, naming the file; ``why_stale`` compares the canaries.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..engine import capacity
from ..book import datafiles
from .. import stats
from ..engine.config import Setting, SingleConfig, TrainConfig, check_seeds
from . import fair, schedule
from .jobs import Job, chunked, smoke  # noqa: F401  (sweeps.Job: the unit of work of every sweep)

DATA = datafiles.DATA
#: the files of a sweep's folder
ROWS, CURVES = "rows.csv", "curves.csv"
#: loss levels of "iterations to eps" (test loss) and the iteration budgets at which the test loss is read
EPS_GRID = (1e-1, 1e-2, 1e-3)
BUDGETS = (100, 200, 500)
#: the modules a sweep table is computed with (the chapters' rule modules are added by each table)
ENGINE_MODULES = ("engine.config", "engine.data", "engine.metrics", "engine.models", "engine.training", "stats",
                  "engine.capacity", "experiments.sweeps")
#: routing accuracy that counts as "routed" (t_spec), and explore_agree that counts as "the gate has committed"
ROUTE_MIN = 0.95
AGREE_MIN = 0.95


def first_step(curve: pd.Series, ok) -> float:
    """First recorded step > 0 whose value satisfies ``ok`` (NaN if none)."""
    c = curve[curve.index > 0]
    hit = c.index[ok(c.to_numpy())]
    return float(hit[0]) if len(hit) else math.nan


def summarize(run, cfg, setting: Setting, eps_grid=EPS_GRID, budgets=BUDGETS, route_min: float = ROUTE_MIN,
              agree_min: float = AGREE_MIN) -> pd.DataFrame:
    """One row per seed of a finished run (module docstring); NaN where a quantity does not apply.  The grids
    and thresholds are the table's (the canary passes its tiny runs through the same rules at levels they
    reach)."""
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
        for b in budgets:
            row[f"loss_at_{b}"] = curve.loc[b] if b in curve.index else math.nan
        for e in eps_grid:
            row[f"steps_to_{e:g}"] = stats.iterations_to_eps(curve.index, curve.to_numpy(), e)
        if routed:
            row["routing_acc_T1"] = racc[s].loc[cfg.T1] if cfg.T1 in racc.index else math.nan
            row["label_weight_T2"] = lw[s].loc[cfg.T2] if cfg.T2 in lw.index else math.nan
            row["final_routing_acc"] = racc[s].iloc[-1]
            ok = (racc[s] >= route_min) & (cov[s] >= setting.N)
            row["t_spec"] = first_step(ok.astype(float), lambda v: v > 0.5)
            row["t_agree"] = first_step(agree[s], lambda v: v >= agree_min)
        rows.append(row)
    return pd.DataFrame(rows)


def run_job(job: Job, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-seed rows, curves) of one job, labelled with ``job.labels``."""
    from ..engine.training import train_mot, train_single
    cfg, st = job.config(), job.the_setting()
    seeds = check_seeds(list(job.seeds))
    from ..engine.training import DivergenceError
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
    return run_job(job)


def describe(args) -> str:
    job = args[0]
    return f"{job.labels} seeds {list(job.seeds)}"


def reusable(jobs: list[Job], rows: pd.DataFrame, curves: pd.DataFrame) -> dict:
    """The results, taken from an earlier table of the same sweep (``rows``, ``curves``), of the jobs that table
    holds whole: {index of the job: (rows, curves)}, a job's rows being those whose label columns equal its
    labels and whose seed is one of its seeds (one per seed, none diverged away), in the table's order.  Used by
    ``sweep --reuse`` when a grid is widened: the caller checks that the table's engine canary is the current
    one."""
    out = {}
    if rows.empty:
        return out
    for i, j in enumerate(jobs):
        if any(k not in rows.columns for k in j.labels):
            continue
        m = rows.seed.isin(j.seeds)
        for k, v in j.labels.items():
            m &= rows[k] == v
        r = rows[m]
        if sorted(r.seed) != sorted(j.seeds):
            continue
        c = curves.iloc[:0]
        if j.curves:
            mc = curves.seed.isin(j.seeds) & curves.quantity.isin(j.curves)
            for k, v in j.labels.items():
                mc &= curves[k] == v
            c = curves[mc]
            ok = set(r.seed[~r.diverged.astype(bool)]) if "diverged" in r else set(r.seed)
            if set(c.seed) != ok:
                continue
        out[i] = (r.reset_index(drop=True), c.reset_index(drop=True))
    return out


def load_for_reuse(name: str, folder: Path, modules) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(rows, curves, manifest) of an earlier table of sweep ``name`` under ``folder``, for ``--reuse``: its files
    must be those its manifest records and its canaries the current ones (the same engine and rules), else a
    ValueError says which; its job list may differ from the current one (that is the point: a widened grid)."""
    where = Path(folder) / name
    meta = datafiles.read_manifest(where, f"--reuse {folder}: no table {name} there")
    datafiles.check_files(where, meta, f"--reuse {folder}: restore it (git checkout -- {datafiles.rel(where)}) or "
                          "drop --reuse")
    stale = why_stale(meta, modules)
    if stale:
        raise ValueError(f"--reuse {folder}: {datafiles.rel(where)} was computed with another engine or rules "
                         f"({stale}); its rows cannot be reused, drop --reuse")
    return pd.read_csv(where / ROWS), pd.read_csv(where / CURVES), meta


def run_jobs(jobs: list[Job], ex=None, threads: int = 1, cache: Path | None = None,
             fingerprint=None, reuse: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every job (heaviest first) on executor ``ex`` (``executor.executor``; None: in this process); (rows, curves)
    of all, in the jobs' order, so the tables do not depend on where or in which order the jobs ran.  ``cache``: a
    folder where each finished job's result is kept, keyed by the job, the threads and ``fingerprint`` (the
    canary): a stopped run resumes there (``executor.run``).  ``reuse``: results already known ({index of the job:
    (rows, curves)}, ``reusable``), not computed again."""
    from . import executor
    reuse = reuse or {}
    todo = [i for i in range(len(jobs)) if i not in reuse]
    if reuse:
        print(f"{jobs[0].table}: {len(reuse)} of {len(jobs)} jobs reused from the earlier table, {len(todo)} to run",
              flush=True)
    order = sorted(range(len(todo)), key=lambda k: -jobs[todo[k]].cost * len(jobs[todo[k]].seeds))
    tasks = [(jobs[i], threads) for i in todo]
    got = executor.run(_run_job_in_worker, tasks, ex or executor.InProcess(), cache=cache, fingerprint=fingerprint,
                       desc=jobs[0].table if jobs else "jobs", order=order, describe=describe) if tasks else []
    back = [None] * len(jobs)
    for i, v in zip(todo, got):
        back[i] = v
    for i, v in reuse.items():
        back[i] = v
    rows = pd.concat([r for r, _ in back], ignore_index=True)
    kept = [c for _, c in back if len(c)]
    curves = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=["step", "seed", "value", "quantity"])
    return rows, curves


def save(name: str, rows: pd.DataFrame, curves: pd.DataFrame, meta: dict, folder: Path = DATA) -> Path:
    """Write the folder <folder>/<name>: rows.csv, curves.csv and manifest.json (``meta`` with the files' sha256
    and rows), swapped in at once (``datafiles.write_set``); returns the folder."""
    return datafiles.write_set(Path(folder) / name, {ROWS: rows.to_csv(index=False, float_format="%.8g"),
                                                      CURVES: curves.to_csv(index=False, float_format="%.6g")}, meta)


def redo(name: str, meta: dict | None, folder) -> str:
    """How to recompute the sweep ``name`` (the manifest's command, else the default one)."""
    cmd = (meta or {}).get("command") or f"python -m mot_lib sweep {name.split('_')[0]}"
    return datafiles.redo_text(cmd, folder)


def load(name: str, folder: Path = DATA) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(rows, curves, manifest) of a committed sweep.  A missing, changed, unreadable or malformed file (its
    sha256 or rows are not those its manifest records, or its schema does not hold: ``check``) raises a
    ValueError naming it and the command that recomputes it."""
    folder = Path(folder) / name
    meta = datafiles.read_manifest(folder, redo(name, None, folder))
    again = redo(name, meta, folder)
    rows, curves = (datafiles.read_csv(folder / f, again) for f in (ROWS, CURVES))
    check(name, rows, curves, meta, folder, again)
    datafiles.check_files(folder, meta, again)
    return rows, curves, meta


#: the per-seed columns of every run, of the routed models only, and of the iteration budgets (a budget beyond
#: every run's T, or a routed column of a table of single transformers only, is absent: all NaN)
SUMMARY = ["final_test_loss", "final_test_acc", "params_total", "params_active", "step_flops"] + \
    [f"steps_to_{e:g}" for e in EPS_GRID]
ROUTED = ["routing_acc_T1", "label_weight_T2", "final_routing_acc", "t_spec", "t_agree"]
RANGES = {"final_test_loss": datafiles.Range(0.0, nan=False), "final_test_acc": datafiles.Range(0.0, 1.0),
          "params_total": datafiles.Range(0.0, lo_open=True), "params_active": datafiles.Range(0.0, lo_open=True),
          "step_flops": datafiles.Range(0.0, lo_open=True), "routing_acc_T1": datafiles.Range(0.0, 1.0),
          "final_routing_acc": datafiles.Range(0.0, 1.0), "label_weight_T2": datafiles.Range(0.0),
          **{f"loss_at_{b}": datafiles.Range(0.0) for b in BUDGETS},
          **{c: datafiles.Range(0.0, "_T", lo_open=True) for c in [f"steps_to_{e:g}" for e in EPS_GRID] + ["t_spec", "t_agree"]}}
#: the range of each recorded curve's values (``value``)
CURVE_RANGES = {"test_loss": (0.0, np.inf), "label_weight": (0.0, np.inf), "routing_acc": (0.0, 1.0),
                "explore_agree": (0.0, 1.0), "experts_used": (0.0, np.inf), "classes_covered": (0.0, np.inf),
                "dispatch_entropy": (0.0, np.inf)}


def expected_jobs(name: str, rows: pd.DataFrame, meta: dict, where: str, again: str) -> tuple[list[Job], str]:
    """The jobs the current code runs for sweep ``name`` (the fair comparison's verdict jobs at the multipliers
    its own tuning rows choose, which must be those its manifest records), and their source in words."""
    if name == schedule.NAME:
        return schedule.jobs(), "the current job list (schedule.jobs())"
    if name == fair.NAME:
        tuning = rows[rows.part == "tuning"].dropna(axis=1, how="all")
        chosen = fair.choose_multipliers(tuning) if len(tuning) else tuning
        key = ["level", "model", "match"]
        picked = {tuple(r[k] for k in key): float(r["mult"]) for r in meta.get("chosen", [])}
        for _, r in chosen.iterrows():
            k = tuple(r[c] for c in key)
            if picked.get(k) != float(r["mult"]):
                raise ValueError(f"{where}: its tuning rows choose the step multiplier {r['mult']:g} for {', '.join(map(str, k))}, "
                                 f"its manifest says {picked.get(k)}; {again}")
        jobs = fair.tuning_jobs()
        try:
            jobs += fair.verdict_jobs(chosen)
        except (IndexError, KeyError):
            raise ValueError(f"{where}: its tuning rows do not cover every model of fair.tuning_jobs(); {again}") from None
        return jobs, "the current job list (fair.tuning_jobs() and fair.verdict_jobs() at the multipliers its tuning rows choose)"
    raise ValueError(f"no job list for a sweep named {name!r}")


def check(name: str, rows: pd.DataFrame, curves: pd.DataFrame, meta: dict, folder: Path, again: str) -> None:
    """The schema of a sweep's files (raises a ValueError naming the file): the label columns of its jobs, the seed
    and the summary columns, of their types; one row per job and seed of the current code's job list; the
    values in range (losses >= 0, accuracies in [0, 1], iterations to a level and commitment steps in (0, T] of
    the row's run); and in the curves one series per job, seed and recorded quantity, its steps in [0, T]."""
    rp, cp = folder / ROWS, folder / CURVES
    jobs, source = expected_jobs(name, rows, meta, datafiles.rel(rp), again)
    labels = list(jobs[0].labels)
    kind = lambda v: "str" if isinstance(v, str) else ("int" if isinstance(v, int) else "num")   # noqa: E731
    lk = {k: kind(v) for k, v in jobs[0].labels.items()}
    exp = pd.DataFrame([{**j.labels, "seed": s, "_T": j.config().T, "_job": i}
                        for i, j in enumerate(jobs) for s in j.seeds])
    routed = any(j.kind == "mot" for j in jobs)
    kinds = {**lk, "seed": "int", **{c: "num" for c in SUMMARY}, "diverged": "bool"}
    optional = [f"loss_at_{b}" for b in BUDGETS] + (ROUTED if routed else [])
    full = datafiles.check_schema(rows, rp, again, kinds, optional=optional, key=labels + ["seed"], expected=exp,
                                  source=source, ranges=RANGES)
    # the curves: the series of every job, seed (not diverged) and recorded quantity
    ck = {**lk, "step": "int", "seed": "int", "value": "num", "quantity": "str"}
    if "mult" in ck:
        ck["mult"] = "num"
    datafiles.check_schema(curves, cp, again, ck)
    ok = full[~full["diverged"].astype(bool)]
    want = pd.DataFrame([{**{c: r[c] for c in labels + ["seed", "_T"]}, "quantity": q}
                         for r in ok.to_dict("records") for q in jobs[int(r["_job"])].curves])
    want = want if len(want) else pd.DataFrame(columns=labels + ["seed", "_T", "quantity"])
    series = curves[labels + ["seed", "quantity"]].drop_duplicates()
    datafiles.check_schema(series, cp, again, {c: ck[c] for c in labels + ["seed", "quantity"]},
                           key=labels + ["seed", "quantity"], expected=want, source=source)
    c = curves.merge(want, on=labels + ["seed", "quantity"], how="left")
    c.index = curves.index
    dup = curves.duplicated(labels + ["seed", "quantity", "step"])
    if dup.any():
        i = dup.idxmax()
        raise ValueError(f"{datafiles.rel(cp)}: line {i + 2} repeats step {curves.step[i]} of "
                         f"{datafiles.row_text(curves, i, labels + ['seed', 'quantity'])}; {again}")
    lo = c["quantity"].map(lambda q: CURVE_RANGES.get(q, (-np.inf, np.inf))[0])
    hi = c["quantity"].map(lambda q: CURVE_RANGES.get(q, (-np.inf, np.inf))[1])
    bad = (c.step < 0) | (c.step > c["_T"]) | ~(c.value >= lo) | ~(c.value <= hi)
    if bad.any():
        i = bad.idxmax()
        raise ValueError(f"{datafiles.rel(cp)}: line {i + 2} ({datafiles.row_text(curves, i, labels + ['seed', 'quantity'])}) "
                         f"has step {c.step[i]} and value {c.value[i]}, outside steps [0, {c['_T'][i]}] (the run's T) or "
                         f"values [{lo[i]:g}, {hi[i]:g}]; {again}")


def _canary_runs():
    """Tiny float64 runs of every model family the sweeps hold, through the shared engine: the MoT under the
    four schedules, the shared-attention MoE (J = 1 and J = 3), the attention-free MoE with J = 3 neurons,
    the single transformer at (H, J) = (2, 3); 2 seeds, 200 samples.  [(run, config)], the setting."""
    from ..engine.data import make_dataset
    from ..engine.training import train_mot, train_single
    st, seeds = Setting(n_train=200, n_test=200), [0, 1]
    data = make_dataset(st, seeds)
    base = TrainConfig(T=24, T1=8, T2=16, record_every=8)
    cfgs = [base.replace(schedule=s) for s in ("three_stage", "joint", "I_joint", "joint_III")]
    cfgs += [base.replace(shared_attention=True), base.replace(shared_attention=True, J=3),
             base.replace(attention=False, J=3)]
    runs = [(train_mot(st, c, seeds, data, progress=False), c) for c in cfgs]
    single = SingleConfig(H=2, J=3, T=10, record_every=5)
    runs.append((train_single(st, single, seeds, data, progress=False), single))
    return runs, st


#: the recorded quantities whose curves a sweep keeps (their sums enter the rules' canary)
CANARY_CURVES = ("test_loss", "label_weight", "explore_agree", "experts_used", "dispatch_entropy", "routing_acc",
                 "classes_covered")


def _flat(df: pd.DataFrame) -> list[float]:
    return np.nan_to_num(df.to_numpy(float), nan=-1.0).ravel().tolist()


def rule_numbers(run, cfg, setting: Setting) -> list[float]:
    """A canary run through the table's per-seed rules: ``summarize`` at the table's grids and thresholds, again
    at levels the tiny run reaches (its median test loss, its recorded steps as budgets, its median routing
    accuracy and agreement as thresholds), and the sums of the curves it keeps."""
    out = _flat(summarize(run, cfg, setting).drop(columns="seed"))
    tl = run.scalar("test_loss")
    kw = dict(eps_grid=(float(np.median(tl.to_numpy())),), budgets=tuple(int(s) for s in tl.index[1:]))
    if run.model == "mot":
        kw.update(route_min=float(np.median(run.scalar("routing_acc").to_numpy())),
                  agree_min=float(np.median(run.scalar("explore_agree").to_numpy())))
    out += _flat(summarize(run, cfg, setting, **kw).drop(columns="seed"))
    recorded = set(run.history.quantity)
    return out + [float(np.nansum(run.scalar(q).to_numpy())) for q in CANARY_CURVES if q in recorded]


def canaries(modules=()) -> dict:
    """The canaries of a sweep table whose own rule modules are ``modules`` ("fair", "schedule"): ``canary``, the
    final test losses and the sum of the absolute final weights of each parameter tensor of the tiny runs
    (the engine); ``canary_rules``, the same runs through the table's per-seed rules (``rule_numbers``) and the
    table module's own rules (``fair.rule_numbers``: the models' sizes and the choice of a multiplier)."""
    runs, st = _canary_runs()
    engine, rules = [], []
    for r, c in runs:
        engine += r.final("test_loss").tolist() + [float(r.params[k].abs().sum()) for k in sorted(r.params)]
        rules += rule_numbers(r, c, st)
    if "fair" in modules:
        rules += fair.rule_numbers()
    return {"canary": engine, "canary_rules": rules}


def canary() -> list[float]:
    """The engine's canary of the sweeps (``canaries``)."""
    return canaries()["canary"]


def fingerprint(modules) -> dict:
    """The manifest's staleness keys for the code as it is now: the canaries, and the hash of the rule modules
    (for information)."""
    from ..book.staleness import fingerprint as fp
    return fp(tuple(ENGINE_MODULES) + tuple(f"experiments.{m}" for m in modules), lambda: canaries(modules))


def why_stale(meta: dict, modules) -> str | None:
    """Why a sweep of manifest ``meta`` is stale now (its canaries differ, ``staleness.table_stale``), or None; its
    files and schema are checked by ``load``."""
    from ..book.staleness import table_stale
    return table_stale(meta, lambda: canaries(modules))


def status(meta: dict, stale: str | None) -> str:
    """What a committed sweep is and whether it is current (the staleness flag)."""
    flag = (f"STALE: {stale}; rerun the command above" if stale else
            "current: its files are those it was written with (sha256 and rows), its schema holds, and the canary "
            "runs give the numbers they gave then, through the engine and the table's own rules")
    files = ", ".join(f"{n} ({v['rows']:,} rows)" for n, v in meta.get("files", {}).items())
    return "\n".join([f"computed by: {meta.get('command')}",
                      f"on: {meta.get('cpus')} CPU cores, torch {meta.get('torch')}, {meta.get('seconds')} s, "
                      f"{meta.get('jobs')} jobs",
                      f"files: {files}; {flag}"])

"""Command line: rerun chapters with new parameters, or print the engine's regime table.

    python -m mot_lib list
    python -m mot_lib run 02_proposition1 -p seeds "[7, 8, 9]" -p quick true --out out/
    python -m mot_lib run all --out out/
    python -m mot_lib regime --seeds 0 1 2 3 4
    python -m mot_lib levers            # re-run Lemma 1's lever search, rewrite data/lemma1_levers.csv
    python -m mot_lib replicate --sets 2 --draw 1126   # claim chapters on untuned seed sets -> data/replication
    python -m mot_lib agree data/replication /tmp/more   # share of verdicts identical on every seed set
    python -m mot_lib predecessor       # the predecessor MoE table (Chen et al. 2022) -> data/predecessor_table/
    python -m mot_lib sweep all --jobs 16   # chapters 08 and 09's sweeps -> data/fair_comparison/, data/training_schedule/

``run`` validates every parameter against the chapter's parameter class (``run all``: against every chapter's,
before it runs any) and checks that --out takes files before it starts papermill, then writes the executed
notebook and the chapter's verdicts (<out>/verdicts/<chapter>.json) under --out.  Every error is one line on
stderr (``error: ...``) with exit code 2; ``--verbose`` adds its traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
from dataclasses import fields
from pathlib import Path

import yaml

from . import book


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_value(raw: str):
    """A ``-p`` value as papermill's ``-p`` reads it: True/False/None (also true/false/null), an int, a
    float (``1e-3``, ``.5``), else the string as typed; a ``[...]`` list too, its items read the same way."""
    s = raw.strip()
    if s in ("True", "true"):
        return True
    if s in ("False", "false"):
        return False
    if s in ("None", "none", "null"):
        return None
    if re.fullmatch(r"[+-]?\d+", s):
        return int(s)
    if _NUMBER.fullmatch(s):
        return float(s)
    if s.startswith("[") and s.endswith("]"):
        try:
            items = yaml.safe_load(s)
        except yaml.YAMLError:
            return raw
        if isinstance(items, list):
            return [parse_value(x) if isinstance(x, str) else x for x in items]
    return raw


def _parse_params(pairs) -> dict:
    return {name: parse_value(raw) for name, raw in pairs or []}


class ChapterError(Exception):
    """A chapter raised while papermill executed it: its exception's type and message, as one line."""


def _run_chapter(name: str, values: dict, out: Path) -> None:
    """Validate ``values`` against chapter ``name``'s parameters, then execute it with papermill into ``out``.

    The chapter's verdict file from an earlier run into ``out`` is removed first, so that a run that fails leaves
    none behind for the scorecard to read as current; an exception inside the chapter becomes a ChapterError."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    book.params_for(name, **dict(values))      # raises ValueError naming a bad parameter, before anything runs
    nb = book.NOTEBOOKS / f"{name}.ipynb"
    if not nb.exists():
        raise ValueError(f"notebook {nb.name} not found in {book.NOTEBOOKS}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdicts" / f"{name}.json").unlink(missing_ok=True)
    inject = {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}
    inject["out_dir"] = str(out)
    print(f"running {name} with {inject}", flush=True)
    try:
        pm.execute_notebook(str(nb), str(out / f"{name}.ipynb"), parameters=inject, cwd=str(book.NOTEBOOKS),
                            progress_bar=False, kernel_name="python3",
                            # the kernel's own log (ipykernel warns about TCP on every start; it logs "KeyboardInterrupt caught"
                            # at ERROR when a failed run is shut down) stays off stderr: the chapter's error is reported
                            extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    except PapermillExecutionError as e:
        what = e.evalue if e.ename == "ValueError" else f"{e.ename}: {e.evalue}"
        raise ChapterError(f"{name}: {what} (the executed notebook: {out / f'{name}.ipynb'})") from e


def _run_folder(out_dir, out) -> Path:
    """The folder ``run`` writes to: --out, or ``-p out_dir`` (both: they must name the same folder), else out/."""
    if out_dir is not None and not isinstance(out_dir, str):
        raise ValueError(f"out_dir={out_dir!r} must be a folder path or None")
    if out_dir is not None and out is not None and Path(out_dir).resolve() != Path(out).resolve():
        raise ValueError(f"-p out_dir {out_dir} and --out {out} name different folders; give one of them")
    return Path(out if out is not None else out_dir if out_dir is not None else "out").resolve()


def _params_for_all(params: dict) -> dict[str, dict]:
    """``run all``: each chapter's share of ``params`` (the names it has).  A name no chapter has raises; a name
    only some chapters have is passed to those, and a line says which do not get it."""
    chapters = book.load_chapters()
    names = sorted(chapters)
    has = {k: [n for n in names if k in {f.name for f in fields(chapters[n])}] for k in params}
    unknown = sorted(k for k, ns in has.items() if not ns)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}: no chapter has them; `python -m mot_lib list` shows every "
                         "chapter's parameters")
    for k, ns in has.items():
        if len(ns) < len(names):
            print(f"{k} is passed to {', '.join(ns)} only; the other chapters do not have it "
                  f"({', '.join(n for n in names if n not in ns)})")
    return {n: {k: v for k, v in params.items() if n in has[k]} for n in names}


def cmd_run(args) -> int:
    params = _parse_params(args.p)
    out = _run_folder(params.pop("out_dir", None), args.out)
    runs = _params_for_all(params) if args.chapter == "all" else {args.chapter: params}
    for name, values in runs.items():    # every chapter's parameters, before any chapter runs
        try:
            book.params_for(name, **dict(values))
        except ValueError as e:
            raise ValueError(f"{name}: {e}" if args.chapter == "all" else str(e)) from None
    book.writable_folder(out, "--out")                       # before any training
    book.writable_folder(out / "verdicts", "--out")
    from .experiments import executor
    executor.check_scheduler(args.scheduler, args.cluster, args.jobs)
    readers = [n for n in runs if n in book.READERS]           # the scorecard and the first page read the others
    tasks = [(name, dict(values), str(out)) for name, values in runs.items() if name not in readers]
    with executor.executor(args.scheduler, args.cluster, args.jobs) as ex:
        executor.run(_chapter_task, tasks, ex, desc="chapters", describe=lambda t: t[0])
    for name in readers:
        _run_chapter(name, runs[name], out)
    print(f"executed notebooks and verdicts are in {out}")
    return 0


def _replication_key() -> dict:
    """What every replicated chapter's verdicts depend on beyond the job itself: the claim chapters' rule modules and
    canary, and the registry (a kept verdict is reused only while they hold)."""
    return {**book.claim_fingerprint(), "registry": book.registry_hash()}


def _source_hash(name: str) -> str:
    import hashlib
    return hashlib.sha256((book.NOTEBOOKS / f"{name}.md").read_bytes()).hexdigest()


def _replicated_chapter(task) -> str:
    """One chapter of a replication set: (name, parameters, set folder name, source hash, work folder)."""
    name, values, label, _, tmp = task
    return _chapter_task((name, values, str(Path(tmp) / label)))


def _chapter_task(task) -> str:
    """One chapter run (name, parameters, folder) as an executor's job; returns its verdict file's text ('' when
    the chapter writes none)."""
    name, values, out = task
    _run_chapter(name, values, Path(out))
    v = Path(out) / "verdicts" / f"{name}.json"
    return v.read_text() if v.exists() else ""


def cmd_replicate(args) -> int:
    """Every claim chapter at its full defaults on ``--sets`` seed sets drawn at random (disjoint from the
    defaults and from each other); their verdicts and a manifest go to data/replication.  The chapter runs are
    the jobs of the sweeps' executor (``--jobs``, ``--scheduler``), resumable."""
    import shutil
    import tempfile

    sets = book.replication_sets(args.sets, args.draw)
    if args.only:
        unknown = sorted(set(args.only) - set(book.claim_chapters()))
        if unknown:
            raise ValueError(f"--only {unknown}: not claim chapters; choose from {book.claim_chapters()}")
        sets = {label: {n: s for n, s in seeds.items() if n in args.only} for label, seeds in sets.items()}
    from .experiments import executor
    executor.check_scheduler(args.scheduler, args.cluster, args.jobs)
    # each finished chapter's verdicts, kept until the replication is written: a stopped run resumes from them
    cache = executor.CACHE / f"replicate_{args.draw}"
    if args.fresh:
        shutil.rmtree(cache, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {label: Path(tmp) / label.replace(" ", "_") for label in sets}
        # a job's content: its chapter, seeds and set, and the chapter's source (so an edited chapter runs again)
        tasks = [(name, {"seeds": s}, label.replace(" ", "_"), _source_hash(name)) for label, seeds in sets.items()
                 for name, s in seeds.items()]
        with executor.executor(args.scheduler, args.cluster, args.jobs) as ex:
            texts = executor.run(_replicated_chapter, [(*t, tmp) for t in tasks], ex, cache=cache,
                                 fingerprint=_replication_key(), desc="replication", key=lambda t: t[:4],
                                 describe=lambda t: f"{t[0]} on seeds {t[1]['seeds']}")
        for (name, _, label, _), text in zip(tasks, texts):       # the skipped ones' verdicts come from the cache
            if text:
                (Path(tmp) / label / "verdicts").mkdir(parents=True, exist_ok=True)
                (Path(tmp) / label / "verdicts" / f"{name}.json").write_text(text)
        defaults = Path(args.defaults or os.environ.get("MOT_OUT_DIR", book.REPO / "_build" / "out"))
        dest = book.save_replication(dirs, sets, args.dest or book.REPLICATION, add=bool(args.only), draw=args.draw,
                                     defaults=defaults)
    shutil.rmtree(cache, ignore_errors=True)
    print(f"replication verdicts and manifest written to {dest}; the scorecard shows them beside the book's")
    return 0


def cmd_claims(args) -> int:
    """The claim registry with the verdicts in --out: JSON (--json) or a short text per statement and row."""
    out = Path(args.out) if args.out else Path(os.environ.get("MOT_OUT_DIR", book.REPO / "_build" / "out"))
    if args.out and not out.is_dir():
        raise ValueError(f"--out {out}: no such folder; give the folder a run wrote (it holds verdicts/)")
    table = book.read_verdicts(out) if (out / "verdicts").is_dir() else None
    reg = book.claim_registry.registry_json(table)
    if table is None:
        print(f"note: no verdicts in {out / 'verdicts'}: measured and verdict are null (run the chapters first, "
              f"`make book` or `python -m mot_lib run all --out {out}`)", file=sys.stderr)
    if args.json:
        print(json.dumps(reg, indent=2, allow_nan=False))
        return 0
    print(f"registry {reg['registry_hash'][:12]}: {len(reg['rows'])} rows; headline rule: {reg['headline_rule']}")
    for h in reg["headlines"]:
        print(f"{h['statement']}: {h['verdict']}. {h['sentence']}")
        for t in h["trend"]:
            print(f"    toward the theorem's regime: {t['text']}")
    for r in reg["rows"]:
        print(f"  {r['id']:<45} {r['kind']:<13} {r['verdict'] or '-'}")
    return 0


def cmd_agree(args) -> int:
    """How many verdicts are the same on the default seeds (--out) and on every replication folder given."""
    import pandas as pd

    out = Path(args.out) if args.out else Path(os.environ.get("MOT_OUT_DIR", book.REPO / "_build" / "out"))
    verdicts = out / "verdicts"
    have = {f.stem for f in verdicts.glob("*.json")} if verdicts.is_dir() else set()
    claims = book.claim_chapters()
    if not have & set(claims):
        raise ValueError(f"no verdicts of a default run in {verdicts}: run the chapters first, "
                         f"`python -m mot_lib run all --out {out}` (or `make book`, which writes _build/out), "
                         f"then compare with `python -m mot_lib agree {' '.join(args.folders)} --out {out}`")
    if set(claims) - have:
        print(f"note: no default verdicts from {', '.join(sorted(set(claims) - have))} in {verdicts}; "
              "their rows are not compared", file=sys.stderr)
    table = book.read_verdicts(out)
    table = table[table.chapter.isin(claims)]
    reps = {}
    for d in args.folders:
        loaded = book.load_replication(d, strict=True)
        if loaded is None:
            raise ValueError(f"{d}: no manifest.json; write one with `python -m mot_lib replicate --dest {d}`")
        reps.update({f"{d}:{k}": v for k, v in loaded[0].items()})
        stale = book.replication_stale(loaded[1])
        if stale:
            print(f"note: the replication {d} is stale: {stale}", file=sys.stderr)
    with pd.option_context("display.width", 200):
        print(book.agreement_report(table, reps).to_string())
    return 0


def cmd_regime(args) -> int:
    import pandas as pd

    from .claims import comparator
    from .claims.setting import compare_models, regime_report
    single, where = comparator.single_config(comparator.TUNED)     # the book's one comparator (chapter 08's step)
    print(where)
    runs = compare_models(single=single, seeds=args.seeds, progress=None)    # None: bars unless MOT_PROGRESS=0
    with pd.option_context("display.width", 200, "display.max_colwidth", 70):
        print(regime_report(runs).to_string(index=False))
    return 0


def cmd_levers(args) -> int:
    import pandas as pd

    from .claims import floor
    path = Path(args.out) if args.out else floor.LEVERS_CSV
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give the CSV file to write")
    book.writable_folder(path.parent, "--out")              # before the training (about a minute), not after it
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"--out {path}: the file is read-only; give a writable file")
    df = floor.explore_levers(seeds=tuple(args.seeds), progress=None)    # None: bars unless MOT_PROGRESS=0
    path = floor.save_levers(df, path)
    with pd.option_context("display.width", 250, "display.max_columns", 50):
        print(df.to_string(index=False))
    print(f"written to {path}")
    return 0


def _out_folder(args, name: str, smoke: bool) -> Path:
    """The data folder the table sets of command ``name`` go to (``<out>/<table>/``): --out, else data/ (a full
    run) or a fresh temporary folder (a smoke run); a smoke run into the committed data/ needs --overwrite.
    Checked before any training."""
    import tempfile

    from .book import datafiles
    if args.out is None:
        if smoke:
            out = Path(tempfile.mkdtemp(prefix=f"mot-{name}-smoke-"))
            print(f"smoke run: writing to {out} (a fresh temporary folder; data/ is left as it is)", flush=True)
            return out
        return datafiles.DATA
    out = Path(args.out)
    if out.suffix == ".csv":
        raise ValueError(f"--out {out}: give a data folder (each table is written to <out>/<table>/ as rows.csv "
                         f"and manifest.json), not a CSV")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    if smoke and out.resolve() == datafiles.DATA.resolve() and not args.overwrite:
        raise ValueError(f"--out {out} is the committed data folder: a smoke run would replace its tables with tiny "
                         f"ones; leave out --out (a temporary folder is used) or add --overwrite")
    return out


def _replaced(folder: Path) -> str | None:
    """What a table set's folder holds before it is replaced ('rows.csv 520 rows, ...'), for the message."""
    from .book import datafiles
    return datafiles.describe(folder)


def cmd_predecessor(args) -> int:
    """The predecessor's four settings, four baselines and the MoT comparison; the table set to data/.  Its jobs run
    on the sweeps' executor (``experiments.executor``: in process, worker processes, a Dask cluster), resumably."""
    import shutil
    import time

    import pandas as pd
    import torch

    from .experiments import executor
    from .experiments import predecessor_table as pt
    executor.check_scheduler(args.scheduler, args.cluster, args.jobs)
    out = _out_folder(args, pt.NAME, smoke=False)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    engine = pt.fingerprint()           # the code the workers import now, before anything is edited
    jobs = pt.jobs_for(args.settings, args.single_settings, args.attention_settings, args.seeds, args.n, args.threads,
                       args.chunk)
    cache = executor.CACHE / pt.NAME    # each finished job's rows: a stopped run resumes from them
    if args.fresh:
        shutil.rmtree(cache, ignore_errors=True)
    tasks = [{k: v for k, v in j.items() if k not in ("cost", "job")} for j in jobs]   # the content of each job
    with executor.executor(args.scheduler, args.cluster, args.jobs) as ex:
        parts = executor.run(pt.compute_job, tasks, ex, cache=cache, fingerprint=executor.numbers_only(engine), desc=pt.NAME,
                             describe=lambda t: f"settings {list(t['settings'])}, seeds {list(t['seeds'])}")
    df = pd.concat(parts, ignore_index=True)
    order = {m: i for i, m in enumerate(pt.BASELINES + pt.ATTENTION_MODELS)}
    df = df.sort_values(["setting", "model", "loss", "seed"], key=lambda c: c.map(order) if c.name == "model" else c,
                        ignore_index=True)
    secs = time.time() - t0
    if pt.is_stale(engine):
        print("warning: the engine changed while the table was computed; the manifest keeps the "
              "fingerprint of the code the run started with", file=sys.stderr)
    meta = {**engine, "seeds": list(args.seeds), "settings": list(args.settings), "attention_settings":
            list(args.attention_settings), "single_settings": list(args.single_settings), "n_train": args.n, "n_test": args.n,
            "schedule": dict(vars(pt.Schedule())), "threads": torch.get_num_threads(), "jobs": args.jobs, "chunk": args.chunk,
            "torch": torch.__version__, "cpus": os.cpu_count(), "device": "cpu",
            "seconds": round(secs)}
    before = _replaced(out / pt.NAME)
    path = pt.save_table(df, out / pt.NAME, meta)
    summary = df.groupby(["setting", "model", "loss"])[["test_acc", "entropy"]].agg(["mean", "std"])
    print(summary.round(3).to_string())
    print(f"written to {path}/ (rows.csv, {len(df)} rows, and manifest.json) in {secs:.0f} s"
          + (f"; it replaced {before}" if before else ""))
    return 0


def cmd_sweep(args) -> int:
    """The sweeps of the part "Beyond the paper" (mot_lib.sweeps): the fair comparison (tuning, then the verdict
    seeds at each model's chosen step multiplier) and the training-schedule sweeps, on one executor (in process,
    worker processes, a Dask cluster: ``experiments.executor``), resumable."""
    import contextlib
    with contextlib.ExitStack() as stack:
        return _sweep(args, stack)


def _sweep(args, stack) -> int:
    import shutil
    import time

    import pandas as pd
    import torch

    from .book import datafiles
    if args.table == "regime":
        return _sweep_regime(args, stack)
    from .experiments import executor, fair
    from .experiments import schedule
    from .experiments import sweeps
    if (args.tuning_only or args.tuning) and args.table != "fair":
        raise ValueError("--tuning-only and --tuning split the fair comparison in two; use them with `sweep fair`")
    if args.tuning_only and args.tuning:
        raise ValueError("--tuning-only writes the tuning rows and --tuning reads them: give one of them")
    tables = ["fair", "schedule"] if args.table == "all" else [args.table]
    modules = {"fair": ("fair",), "schedule": ("schedule",)}
    if args.tuning_only and args.out is None:      # not a table set: its rows go outside data/ unless asked
        out = datafiles.WORK
        out.mkdir(parents=True, exist_ok=True)
    else:
        out = _out_folder(args, f"sweep-{args.table}", smoke=args.smoke)
    executor.check_scheduler(args.scheduler, args.cluster, args.jobs)
    prints = {t: sweeps.fingerprint(modules[t]) for t in tables}     # the code the workers import now
    t0 = time.time()
    shrink = sweeps.smoke if args.smoke else (lambda j: j)
    # each finished job's result, outside data/: a stopped run resumes from them (``--fresh`` drops them)
    cache = executor.CACHE / (f"sweep_{args.table}" + ("_smoke" if args.smoke else ""))
    if args.fresh:
        shutil.rmtree(cache, ignore_errors=True)
    machine = {"torch": torch.__version__, "cpus": os.cpu_count(), "jobs": args.jobs}
    ex = stack.enter_context(executor.executor(args.scheduler, args.cluster, args.jobs))
    if args.reuse and args.smoke:
        raise ValueError("--reuse takes the rows of a full-size table; a --smoke run cannot reuse them")
    earlier = {t: sweeps.load_for_reuse({"fair": fair.NAME, "schedule": schedule.NAME}[t], Path(args.reuse), modules[t])
               for t in tables} if args.reuse else {}
    reused = {}

    def run(jobs):
        jobs = [shrink(j) for j in jobs]
        known = {}
        for t, (r, c, _) in earlier.items():
            known.update(sweeps.reusable(jobs, r[r.part.isin({j.labels["part"] for j in jobs})], c)
                         if "part" in r else {})
        for j in (jobs[i] for i in known):
            reused[j.table] = reused.get(j.table, 0) + 1
        return sweeps.run_jobs(jobs, ex, args.threads, cache, {t: executor.numbers_only(f) for t, f in prints.items()},
                               reuse=known)
    tuning_meta = {}
    if args.tuning:                      # the tuning phase was run elsewhere (--tuning-only): read its rows
        tpath = Path(args.tuning)
        if not tpath.exists() or not tpath.with_suffix(".json").exists():
            raise ValueError(f"--tuning {tpath}: the file (or its .json) is missing; write it with --tuning-only")
        tuning_meta = json.loads(tpath.with_suffix(".json").read_text())
        if sweeps.why_stale(tuning_meta, modules["fair"]):
            raise ValueError(f"--tuning {tpath}: computed with another engine ({sweeps.why_stale(tuning_meta, modules['fair'])})")
        rows, curves = pd.read_csv(tpath), pd.DataFrame(columns=["part", "step", "seed", "value", "quantity"])
    else:
        first = (fair.tuning_jobs() if "fair" in tables else []) + (schedule.jobs() if "schedule" in tables else [])
        rows, curves = run(first)
    if args.tuning_only:
        out.mkdir(parents=True, exist_ok=True)
        tpath = out / f"{fair.NAME}_tuning.csv"
        rows.dropna(axis=1, how="all").to_csv(tpath, index=False, float_format="%.8g")
        tpath.with_suffix(".json").write_text(json.dumps({**prints["fair"], **machine, "seconds": round(time.time() - t0),
            "command": f"python -m mot_lib sweep fair --tuning-only --jobs {args.jobs} --threads {args.threads}"}, indent=2))
        print(f"tuning rows written to {tpath}; run the verdict seeds with `sweep fair --tuning {tpath}`")
        return 0
    results = {}
    if "schedule" in tables:
        results["schedule"] = (rows[rows.part.isin(["schedules", "grid", "scaling", "explore"])],
                               curves[curves.part.isin(["schedules", "grid", "scaling", "explore"])], {})
    if "fair" in tables:
        tuning = rows[rows.part == "tuning"].dropna(axis=1, how="all")
        chosen = fair.choose_multipliers(tuning)
        print(chosen.to_string(), flush=True)
        edge = fair.at_edge(chosen)
        if len(edge):
            print(f"warning: {len(edge)} tuned multipliers lie at an edge of their model's grid (fair.mults_for): "
                  + "; ".join(f"{r.model} ({r.match}) at level {r.level}: {r.mult:g}" for r in edge.itertuples())
                  + "; widen the grid", file=sys.stderr, flush=True)
        vrows, vcurves = run(fair.verdict_jobs(chosen))
        extra = {"chosen": chosen.to_dict(orient="records")}
        if tuning_meta:
            extra["tuning"] = {k: tuning_meta.get(k) for k in ("command", "torch", "cpus", "jobs", "seconds")}
        results["fair"] = (pd.concat([tuning, vrows], ignore_index=True), vcurves, extra)
    secs = round(time.time() - t0)
    names = {"fair": fair.NAME, "schedule": schedule.NAME}
    for t, (r, c, extra) in results.items():
        if sweeps.why_stale(prints[t], modules[t]):
            print(f"warning: the engine changed while {t} was computed; the manifest keeps the fingerprint of the "
                  "code the run started with", file=sys.stderr)
        meta = {**prints[t], "command": f"python -m mot_lib sweep {args.table} --jobs {args.jobs} --threads {args.threads}"
                + (" --smoke" if args.smoke else "") + (f" --tuning {Path(args.tuning).name}" if args.tuning else ""),
                **machine, "seconds": secs, **extra}
        if t in earlier:
            meta["command"] += f" --reuse {args.reuse}"
            meta["reused"] = {"jobs": reused.get(names[t], 0), "from": earlier[t][2].get("command"),
                              "note": "the rows and curves of these jobs were taken from the earlier table (same "
                                      "canaries, same labels and seeds), not computed again"}
        before = _replaced(out / names[t])
        path = sweeps.save(names[t], r.dropna(axis=1, how="all"), c.dropna(axis=1, how="all"), meta, out)
        print(f"written to {path}/ ({len(r)} rows, {len(c)} curve rows) in {secs} s"
              + (f"; it replaced {before}" if before else ""))
    return 0


def _sweep_regime(args, stack) -> int:
    """``sweep regime``: the claim rows of the statements that do not hold, again toward the theorem's regime (larger
    d, smaller sigma0, more classes with M ~ N log N: ``claims.regime``), written to data/regime_trends/."""
    import shutil
    import time

    import torch

    from .book import trends
    from .claims import regime
    from .experiments import executor
    for flag in ("tuning_only", "tuning", "reuse"):
        if getattr(args, flag):
            raise ValueError(f"--{flag.replace('_', '-')} belongs to `sweep fair`; `sweep regime` has no such phase")
    out = _out_folder(args, "sweep-regime", smoke=args.smoke)
    executor.check_scheduler(args.scheduler, args.cluster, args.jobs)
    prints = trends.fingerprint()
    cache = executor.CACHE / ("sweep_regime" + ("_smoke" if args.smoke else ""))
    if args.fresh:
        shutil.rmtree(cache, ignore_errors=True)
    ex = stack.enter_context(executor.executor(args.scheduler, args.cluster, args.jobs))
    pts = regime.smoke_points() if args.smoke else regime.points()
    t0 = time.time()
    rows = regime.run(pts, ex, args.threads, cache, executor.numbers_only(prints))
    secs = round(time.time() - t0)
    if trends.stale(prints):
        print("warning: the engine changed while the regime sweep was computed; the manifest keeps the fingerprint "
              "of the code the run started with", file=sys.stderr)
    meta = {**prints, "command": f"python -m mot_lib sweep regime --jobs {args.jobs} --threads {args.threads}"
            + (" --smoke" if args.smoke else ""), "torch": torch.__version__, "cpus": os.cpu_count(),
            "jobs": args.jobs, "seconds": secs, "points": len(pts), "seeds": list(pts[0].seeds)}
    before = _replaced(out / trends.NAME)
    path = trends.save(rows, meta, out)
    print(f"written to {path}/ ({len(rows)} rows, {len(pts)} regime points) in {secs} s"
          + (f"; it replaced {before}" if before else ""))
    for line in trends.lines(trends.summarize(rows)):
        print(line)
    return 0


def _executor_options(p) -> None:
    """--scheduler, --cluster and --fresh: where a multi-job command's jobs run, and whether it resumes."""
    p.add_argument("--scheduler", default=None, help="'local' (a Dask LocalCluster of --jobs workers) or a running "
                   "Dask scheduler's address, e.g. tcp://10.0.0.5:8786 (default: no Dask)")
    p.add_argument("--cluster", default=None, choices=["pbs", "slurm"],
                   help="start --jobs Dask workers on a batch system through dask-jobqueue (an optional extra)")
    p.add_argument("--fresh", action="store_true", help="drop the finished jobs kept from an earlier, stopped "
                   "run (_build/cache/) and compute every job again")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (exit code 2) like every other error of the command line."""

    def error(self, message):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _one_line(e: BaseException) -> str:
    """An exception as one line: its message, after its type's name unless it is a ValueError, an OSError or a
    chapter's error (their messages say what failed)."""
    msg = str(e) if isinstance(e, (ValueError, OSError, ChapterError)) else f"{type(e).__name__}: {e}"
    return " ".join(msg.split())


def main(argv=None) -> int:
    ap = _Parser(prog="python -m mot_lib", description=__doc__.splitlines()[0])
    ap.add_argument("--verbose", action="store_true", help="on an error, show its traceback (also after the command)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the chapters and their parameters")
    r = sub.add_parser("run", help="execute one chapter (or all) with papermill")
    r.add_argument("chapter", help="a chapter name (see `list`) or 'all'")
    r.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"), help="a parameter, as in papermill")
    r.add_argument("--out", default=None, help="folder for executed notebooks and verdicts (default: -p out_dir, "
                   "else out/)")
    r.add_argument("--jobs", type=int, default=1, help="chapters run at a time with `run all` (default 1: in this "
                   "process); with --scheduler local or --cluster, the number of Dask workers")
    r.add_argument("--scheduler", default=None, help="'local' (a Dask LocalCluster) or a Dask scheduler's address")
    r.add_argument("--cluster", default=None, choices=["pbs", "slurm"], help="Dask workers through dask-jobqueue")
    g = sub.add_parser("regime", help="train MoT, attention-free MoE and single transformer; print the regime table")
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    lv = sub.add_parser("levers", help="re-run Lemma 1's search for a floor regime; rewrite its cached table")
    lv.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    lv.add_argument("--out", default=None, help="CSV to write (default: data/lemma1_levers.csv)")
    rp = sub.add_parser("replicate", help="rerun every claim chapter on other seeds; verdicts to data/replication")
    rp.add_argument("--sets", type=int, default=2, help="how many seed sets (default: 2)")
    rp.add_argument("--draw", type=int, default=book.replication.COMMITTED_DRAW,
                    help=f"seed of the draw of the sets' seeds (default: {book.replication.COMMITTED_DRAW}, the committed "
                         "sets); another value gives other sets")
    rp.add_argument("--defaults", default=None, metavar="FOLDER",
                    help="folder holding the default run's verdicts/, for the agreement the manifest's history records "
                         "(default: $MOT_OUT_DIR or _build/out)")
    rp.add_argument("--dest", default=None, help="folder to write (default: data/replication)")
    rp.add_argument("--only", nargs="+", default=None, metavar="CHAPTER",
                    help="rerun only these chapters and add them to the committed sets (same --sets and --draw)")
    rp.add_argument("--jobs", type=int, default=1, help="chapters run at a time (default 1: in this process); with "
                    "--scheduler local or --cluster, the number of Dask workers")
    _executor_options(rp)
    cl = sub.add_parser("claims", help="the claim registry: every row the book decides, its kind, rule, measured value "
                                       "and verdict, and one headline verdict per statement of the paper")
    cl.add_argument("--json", action="store_true", help="print it as one JSON object")
    cl.add_argument("--out", default=None, help="folder holding the verdicts/ to read (default: $MOT_OUT_DIR or "
                                                 "_build/out)")
    ag = sub.add_parser("agree", help="share of verdicts identical on the default seeds and on replication folders")
    ag.add_argument("folders", nargs="+", help="replication folders (written by `replicate --dest`)")
    ag.add_argument("--out", default=None, help="folder holding the default run's verdicts/ (default: _build/out)")
    pr = sub.add_parser("predecessor", help="reproduce the predecessor MoE table (Chen et al. 2022) and the MoT "
                        "comparison; write data/predecessor_table/")
    pr.add_argument("--seeds", type=int, nargs="+", default=list(range(20)), help="seeds (default 0-19, as committed)")
    pr.add_argument("--settings", type=int, nargs="+", default=[1, 2, 3, 4], choices=[1, 2, 3, 4])
    pr.add_argument("--single-settings", type=int, nargs="*", default=[1], choices=[1, 2, 3, 4],
                    help="settings on which the single CNNs run (default 1: the one with published single-CNN "
                         "values here; the cubic one is the costliest model, about 10 CPU-minutes a setting)")
    pr.add_argument("--attention-settings", type=int, nargs="*", default=[1], choices=[1, 2, 3, 4],
                    help="settings of the MoT comparison (default 1; about 7 CPU-minutes a setting)")
    pr.add_argument("--n", type=int, default=16000, help="training and test samples per setting (default 16000)")
    pr.add_argument("--threads", type=int, default=0, help="torch threads per process (default: torch's choice)")
    pr.add_argument("--jobs", type=int, default=1, help="worker processes, one setting each (default 1: in this "
                    "process); with --scheduler local or --cluster, the number of Dask workers")
    _executor_options(pr)
    pr.add_argument("--chunk", type=int, default=0,
                    help="seeds per job (default 0: all seeds of a model and setting in one job); a smaller "
                         "chunk spreads the work over more processes; each seed's data and noise are its own, "
                         "but float32 rounding depends on the batch, so numbers agree to rounding (an early "
                         "stop may turn on it); the manifest records the chunk")
    pr.add_argument("--out", default=None, metavar="FOLDER",
                    help="data folder to write the table set predecessor_table/ into (default: data/, replacing "
                         "the committed table; the command says what it replaced)")
    sw = sub.add_parser("sweep", help="compute the sweeps of the part 'Beyond the paper' (chapters 08, 09); "
                        "write data/fair_comparison/ and data/training_schedule/")
    sw.add_argument("table", choices=["fair", "schedule", "all", "regime"],
                    help="fair: the fair comparison (about 100 CPU-minutes); schedule: the training schedules "
                         "(about 20 CPU-minutes); all: both; regime: the claim rows that do not hold, again at "
                         "larger d, smaller sigma0 and more classes (data/regime_trends/; about 70 CPU-minutes)")
    sw.add_argument("--jobs", type=int, default=1, help="worker processes (default 1: in this process); with "
                    "--scheduler local or --cluster, the number of Dask workers")
    _executor_options(sw)
    sw.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    sw.add_argument("--out", default=None, metavar="FOLDER",
                    help="data folder to write the table sets into (<out>/fair_comparison/, "
                         "<out>/training_schedule/; default: data/, replacing the committed tables, and the command "
                         "says what it replaced; with --smoke: a fresh temporary folder)")
    sw.add_argument("--overwrite", action="store_true",
                    help="with --smoke, allow --out to be the committed data folder (its tables are replaced)")
    sw.add_argument("--tuning-only", action="store_true", help="fair only: run the tuning seeds and write "
                    "<out>/fair_comparison_tuning.csv (and .json; default folder _build/work), for the verdict seeds "
                    "to run elsewhere")
    sw.add_argument("--tuning", default=None, metavar="CSV", help="fair only: read the tuning rows written by "
                    "--tuning-only (same engine) and run the verdict seeds")
    sw.add_argument("--reuse", default=None, metavar="FOLDER", help="take the rows of every job that an earlier "
                    "table under FOLDER (e.g. data) holds whole, when its canaries are the current ones: for a widened "
                    "grid, only the new jobs run (the manifest records how many were reused)")
    sw.add_argument("--smoke", action="store_true", help="every job at a tiny size (2 seeds, 200 samples, 40 steps): "
                    "a check that the sweep runs, in about a minute; written to a fresh temporary folder (named in its output) "
                    "unless --out is given")
    for p in sub.choices.values():       # --verbose after the command too
        p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    import signal
    import threading
    old_term = None
    if threading.current_thread() is threading.main_thread():     # a termination signal stops like Ctrl-C: the
        def _terminate(signum, frame):                             # executor then ends its worker processes
            raise KeyboardInterrupt
        old_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(args)
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _main(args) -> int:
    try:
        if args.cmd == "list":
            for name, cls in sorted(book.load_chapters().items()):
                print(name + ": " + ", ".join(f"{f.name}={f.default!r}" for f in fields(cls)))
            return 0
        return {"run": cmd_run, "regime": cmd_regime, "levers": cmd_levers, "replicate": cmd_replicate,
                "agree": cmd_agree, "predecessor": cmd_predecessor, "sweep": cmd_sweep,
                "claims": cmd_claims}[args.cmd](args)
    except Exception as e:    # every error: one line on stderr, exit code 2; --verbose adds the traceback
        if args.verbose:
            traceback.print_exc()
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # Ctrl-C: one line too (tables are swapped in whole, so data/ is as it was)
        if args.verbose:
            traceback.print_exc()
        print("interrupted: nothing was written under data/ (finished jobs of a sweep are kept under _build/cache/; "
              "the same command resumes from them)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

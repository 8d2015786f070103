"""One seam between the sweeps and the machines that run them: a ``concurrent.futures`` executor, resumable.

``executor(...)`` gives, as a context manager, the executor every multi-job command (``sweep``, ``predecessor``,
``replicate``, ``run all``) hands its jobs to:

* in-process (the default, one job at a time, no server);
* ``jobs=N``: N local worker processes (``concurrent.futures.ProcessPoolExecutor``, spawned, so each one pins the
  book's numerics when it imports mot_lib);
* ``scheduler="local"``: a ``distributed.LocalCluster`` of ``jobs`` single-threaded worker processes;
* ``scheduler="tcp://HOST:PORT"``: a running Dask cluster (its workers need mot_lib installed, and the same
  torch);
* ``cluster="slurm"`` (or "pbs"): a cluster started through dask-jobqueue with ``jobs`` workers (an optional extra;
  without it the error names the package to install).

``run(fn, tasks, ...)`` maps ``fn`` over the tasks on that executor, resumably: each finished task's result is
written under a cache folder (``CACHE``, inside the git-ignored ``_build/``) named by the hash of the task's
content and of a fingerprint of the code (the engine's canary), written to a temporary file and renamed into
place, so an interrupted run leaves only whole results.  A rerun loads the finished ones, says how many it
skipped, and recomputes a task only when its content or the canary changed.  A task whose worker died (a killed
process) is retried, ``RETRIES`` times.  Results come back in the tasks' order, whatever order they finished in
and wherever they ran: every seed draws from its own random streams, so the numbers do not depend on the worker.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import sys
import tempfile
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..book.datafiles import REPO

#: where finished tasks' results are kept between runs (git-ignored; $MOT_CACHE moves it, e.g. to a cluster's shared disk)
CACHE = Path(os.environ["MOT_CACHE"]) if os.environ.get("MOT_CACHE") else REPO / "_build" / "cache"
#: how many times a task whose worker died is resubmitted
RETRIES = 2
#: the cluster managers of dask-jobqueue that ``--cluster`` accepts
CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}


class InProcess(Executor):
    """Runs each submitted call at once, in this process (no pool, no server): the default executor."""

    def submit(self, fn, /, *args, **kwargs):
        f = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as e:      # noqa: BLE001 - handed back through the future, as a pool would
            f.set_exception(e)
        return f


def _pinned_worker():
    """Runs in every local worker process before its first job: import mot_lib (which pins the numerics)."""
    import mot_lib  # noqa: F401


class LocalPool(Executor):
    """``jobs`` spawned worker processes (``ProcessPoolExecutor``); ``restart`` replaces a pool broken by a
    killed worker, so that ``run`` resubmits the unfinished jobs."""

    def __init__(self, jobs: int):
        self.jobs = jobs
        self.pool = self._new()

    def _new(self):
        import multiprocessing as mp
        return ProcessPoolExecutor(self.jobs, mp_context=mp.get_context("spawn"), initializer=_pinned_worker)

    def submit(self, fn, /, *args, **kwargs):
        return self.pool.submit(fn, *args, **kwargs)

    def restart(self):
        self.stop()
        self.pool = self._new()

    def stop(self):
        """Cancel the queued jobs and end the worker processes now, running jobs included (a stopped or failed
        run must not leave workers computing for nobody: their finished jobs are already in the cache)."""
        procs = list((getattr(self.pool, "_processes", None) or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self.pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.shutdown(wait=True)
        else:                       # Ctrl-C, a termination signal or an error: the workers stop with the run
            self.stop()
        return False


def check_scheduler(scheduler: str | None, cluster: str | None, jobs: int) -> None:
    """A ValueError naming the option when the executor options cannot work together (before any training)."""
    if jobs < 1:
        raise ValueError(f"--jobs {jobs}: give 1 or more")
    if scheduler and cluster:
        raise ValueError("--scheduler and --cluster each choose where the jobs run: give one of them")
    if scheduler and scheduler != "local" and "://" not in scheduler:
        raise ValueError(f"--scheduler {scheduler!r}: give 'local' (a LocalCluster on this machine) or a Dask "
                         f"scheduler's address, e.g. tcp://10.0.0.5:8786")
    if cluster and cluster not in CLUSTERS:
        raise ValueError(f"--cluster {cluster!r} is not allowed; choose one of {sorted(CLUSTERS)}")


def _dask_client(scheduler: str | None, cluster: str | None, jobs: int, stack: contextlib.ExitStack):
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ValueError("--scheduler needs the package 'distributed' (pip install distributed)") from None
    if cluster:
        try:
            import dask_jobqueue
        except ImportError:
            raise ValueError(f"--cluster {cluster} needs the package 'dask-jobqueue' (pip install dask-jobqueue), "
                             f"an optional extra of mot_lib") from None
        manager = stack.enter_context(getattr(dask_jobqueue, CLUSTERS[cluster])(cores=1, processes=1, memory="4GB"))
        manager.scale(jobs=jobs)
        return stack.enter_context(Client(manager))
    if scheduler == "local":
        local = stack.enter_context(LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                                 dashboard_address=None))
        return stack.enter_context(Client(local))
    return stack.enter_context(Client(scheduler))


@contextlib.contextmanager
def executor(scheduler: str | None = None, cluster: str | None = None, jobs: int = 1):
    """The executor the jobs run on (module docstring); closed (and its cluster stopped) on exit."""
    check_scheduler(scheduler, cluster, jobs)
    with contextlib.ExitStack() as stack:
        if scheduler or cluster:
            client = _dask_client(scheduler, cluster, jobs, stack)
            yield client.get_executor(retries=RETRIES, pure=False)
        elif jobs > 1:
            yield stack.enter_context(LocalPool(jobs))
        else:
            yield InProcess()


def chapter_jobs() -> int:
    """Worker processes for a chapter's independent runs (``executor(jobs=chapter_jobs())``): ``MOT_CHAPTER_JOBS``,
    else the cores, at most 2 (a chapter has a few groups of runs, and ``make book`` runs two chapters at a time).
    Each run is one thread in its own process with the pinned numerics, so the numbers do not depend on it
    (1: every run in the calling process, one after the other)."""
    raw = os.environ.get("MOT_CHAPTER_JOBS", "").strip()
    if not raw:
        return max(1, min(2, os.cpu_count() or 1))
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"MOT_CHAPTER_JOBS={raw!r} must be a whole number >= 1 (unset: up to 2 worker processes)")
    return int(raw)


def chapter_executor(jobs: int | None = None):
    """``executor`` for a chapter's independent runs: ``jobs`` worker processes, ``chapter_jobs()`` when None."""
    return executor(jobs=chapter_jobs() if jobs is None else jobs)


def numbers_only(fingerprint: dict) -> dict:
    """The part of a table's fingerprint that names cached results: its canaries (the engine's and the rules'
    numbers), not the hash of its modules' source, so that editing a comment or widening a grid keeps the finished
    jobs (the job itself, its config and seeds, is the other part of the key)."""
    return {k: v for k, v in fingerprint.items() if k.startswith("canary")}


def task_key(task, fingerprint) -> str:
    """The cache name of one task: sha256 of its content and of the code's fingerprint (e.g. the canary)."""
    blob = json.dumps({"task": task, "fingerprint": fingerprint}, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _save(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path):
    try:
        with open(path, "rb") as f:
            return True, pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
        return False, None


def _bar(total: int, desc: str):
    if os.environ.get("MOT_PROGRESS", "1") == "0" or total <= 1:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="job", mininterval=1.0, leave=False)


def run(fn, tasks: list, ex: Executor, *, cache: Path | None = None, fingerprint=None, desc: str = "jobs",
        order=None, describe=None, key=None) -> list:
    """``[fn(t) for t in tasks]``, computed on ``ex``; with ``cache``, resumable (module docstring).

    ``order``: the indices of the tasks in the order to submit them (heaviest first); ``describe(t)``: a task in
    words, for the log line each finished task prints; ``key(t)``: the part of a task that names its result in
    the cache (default: the whole task; leave out what changes from run to run, such as a temporary folder).  A local pool broken by a killed worker is restarted and
    the unfinished tasks resubmitted (``RETRIES`` times); a Dask executor retries them itself."""
    n = len(tasks)
    results, done = [None] * n, [False] * n
    paths = ([Path(cache) / f"{task_key(key(t) if key else t, fingerprint)}.pkl" for t in tasks] if cache is not None
             else [None] * n)
    for i, p in enumerate(paths):
        if p is not None and p.exists():
            done[i], results[i] = _load(p)
    skipped = sum(done)
    if cache is not None:
        print(f"{desc}: {skipped} of {n} jobs already computed (in {_rel(cache)}), skipped; {n - skipped} to run",
              flush=True)
    todo = [i for i in (order if order is not None else range(n)) if not done[i]]
    bar = _bar(len(todo), desc)
    tries = 0
    t0 = time.time()
    try:
        while todo:
            def finish(i, value):
                results[i], done[i] = value, True
                if paths[i] is not None:
                    _save(paths[i], value)
                if bar is not None:
                    bar.update(1)
                elif n > 1:
                    what = describe(tasks[i]) if describe else f"job {i + 1}"
                    print(f"{desc}: {what} done ({sum(done)} of {n}, {time.time() - t0:.0f} s)", flush=True)
            try:
                if isinstance(ex, InProcess):     # one job at a time, each kept as soon as it is finished
                    for i in todo:
                        finish(i, fn(tasks[i]))
                else:
                    futures = {ex.submit(fn, tasks[i]): i for i in todo}
                    for f in as_completed(futures):
                        finish(futures[f], f.result())
                todo = []
            except BrokenProcessPool:
                tries += 1
                if tries > RETRIES or not hasattr(ex, "restart"):
                    raise
                todo = [i for i in todo if not done[i]]
                print(f"{desc}: a worker process died; resubmitting the {len(todo)} unfinished jobs "
                      f"(try {tries} of {RETRIES})", file=sys.stderr, flush=True)
                ex.restart()
    finally:
        if bar is not None:
            bar.close()
    return results


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(REPO))
    except ValueError:
        return str(p)

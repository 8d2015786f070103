"""Execute the book's chapters on every core before `jupyter-book build`, into the build's own execution cache.

Jupyter Book executes the chapters one after the other, each on one thread (the pinned numerics), so a cold
`make book` on a 2-core laptop used half of it.  This script executes the chapters that the execution cache
(``_build/.jupyter_cache``, jupyter-cache) does not hold yet, ``MOT_BUILD_JOBS`` at a time (default: the number of
cores), each exactly as myst-nb would (``single_nb_execution`` in the chapter's folder, with the build's timeout),
and stores each result in the cache under the same key myst-nb looks up (the hash of the notebook's code cells and
kernelspec).  `jupyter-book build` then finds every chapter cached.  The pages that read the chapters' verdicts
(the scorecard and the first page) are left to the build, which reads them after the chapters.  Each chapter's
numbers do not depend on which process ran it (one thread each, seeds drawn from their own streams), so the book is
the one a sequential build gives.  A chapter that raises stops the script with its name and the error.
"""
from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import nbformat
import yaml

REPO = Path(__file__).resolve().parent.parent
READERS = ("99_scorecard", "intro")      # mot_lib.book.READERS: they read the verdicts, so the build runs them last


def chapters() -> list[Path]:
    """The executed chapters of the table of contents, in reading order, without the reader pages."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [REPO / f"{f}.ipynb" for f in files
            if f.startswith("notebooks/") and Path(f).name not in READERS and (REPO / f"{f}.ipynb").exists()]


def _execute(path: str, timeout: int):
    from jupyter_cache.executors.utils import single_nb_execution
    nb = nbformat.read(path, as_version=4)
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout, allow_errors=False,
                                 meta_override=True)
    return path, nb, result.time, (None if result.err is None else f"{type(result.err).__name__}: {result.err}")


def main() -> int:
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    cfg = yaml.safe_load((REPO / "_config.yml").read_text()).get("execute", {})
    if cfg.get("execute_notebooks") != "cache":
        return 0
    timeout = int(cfg.get("timeout", 300))
    cache = get_cache(str(REPO / "_build" / ".jupyter_cache"))
    todo = []
    for p in chapters():
        try:
            cache.match_cache_notebook(nbformat.read(p, as_version=4))
        except KeyError:
            todo.append(p)
    if not todo:
        return 0
    jobs = int(os.environ.get("MOT_BUILD_JOBS") or os.cpu_count() or 1)
    # chapters running side by side share the cores: each chapter's own worker processes (MOT_CHAPTER_JOBS) get the
    # cores left per chapter (a cold book on 2 cores: 353 s with 2 workers per chapter, 297 s with none)
    os.environ.setdefault("MOT_CHAPTER_JOBS", str(max(1, (os.cpu_count() or 1) // max(1, jobs))))
    print(f"prebuild: executing {len(todo)} chapters, {jobs} at a time, each on {os.environ['MOT_CHAPTER_JOBS']} "
          f"process(es) (MOT_CHAPTER_JOBS)", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_execute, str(p), timeout) for p in todo]
        for fut in as_completed(futures):
            path, nb, seconds, err = fut.result()
            name = Path(path).stem
            if err is not None:
                for f in futures:
                    f.cancel()
                print(f"prebuild: chapter {name} raised: {err}", file=sys.stderr)
                return 1
            cache.cache_notebook_bundle(CacheBundleIn(nb, path, data={"execution_seconds": seconds}),
                                        check_validity=False, overwrite=True)
            print(f"prebuild: {name} executed in {seconds:.1f} s", flush=True)
    print(f"prebuild: {len(todo)} chapters in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

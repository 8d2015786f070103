"""Keep `make book`'s execution cache honest.

jupyter-cache keys a notebook on its code cells only, so a change in mot_lib
or in a committed table would leave stale outputs.  Before every build this
script hashes mot_lib/**/*.py, requirements.txt and every file under data/; when
the hash differs from the last build's (or a chapter's verdict file is
missing), it deletes the execution cache and Sphinx's doctrees, so every
chapter is re-read and re-executed.  It also marks the
scorecard as changed so that Sphinx re-reads it (it is executed on every read,
after the chapters, and gathers their fresh verdicts).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "_build"
STAMP = BUILD / ".mot_lib_hash"


def data_hash() -> str:
    """sha256 of every file under data/ (the committed tables the chapters read), with their paths."""
    h = hashlib.sha256()
    for f in sorted(p for p in (REPO / "data").rglob("*") if p.is_file()):
        h.update(f.relative_to(REPO).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def main() -> int:
    sys.path.insert(0, str(REPO))
    from mot_lib.book import library_hash, verdict_chapters  # noqa: E402
    now = f"{library_hash()} {data_hash()}"
    old = STAMP.read_text().strip() if STAMP.exists() else None
    verdicts = BUILD / "out" / "verdicts"
    claims = verdict_chapters()   # the paper's claims and the part "Beyond the paper"
    missing = [n for n in claims if not (verdicts / f"{n}.json").exists()]
    if now != old or missing:
        why = "mot_lib or data/ changed" if old and now != old else ("first build" if not old else f"missing verdicts {missing}")
        print(f"cache_guard: {why}: clearing the execution cache so every chapter re-executes")
        for p in (BUILD / ".jupyter_cache", BUILD / ".doctrees", BUILD / "html", verdicts):
            shutil.rmtree(p, ignore_errors=True)
    BUILD.mkdir(exist_ok=True)
    STAMP.write_text(now + "\n")
    for page in ("99_scorecard", "intro"):   # the pages that read the verdicts: re-read, hence re-executed, every build
        os.utime(REPO / "notebooks" / f"{page}.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())

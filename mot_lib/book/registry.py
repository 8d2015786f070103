"""The chapter registry: each chapter's validated parameters, the output folder, the chapters' order and titles.

A chapter's parameters are a frozen dataclass registered here under the
notebook's name; the notebook's ``parameters`` cell holds the same names, and
the cell right after it calls ``chapter_params(name, globals(), before)`` so
that an unknown name, a wrong type or an out-of-range value fails there, before
any training.  The CLI (``python -m mot_lib run``) validates the same way before
it starts papermill.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

from ..engine.config import _check, _Validated, check_seeds

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
CHAPTERS: dict[str, type] = {}
# chapter notebook -> the mot_lib module that defines (and registers) its parameters; imported on demand
CHAPTER_MODULES = {
    "01_setting": "mot_lib.claims.setting",
    "02_proposition1": "mot_lib.claims.specialization",
    "03_proposition2": "mot_lib.claims.attention",
    "04_lemma1": "mot_lib.claims.floor",
    "05_theorem1": "mot_lib.claims.convergence",
    "06_mechanism": "mot_lib.claims.mechanism",
    "07_real_data": "mot_lib.experiments.realdata.training",
    "08_fair_comparison": "mot_lib.claims.fair_chapter",
    "09_training_schedule": "mot_lib.claims.schedule_chapter",
    "10_predecessor": "mot_lib.claims.predecessor_chapter",
    "99_scorecard": "mot_lib.book.scorecard",
    "intro": "mot_lib.book.scorecard",     # the first page: what the book found (it reads the verdicts, so runs last)
}
#: The pages that read the chapters' verdicts and write none (they run after every verdict chapter).
READERS = ("99_scorecard", "intro")
IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def register(name: str):
    """Class decorator: the parameters of notebook ``notebooks/<name>.ipynb``."""
    def deco(cls):
        CHAPTERS[name] = cls
        cls.chapter = name
        return cls
    return deco


#: quick=True is a smoke run: besides each chapter's shorter schedule, it keeps only this many seeds.
QUICK_SEEDS = 3


@dataclass(frozen=True)
class ChapterParams(_Validated):
    """Knobs every chapter has: the seeds (a batch dimension), ``quick`` (a smoke run: each chapter's
    shorter schedule on the first ``QUICK_SEEDS`` seeds) and ``out_dir``."""
    seeds: tuple = (0, 1, 2, 3, 4)
    quick: bool = False
    out_dir: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "seeds", tuple(check_seeds(self.seeds)))
        _check("quick", self.quick, kind=bool)
        if self.quick:
            object.__setattr__(self, "seeds", self.seeds[:QUICK_SEEDS])
        if self.out_dir is not None and not isinstance(self.out_dir, (str, os.PathLike)):
            raise ValueError(f"out_dir={self.out_dir!r} must be a folder path or None")


def load_chapters() -> dict[str, type]:
    """Import every chapter's module so that all parameter classes are registered."""
    import importlib
    for mod in CHAPTER_MODULES.values():
        importlib.import_module(mod)
    return CHAPTERS


def params_for(name: str, **values) -> ChapterParams:
    """Validated parameters of chapter ``name`` (unknown names raise, naming them)."""
    if name not in CHAPTERS and name in CHAPTER_MODULES:
        import importlib
        importlib.import_module(CHAPTER_MODULES[name])
    if name not in CHAPTERS:
        raise ValueError(f"unknown chapter {name!r}; chapters: {list(CHAPTER_MODULES)}")
    cls = CHAPTERS[name]
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for chapter {name}; known: {known}")
    if isinstance(values.get("seeds"), int) and not isinstance(values.get("seeds"), bool):
        values["seeds"] = [values["seeds"]]
    return cls(**values)


#: The parameters each chapter validated in this process (``chapter_params``, the call in a chapter's notebook):
#: ``write_verdicts`` reads from them whether the chapter is a quick run, so the chapters' cells pass nothing more.
RUNNING: dict[str, ChapterParams] = {}


def chapter_params(name: str, namespace: dict, before: set) -> ChapterParams:
    """Collect the names the parameters cell (and papermill's injected cell) defined, and validate them."""
    new = {k: v for k, v in namespace.items()
           if k not in before and not k.startswith("_") and k not in IPYTHON_NAMES and not callable(v)
           and type(v).__name__ != "module"}
    RUNNING[name] = params_for(name, **new)
    return RUNNING[name]


def out_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder a chapter writes to: the given one, $MOT_OUT_DIR, or <repo>/_build/out."""
    p = Path(path) if path is not None else Path(os.environ.get("MOT_OUT_DIR", REPO / "_build" / "out"))
    if p.exists() and not p.is_dir():
        raise ValueError(f"out_dir={str(p)!r} is a file, not a folder; give a folder")
    p.mkdir(parents=True, exist_ok=True)
    return p


def writable_folder(path: str | os.PathLike, label: str = "out_dir") -> Path:
    """``path`` as a folder that exists (created if missing) and takes new files, checked by writing one; else a
    one-line ValueError naming ``label`` (the option or parameter the path came from) and the path."""
    import tempfile
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{label} {p} is a file, not a folder; give a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=p).close()
    except OSError as e:
        raise ValueError(f"{label} {p}: cannot write there ({e.strerror or e}); give a writable folder") from None
    return p

#: Chapters of the part "Beyond the paper": measured answers to questions neither paper asks (a peer's
#: published results reproduced, what the reviewers left open), not claims of the paper.  They write verdicts,
#: which the scorecard lists in a section of their own; they are not rerun by ``python -m mot_lib replicate``,
#: not counted by ``agree`` and not in the scorecard's summary of the paper's claims.  A new chapter of that part
#: joins by name.
BEYOND = ("08_fair_comparison", "09_training_schedule", "10_predecessor")


def verdict_chapters() -> list[str]:
    """Every chapter that writes verdicts (the paper's claims and the part "Beyond the paper"), in reading order."""
    return [n for n in CHAPTER_MODULES if n != "01_setting" and n not in READERS]


def claim_chapters() -> list[str]:
    """The chapters that test the paper's claims (they write verdicts), in reading order; not ``BEYOND``."""
    return [n for n in verdict_chapters() if n not in BEYOND]


def beyond_chapters() -> list[str]:
    """The chapters of the part "Beyond the paper" (``BEYOND``), in reading order."""
    return [n for n in verdict_chapters() if n in BEYOND]


def chapter_title(name: str) -> str:
    """The first heading of notebooks/<name>.ipynb (the title the book shows for the chapter)."""
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return name


def verdict_label(name: str) -> str:
    """The label of chapter ``name``'s verdict section (the scorecard links to it)."""
    return f"verdict-{name}"

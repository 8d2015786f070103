"""What every chapter shares: validated parameters, the output folder, verdict files.

A chapter's parameters are a frozen dataclass registered here under the
notebook's name; the notebook's ``parameters`` cell holds the same names, and
the cell right after it calls ``chapter_params(name, globals(), before)`` so
that an unknown name, a wrong type or an out-of-range value fails there, before
any training.  The CLI (``python -m mot_lib run``) validates the same way before
it starts papermill.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from .config import _check, _Validated, check_seeds

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
#: Verdicts of the claim chapters rerun on seeds nobody tuned on (``python -m mot_lib replicate``).
REPLICATION = REPO / "data" / "replication"
CHAPTERS: dict[str, type] = {}
# chapter notebook -> the mot_lib module that defines (and registers) its parameters; imported on demand
CHAPTER_MODULES = {
    "01_setting": "mot_lib.experiments",
    "02_proposition1": "mot_lib.specialization",
    "03_proposition2": "mot_lib.attention",
    "04_lemma1": "mot_lib.floor",
    "05_theorem1": "mot_lib.convergence",
    "06_mechanism": "mot_lib.mechanism",
    "07_real_data": "mot_lib.realdata",
    "99_scorecard": "mot_lib.book",
}
#: Every verdict row has these keys; ``rates.population_row`` adds the optional ones (the population
#: test, the number of seeds, and for an inconclusive row which way it leans and what would settle it).
VERDICT_KEYS = {"claim", "bound", "measured", "interval", "verdict"}
VERDICT_EXTRA = {"test", "seeds", "note"}
IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def register(name: str):
    """Class decorator: the parameters of notebook ``notebooks/<name>.ipynb``."""
    def deco(cls):
        CHAPTERS[name] = cls
        cls.chapter = name
        return cls
    return deco


@dataclass(frozen=True)
class ChapterParams(_Validated):
    """Knobs every chapter has: the seeds (a batch dimension), ``quick`` and ``out_dir``."""
    seeds: tuple = (0, 1, 2, 3, 4)
    quick: bool = False
    out_dir: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "seeds", tuple(check_seeds(self.seeds)))
        _check("quick", self.quick, kind=bool)
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
        raise ValueError(f"unknown chapter {name!r}; chapters: {sorted(CHAPTERS)}")
    cls = CHAPTERS[name]
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for chapter {name}; known: {known}")
    if isinstance(values.get("seeds"), int) and not isinstance(values.get("seeds"), bool):
        values["seeds"] = [values["seeds"]]
    return cls(**values)


def chapter_params(name: str, namespace: dict, before: set) -> ChapterParams:
    """Collect the names the parameters cell (and papermill's injected cell) defined, and validate them."""
    new = {k: v for k, v in namespace.items()
           if k not in before and not k.startswith("_") and k not in IPYTHON_NAMES and not callable(v)
           and type(v).__name__ != "module"}
    return params_for(name, **new)


def out_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder a chapter writes to: the given one, $MOT_OUT_DIR, or <repo>/_build/out."""
    p = Path(path) if path is not None else Path(os.environ.get("MOT_OUT_DIR", REPO / "_build" / "out"))
    p.mkdir(parents=True, exist_ok=True)
    return p


def write_verdicts(rows: list[dict], chapter: str, path: str | os.PathLike | None = None) -> Path:
    """Write a chapter's verdict rows to <out_dir>/verdicts/<chapter>.json (the scorecard reads these)."""
    for r in rows:
        if not VERDICT_KEYS <= set(r) or not set(r) <= VERDICT_KEYS | VERDICT_EXTRA:
            raise ValueError(f"a verdict row must have the keys {sorted(VERDICT_KEYS)} and may have "
                             f"{sorted(VERDICT_EXTRA)}; got {sorted(r)}")
    d = out_dir(path) / "verdicts"
    d.mkdir(parents=True, exist_ok=True)
    f = d / f"{chapter}.json"
    f.write_text(json.dumps(rows, indent=2, allow_nan=True))
    return f


def read_verdicts(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """All verdict rows under <out_dir>/verdicts, one row per claim, with the chapter's name."""
    d = out_dir(path) / "verdicts"
    frames = []
    for f in sorted(d.glob("*.json")):
        try:
            rows = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"verdict file {f.name} is not valid JSON: {e}") from None
        frames.append(pd.DataFrame(rows).assign(chapter=f.stem))
    cols = ["chapter", "claim", "bound", "measured", "interval", "verdict", "test", "seeds", "note"]
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True).reindex(columns=cols)


def verdict_table(rows: list[dict]) -> pd.DataFrame:
    """A chapter's verdicts as a table for display (3 significant digits, interval as text)."""
    df = pd.DataFrame(rows)
    fmt = lambda x: f"{x:.3g}"  # noqa: E731
    df["measured"] = df["measured"].map(fmt)
    df["interval"] = df["interval"].map(lambda iv: f"[{fmt(iv[0])}, {fmt(iv[1])}]")
    cols = ["claim", "bound", "measured", "interval", "verdict"]
    if "test" in df:
        df["seeds"] = df["seeds"].map(lambda n: "" if pd.isna(n) else str(int(n)))
        df["note"] = df["note"].fillna("")
        cols += ["test", "seeds", "note"]
    return df[cols]


def library_hash() -> str:
    """sha256 of mot_lib/*.py and requirements.txt: what the chapters' numbers depend on besides
    their parameters (the build's cache guard and the replication's manifest use it)."""
    h = hashlib.sha256()
    for f in sorted((REPO / "mot_lib").rglob("*.py")) + [REPO / "requirements.txt"]:
        h.update(f.relative_to(REPO).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def claim_chapters() -> list[str]:
    """The chapters that write verdicts, in reading order."""
    return [n for n in CHAPTER_MODULES if n not in ("01_setting", "99_scorecard")]


def replication_seeds(name: str, seeds) -> list[int]:
    """The first k of ``seeds``, k = the number of seeds chapter ``name`` uses by default (so a
    replication costs what the chapter costs)."""
    k = len(params_for(name).seeds)
    seeds = check_seeds(seeds)
    if len(seeds) < k:
        raise ValueError(f"seeds={seeds!r} has {len(seeds)} seeds; chapter {name} needs {k}")
    return seeds[:k]


def save_replication(run_dir: str | os.PathLike, seeds: dict[str, list[int]],
                     dest: str | os.PathLike = REPLICATION) -> Path:
    """Copy the verdict files of a replication run (``run_dir``/verdicts) to ``dest``/verdicts and
    write ``dest``/manifest.json with the seeds of each chapter and the library hash."""
    dest = Path(dest)
    shutil.rmtree(dest / "verdicts", ignore_errors=True)
    (dest / "verdicts").mkdir(parents=True)
    for name in seeds:
        shutil.copy(Path(run_dir) / "verdicts" / f"{name}.json", dest / "verdicts" / f"{name}.json")
    (dest / "manifest.json").write_text(json.dumps({"seeds": seeds, "library_hash": library_hash()}, indent=2))
    return dest


def load_replication(path: str | os.PathLike = REPLICATION) -> tuple[pd.DataFrame, dict] | None:
    """(verdict rows, manifest) of the committed replication, or None if there is none.

    A malformed manifest or verdict file raises naming the file.
    """
    path = Path(path)
    mf = path / "manifest.json"
    if not mf.exists():
        return None
    try:
        manifest = json.loads(mf.read_text())
        if not isinstance(manifest.get("seeds"), dict) or not isinstance(manifest.get("library_hash"), str):
            raise ValueError("needs the keys 'seeds' (chapter -> list) and 'library_hash'")
    except (json.JSONDecodeError, ValueError, AttributeError) as e:
        raise ValueError(f"{mf}: not a replication manifest ({e}); rerun `python -m mot_lib replicate`") from None
    return read_verdicts(path), manifest


def compare_verdicts(table: pd.DataFrame, rep: pd.DataFrame) -> pd.DataFrame:
    """The book's verdict rows with the replication's verdict for the same (chapter, claim) beside them.

    Adds ``replication`` (the verdict on the replication's seeds; empty where it has no such row)
    and ``same`` (whether the two verdicts agree; False where the replication lacks the row).
    """
    r = rep[["chapter", "claim", "verdict"]].rename(columns={"verdict": "replication"})
    out = table.merge(r, on=["chapter", "claim"], how="left")
    out["same"] = out["verdict"] == out["replication"]
    out["replication"] = out["replication"].fillna("")
    return out


@register("99_scorecard")
@dataclass(frozen=True)
class ScorecardParams(ChapterParams):
    """The scorecard reads verdict files; it trains nothing."""

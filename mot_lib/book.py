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
    "08_fair_comparison": "mot_lib.fair_chapter",
    "09_training_schedule": "mot_lib.schedule_chapter",
    "10_predecessor": "mot_lib.predecessor_chapter",
    "99_scorecard": "mot_lib.book",
}
#: Every verdict row has these keys; ``rates.population_row`` adds the optional ones (the population
#: test, the number of seeds, and for an inconclusive row which way it leans and what would settle it).
VERDICT_KEYS = {"claim", "bound", "measured", "interval", "verdict"}
VERDICT_EXTRA = {"test", "seeds", "note", "digits",  # digits: significant digits shown (default 3)
                 "quick"}   # in the rows of a quick run (quick=True, a smoke run): its number of seeds; else absent
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


def write_verdicts(rows: list[dict], chapter: str, path: str | os.PathLike | None = None,
                   quick: bool | None = None) -> Path:
    """Write a chapter's verdict rows to <out_dir>/verdicts/<chapter>.json (the scorecard reads these).

    ``quick`` (None: whether the parameters the chapter validated in this process, ``RUNNING``, are a quick run,
    for a claim chapter: a chapter of ``BEYOND`` computes its verdicts from a committed table, which quick=True does
    not shrink) adds ``"quick": <number of seeds>`` (``true`` where the parameters are unknown) to every row, so that
    the scorecard does not read a smoke run as the chapter's verdicts; a full-size run's file has no such key."""
    for r in rows:
        if not VERDICT_KEYS <= set(r) or not set(r) <= VERDICT_KEYS | VERDICT_EXTRA:
            raise ValueError(f"a verdict row must have the keys {sorted(VERDICT_KEYS)} and may have "
                             f"{sorted(VERDICT_EXTRA)}; got {sorted(r)}")
    P = RUNNING.get(chapter)
    if quick is None:
        quick = P is not None and P.quick and chapter not in BEYOND
    if quick:
        rows = [{**r, "quick": len(P.seeds) if P is not None else True} for r in rows]
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
    cols = ["chapter", "claim", "bound", "measured", "interval", "verdict", "test", "seeds", "note", "digits", "quick"]
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


def library_hash(modules=None) -> str:
    """sha256 of mot_lib/*.py and requirements.txt: what the chapters' numbers depend on besides
    their parameters (the build's cache guard and the replication's manifest use it).  ``modules``
    (names like "data", "models") restricts it to those modules of mot_lib and requirements.txt: the
    hash of what one cached table was computed with (``predecessor_table.ENGINE_MODULES``)."""
    h = hashlib.sha256()
    files = sorted((REPO / "mot_lib").rglob("*.py")) if modules is None else \
        sorted(REPO / "mot_lib" / f"{m}.py" for m in modules)
    for f in files + [REPO / "requirements.txt"]:
        h.update(f.relative_to(REPO).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


#: The modules that compute the claim chapters' numbers (data, models, training, measurements, rules): the
#: replication's manifest records the hash of those that hold the rules and a canary of numbers through the
#: shared engine (``canary.fingerprint``), so a change elsewhere (the book's plumbing, the CLI, other model
#: families) or a change of the shared engine that moves no number does not mark the replication as stale.
CLAIM_ENGINE = ("config", "data", "models", "training", "metrics", "rates", "experiments", "specialization",
                "attention", "floor", "convergence", "mechanism")


def claim_fingerprint() -> dict:
    """The replication manifest's staleness keys for the code as it is now (``canary.fingerprint``)."""
    from .canary import claims_canary, fingerprint
    return fingerprint(CLAIM_ENGINE, claims_canary)


def replication_stale(manifest: dict) -> str | None:
    """Why the committed replication is stale now, or None when it is current: a verdict file that is missing,
    changed or malformed (``load_replication`` puts it in the manifest as ``problem``), else the hash of the
    claim chapters' rule modules or the canary (``canary.why_stale``)."""
    if manifest.get("problem"):
        return manifest["problem"]
    from .canary import claims_canary, why_stale
    return why_stale(manifest, CLAIM_ENGINE, claims_canary)


#: Chapters of the part "Beyond the paper": measured answers to questions neither paper asks (a peer's
#: published results reproduced, what the reviewers left open), not claims of the paper.  They write verdicts,
#: which the scorecard lists in a section of their own; they are not rerun by ``python -m mot_lib replicate``,
#: not counted by ``agree`` and not in the scorecard's summary of the paper's claims.  A new chapter of that part
#: joins by name.
BEYOND = ("08_fair_comparison", "09_training_schedule", "10_predecessor")


def verdict_chapters() -> list[str]:
    """Every chapter that writes verdicts (the paper's claims and the part "Beyond the paper"), in reading order."""
    return [n for n in CHAPTER_MODULES if n not in ("01_setting", "99_scorecard")]


def claim_chapters() -> list[str]:
    """The chapters that test the paper's claims (they write verdicts), in reading order; not ``BEYOND``."""
    return [n for n in verdict_chapters() if n not in BEYOND]


def beyond_chapters() -> list[str]:
    """The chapters of the part "Beyond the paper" (``BEYOND``), in reading order."""
    return [n for n in verdict_chapters() if n in BEYOND]


def replication_sets(n_sets: int = 2, draw: int = 1126, size: int | None = None) -> dict[str, dict[str, list[int]]]:
    """Seed sets for a replication: ``n_sets`` sets, each giving every claim chapter as many seeds as it
    uses by default (``size`` overrides that), drawn at random from [1000, 10**6) with the generator
    seeded by ``draw`` (so they are not the integers after the defaults), disjoint from every chapter's
    default seeds and from each other.  Returns {"set 1": {chapter: seeds}, ...}."""
    import numpy as np
    _check("n_sets", n_sets, kind=int, lo=1, hi=100)
    _check("draw", draw, kind=int, lo=0)
    if size is not None:
        _check("size", size, kind=int, lo=1, hi=10_000)
    load_chapters()
    chapters = claim_chapters()
    k = {n: size or len(params_for(n).seeds) for n in chapters}
    taken = {s for n in chapters for s in params_for(n).seeds}
    rng = np.random.default_rng(draw)
    pool = [int(x) for x in rng.permutation(np.arange(1000, 10**6))[: n_sets * max(k.values()) + len(taken)]
            if int(x) not in taken]
    sets = {}
    for i in range(n_sets):
        block = pool[i * max(k.values()):(i + 1) * max(k.values())]
        sets[f"set {i + 1}"] = {n: sorted(block[:k[n]]) for n in chapters}
    return sets


def _slug(label: str) -> str:
    return label.replace(" ", "_")


def save_replication(run_dirs: dict[str, str | os.PathLike], sets: dict[str, dict[str, list[int]]],
                     dest: str | os.PathLike = REPLICATION, add: bool = False) -> Path:
    """Write the replication ``dest``: each run's verdict files (``run_dirs[label]``/verdicts) as
    ``dest``/<label>/verdicts/<chapter>.json, and ``dest``/manifest.json with the seeds of every set and chapter,
    the fingerprint of the claim chapters' engine (``claim_fingerprint``) and the sha256 and rows of every
    verdict file.  ``add``: the committed sets (which must be intact) keep their other chapters' files.  The
    folder is written beside ``dest`` and swapped in at once (``datafiles.write_set``): a failure leaves the old
    replication as it was."""
    from . import datafiles
    dest = Path(dest)
    files = {}
    if add:   # add chapters to the committed sets: same sets, the other chapters' files kept
        loaded = load_replication(dest, strict=True)
        if loaded is None:
            raise ValueError(f"{dest}: no replication to add chapters to; run `python -m mot_lib replicate` first")
        old_sets = loaded[1]["sets"]
        if set(old_sets) != set(sets):
            raise ValueError(f"{dest}: its sets {sorted(old_sets)} are not {sorted(sets)}")
        files = {name: (dest / name).read_bytes() for name in loaded[1]["files"]}
        sets = {label: {**old_sets[label], **seeds} for label, seeds in sets.items()}
    for label, seeds in sets.items():
        for name in seeds:
            src = Path(run_dirs[label]) / "verdicts" / f"{name}.json"
            if not add or src.exists():
                files[f"{_slug(label)}/verdicts/{name}.json"] = src.read_bytes()
    return datafiles.write_set(dest, files, {"sets": sets, **claim_fingerprint()})


def _verdict_rows(path: Path, redo: str) -> list[dict]:
    """The verdict rows of one replication file, checked: a JSON list of rows with the keys of ``VERDICT_KEYS``
    (and possibly ``VERDICT_EXTRA``), a verdict of ``BADGES``, a number measured, an interval of two numbers."""
    from . import datafiles
    where = datafiles.rel(path)
    try:
        rows = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"verdict file {where} is not valid JSON ({e}); {redo}") from None
    if not isinstance(rows, list):
        raise ValueError(f"verdict file {where}: expected a list of verdict rows; {redo}")
    num = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)   # noqa: E731
    for i, r in enumerate(rows):
        bad = ("not an object" if not isinstance(r, dict) else
               f"keys {sorted(r)}, expected {sorted(VERDICT_KEYS)} and possibly {sorted(VERDICT_EXTRA)}"
               if not VERDICT_KEYS <= set(r) or not set(r) <= VERDICT_KEYS | VERDICT_EXTRA else
               f"verdict {r['verdict']!r} is not one of {list(BADGES)}" if r["verdict"] not in BADGES else
               "claim is not text" if not isinstance(r["claim"], str) else
               f"measured {r['measured']!r} is not a number" if not num(r["measured"]) else
               f"interval {r['interval']!r} is not two numbers"
               if not (isinstance(r["interval"], list) and len(r["interval"]) == 2 and all(map(num, r["interval"])))
               else None)
        if bad:
            raise ValueError(f"verdict file {where}: row {i + 1} is malformed ({bad}); {redo}")
    return rows


def load_replication(path: str | os.PathLike = REPLICATION, strict: bool = False
                     ) -> tuple[dict[str, pd.DataFrame], dict] | None:
    """({set label: verdict rows}, manifest) of the committed replication, or None if there is none.

    A malformed manifest raises naming the file.  Every verdict file of every set is checked against the
    manifest's sha256 and rows and for its schema (``_verdict_rows``): with ``strict``, a missing, changed or
    malformed one raises a ValueError naming it (``agree``); otherwise the replication comes back with no
    verdict rows and the reason in the manifest's ``problem``, which ``replication_stale`` reports first, so
    the scorecard shows the replication as not current and says why.
    """
    from . import datafiles
    path = Path(path)
    mf = path / "manifest.json"
    if not mf.exists():
        return None
    redo = "rerun `python -m mot_lib replicate`" + (f" --dest {path}" if path.resolve() != REPLICATION.resolve() else "")
    try:
        manifest = json.loads(mf.read_text())
        if not isinstance(manifest.get("sets"), dict) or not isinstance(manifest.get("library_hash"), str) \
                or not all(isinstance(v, dict) for v in manifest["sets"].values()):
            raise ValueError("needs the keys 'sets' (label -> chapter -> seeds) and 'library_hash'")
    except (json.JSONDecodeError, ValueError, AttributeError) as e:
        raise ValueError(f"{mf}: not a replication manifest ({e}); {redo}") from None
    redo += f" (or restore the committed one with `git checkout -- {datafiles.rel(path)}`)"
    try:
        reps = {}
        for label, chapters in manifest["sets"].items():
            frames = []
            for name in chapters:
                f = path / _slug(label) / "verdicts" / f"{name}.json"
                if not f.is_file():
                    raise datafiles.MissingFile(f"verdict file {datafiles.rel(f)} is missing ({label}, {name}, listed "
                                                f"in {datafiles.rel(mf)}); {redo}")
                frames.append(pd.DataFrame(_verdict_rows(f, redo)).assign(chapter=name))
            cols = ["chapter", "claim", "bound", "measured", "interval", "verdict", "test", "seeds", "note", "digits"]
            reps[label] = (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()).reindex(columns=cols)
        datafiles.check_files(path, manifest, redo, where=datafiles.rel(mf))
    except ValueError as e:
        if strict:
            raise
        return {}, {**manifest, "problem": str(e)}
    return reps, manifest


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


# ---------------------------------------------------------------------- what the reader sees
#: sphinx-design badge colour of each verdict.
BADGES = {"holds": "success", "does not hold": "danger", "inconclusive": "warning"}


def badge(verdict: str) -> str:
    """A verdict as a coloured badge (MyST markdown, sphinx-design's ``bdg`` roles)."""
    if verdict not in BADGES:
        raise ValueError(f"verdict={verdict!r} is not one of {list(BADGES)}")
    return f"{{bdg-{BADGES[verdict]}}}`{verdict}`"


def _cell(text) -> str:
    """Text for a markdown table cell: one line, no bare pipe (it would split the cell)."""
    s = "" if text is None or (isinstance(text, float) and pd.isna(text)) else str(text)
    return " ".join(s.split()).replace("|", r"\|")


def _measured(row) -> str:
    """'value [lo, hi]' at the row's known precision: 3 significant digits, or ``digits`` where the
    quantity is known to fewer across machines (a run that amplifies rounding)."""
    iv = row["interval"]
    k = int(row["digits"]) if "digits" in row and pd.notna(row.get("digits")) else 3
    fmt = lambda x: f"{0.0 if abs(x) < 1e-12 else x:.{k}g}"  # noqa: E731  (a rounding-level bound is 0)
    return f"{fmt(row['measured'])} [{fmt(iv[0])}, {fmt(iv[1])}]"


def _test_cell(r) -> str:
    """A verdict row's population test with its number of seeds, as a table cell."""
    test = _cell(r.get("test", ""))
    if "seeds" in r and pd.notna(r.get("seeds")):
        test += f" ({int(r['seeds'])} seeds)"
    return test


def verdict_markdown(rows) -> str:
    """A chapter's verdict rows as a MyST markdown table: claim, bound, measured value with its 95%
    interval, a verdict badge, the population test with its number of seeds, and for an inconclusive
    row which way it leans and what would settle it.  Math in claims and bounds ($...$) is typeset."""
    df = pd.DataFrame(list(rows))
    out = ["| claim | bound (accepted range) | measured [95% interval] | verdict | population test | note |",
           "|:--|:--|:--|:--|:--|:--|"]
    for _, r in df.iterrows():
        out.append(f"| {_cell(r['claim'])} | {_cell(r['bound'])} | {_measured(r)} | {badge(r['verdict'])} "
                   f"| {_test_cell(r)} | {_cell(r.get('note', ''))} |")
    return "\n".join(out) + "\n"


def show_verdicts(rows):
    """Display a chapter's verdict table (rendered as markdown by the book, see ``verdict_markdown``)."""
    from IPython.display import Markdown
    return Markdown(verdict_markdown(rows))


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


def same_everywhere(table: pd.DataFrame, replications: dict[str, pd.DataFrame]) -> pd.Series:
    """Per verdict row of ``table``: whether every replication gives the same verdict for it."""
    same = pd.Series(True, index=table.index)
    for rep in replications.values():
        same &= compare_verdicts(table, rep)["same"].to_numpy()
    return same


def agreement_report(table: pd.DataFrame, replications: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per chapter and overall: rows, rows with the same verdict on the default seeds and every seed set
    (``identical``, ``share``), and, per set, the rows whose verdict is the default one; ``per set`` is the
    share of (row, set) pairs that give the default verdict (the measure of a reader rerunning a chapter
    on one seed set of their own)."""
    same = same_everywhere(table, replications)
    df = table.assign(same=same.to_numpy())
    labels = list(replications)
    for label in labels:
        df[label] = compare_verdicts(table, replications[label])["same"].to_numpy()
    agg = {"rows": ("same", "size"), "identical": ("same", "sum"), **{label: (label, "sum") for label in labels}}
    rep = df.groupby("chapter", sort=False).agg(**agg)
    rep.loc["all"] = [len(df), int(df.same.sum())] + [int(df[label].sum()) for label in labels]
    rep["share"] = (rep.identical / rep.rows).round(3)
    if labels:
        rep["per set"] = (rep[labels].sum(axis=1) / (rep.rows * len(labels))).round(3)
    return rep


def scorecard_markdown(table: pd.DataFrame, replications: dict[str, pd.DataFrame] | None = None) -> str:
    """The scorecard of the paper's claims: a summary line, then per claim chapter a table of its claims with
    the bound, the measured value, a verdict badge, the verdict on each replication seed set, and a link to the
    chapter's verdict section.  ``replications`` maps a seed-set label to its verdict rows.  ``table`` holds
    the claim chapters' rows only; the part "Beyond the paper" has its own section (``beyond_markdown``)."""
    replications = replications or {}
    counts = table.verdict.value_counts()
    parts = [f"**{len(table)} claims: {counts.get('holds', 0)} hold, {counts.get('does not hold', 0)} do not "
             f"hold, {counts.get('inconclusive', 0)} inconclusive.**"]
    quick = _quick(table)
    full = table[~quick]            # a quick run's verdicts are not compared with the full-size replication
    if replications and len(full):
        same = same_everywhere(full, replications)
        pairs = sum(int(compare_verdicts(full, rep)["same"].sum()) for rep in replications.values())
        n_pairs = len(full) * len(replications)
        parts[0] += (f" The same verdict on every untuned seed set ({', '.join(replications)}): "
                     f"{int(same.sum())} of {len(full)} ({same.mean():.0%})")
        parts[0] += (f"; each set alone gives the default verdict on {pairs} of {n_pairs} (claim, set) pairs "
                     f"({pairs / n_pairs:.0%})." if n_pairs else ".")
    if quick.any():
        one = quick.sum() == 1
        parts[0] += (f" {int(quick.sum())} of them {'comes' if one else 'come'} from quick runs (fewer seeds, shorter "
                     f"runs)" + (f" and {'is' if one else 'are'} not compared with the replication." if replications
                                 else "."))
    head = "| claim | bound (accepted range) | measured [95% interval] | verdict |"
    rule = "|:--|:--|:--|:--|"
    for label in replications:
        head += f" {_cell(label)} |"
        rule += ":--|"
    for chapter, rows in table.groupby("chapter", sort=False):
        parts.append(_chapter_link(chapter, rows, "not compared with the replication" if replications else ""))
        lines = [head, rule]
        reps = {k: compare_verdicts(rows, v) for k, v in replications.items()}
        rows_quick = _quick(rows).to_numpy()
        for i, (_, r) in enumerate(rows.iterrows()):
            line = f"| {_cell(r['claim'])} | {_cell(r['bound'])} | {_measured(r)} | {badge(r['verdict'])} |"
            for rep in reps.values():
                v = rep["replication"].iloc[i]
                line += " not compared |" if rows_quick[i] else f" {badge(v) if v else 'not run'} |"
            lines.append(line)
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _quick(rows: pd.DataFrame) -> pd.Series:
    """Per verdict row: whether it comes from a quick run (a ``"quick"`` key in its verdict file)."""
    if "quick" not in rows:
        return pd.Series(False, index=rows.index)
    return pd.to_numeric(rows["quick"], errors="coerce").fillna(0) > 0     # a number of seeds, or true


def _chapter_link(chapter: str, rows: pd.DataFrame | None = None, quick_note: str = "") -> str:
    """A chapter's title with a link to its verdict section; for rows of a quick run, "quick run (N seeds)" and
    ``quick_note``."""
    link = f"**{_cell(chapter_title(chapter))}**: {{ref}}`the verdicts and their figures <{verdict_label(chapter)}>`"
    if rows is not None and _quick(rows).any():
        n = rows["quick"][_quick(rows)].iloc[0]
        seeds = "" if pd.api.types.is_bool(n) else f" ({int(n)} seeds)"
        note = "quick run" + seeds + (f": {quick_note}" if quick_note else "")
        link += f" · *{note}*"
    return link


def beyond_markdown(table: pd.DataFrame) -> str:
    """The scorecard's section "Beyond the paper: measured answers": a summary line of its own (these rows
    are not claims of the paper, so ``scorecard_markdown``'s line does not count them), then per chapter of
    ``BEYOND`` a table of its rows with the bound, the measured value, a verdict badge and the population
    test (which says what the rows were computed on), and a link to the chapter's verdict section."""
    counts = table.verdict.value_counts()
    parts = [f"**{len(table)} measured answers, not claims of the paper: {counts.get('holds', 0)} hold, "
             f"{counts.get('does not hold', 0)} do not hold, {counts.get('inconclusive', 0)} inconclusive.**"]
    for chapter, rows in table.groupby("chapter", sort=False):
        parts.append(_chapter_link(chapter))
        lines = ["| question | bound (accepted range) | measured [95% interval] | verdict | population test |",
                 "|:--|:--|:--|:--|:--|"]
        for _, r in rows.iterrows():
            lines.append(f"| {_cell(r['claim'])} | {_cell(r['bound'])} | {_measured(r)} | {badge(r['verdict'])} "
                         f"| {_test_cell(r)} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"

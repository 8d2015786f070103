"""Verdict files: each chapter's rows written to and read from <out_dir>/verdicts, and shown as a table."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from . import registry
from .registry import BEYOND, out_dir

#: Every verdict row has these keys; ``stats.population_row`` adds the optional ones (the population
#: test, the number of seeds, and for an inconclusive row which way it leans and what would settle it).
VERDICT_KEYS = {"claim", "bound", "measured", "interval", "verdict"}
VERDICT_EXTRA = {"test", "seeds", "note", "digits",  # digits: significant digits shown (default 3)
                 "quick",   # in the rows of a quick run (quick=True, a smoke run): its number of seeds; else absent
                 "id", "kind", "statement"}   # the row's declaration in the claim registry (``claim_registry``)

def write_verdicts(rows: list[dict], chapter: str, path: str | os.PathLike | None = None,
                   quick: bool | None = None) -> Path:
    """Write a chapter's verdict rows to <out_dir>/verdicts/<chapter>.json (the scorecard reads these).

    ``quick`` (None: whether the parameters the chapter validated in this process, ``RUNNING``, are a quick run,
    for a claim chapter: a chapter of ``BEYOND`` computes its verdicts from a committed table, which quick=True does
    not shrink) adds ``"quick": <number of seeds>`` (``true`` where the parameters are unknown) to every row, so that
    the scorecard does not read a smoke run as the chapter's verdicts; a full-size run's file has no such key."""
    from . import claim_registry
    stamped = []
    for r in rows:
        if not VERDICT_KEYS <= set(r) or not set(r) <= VERDICT_KEYS | VERDICT_EXTRA:
            raise ValueError(f"a verdict row must have the keys {sorted(VERDICT_KEYS)} and may have "
                             f"{sorted(VERDICT_EXTRA)}; got {sorted(r)}")
        d = claim_registry.check_row(r, chapter)       # a declared id of this chapter, with the declared test
        stamped.append({"id": d.id, "kind": d.kind, "statement": d.statement,
                        **{k: v for k, v in r.items() if k not in ("id", "kind", "statement")}})
    ids = [r["id"] for r in stamped]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"chapter {chapter}: verdict rows {twice} written twice")
    rows = stamped
    P = registry.RUNNING.get(chapter)
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
    cols = ["chapter", "id", "kind", "statement", "claim", "bound", "measured", "interval", "verdict", "test", "seeds",
            "note", "digits", "quick"]
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
    """A chapter's verdict rows as a MyST markdown table: claim, its kind in the claim registry, bound, measured
    value with its 95% interval, a verdict badge, the population test with its number of seeds, and for an
    inconclusive row which way it leans and what would settle it; under the table, why each row that is not a
    ``claim`` is of its kind (it is not counted for or against the paper).  Math ($...$) is typeset."""
    from . import claim_registry
    df = pd.DataFrame(list(rows))
    reg = claim_registry.rows()
    decl = [reg.get(i) if isinstance(i, str) else None for i in (df["id"] if "id" in df else [None] * len(df))]
    out = ["| claim | kind | bound (accepted range) | measured [95% interval] | verdict | population test | note |",
           "|:--|:--|:--|:--|:--|:--|:--|"]
    for (_, r), d in zip(df.iterrows(), decl):
        out.append(f"| {_cell(r['claim'])} | {d.kind if d else 'undeclared'} | {_cell(r['bound'])} | {_measured(r)} "
                   f"| {badge(r['verdict'])} | {_test_cell(r)} | {_cell(r.get('note', ''))} |")
    why = {}
    for (_, r), d in zip(df.iterrows(), decl):
        if d is not None and d.kind not in ("claim", "beyond"):
            why.setdefault((d.kind, d.why), []).append(_cell(r["claim"]))
    notes = [f"* *{kind}* ({'; '.join(claims)}): {text}." for (kind, text), claims in why.items()]
    if notes:
        out += ["", "Not counted for or against the paper (the claim registry, `mot_lib/book/claim_registry.py`):",
                ""] + notes
    return "\n".join(out) + "\n"


def show_verdicts(rows):
    """Display a chapter's verdict table (rendered as markdown by the book, see ``verdict_markdown``)."""
    from IPython.display import Markdown
    return Markdown(verdict_markdown(rows))

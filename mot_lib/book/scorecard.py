"""The scorecard (chapter 99): every chapter's verdicts in one page, with the replication's verdicts beside them."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .registry import ChapterParams, chapter_title, register, verdict_label
from .replication import compare_verdicts, same_everywhere
from .verdicts import _cell, _measured, _test_cell, badge

@register("99_scorecard")
@dataclass(frozen=True)
class ScorecardParams(ChapterParams):
    """The scorecard reads verdict files; it trains nothing."""


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

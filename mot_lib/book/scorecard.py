"""The scorecard (chapter 99): every chapter's verdicts in one page, with the replication's verdicts beside them."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .registry import ChapterParams, chapter_title, register, verdict_label
from .replication import _quick_mask as _quick  # per verdict row: whether it comes from a quick run
from .replication import compare_verdicts, same_everywhere
from .verdicts import BADGES, _cell, _measured, _test_cell, badge

@register("99_scorecard")
@dataclass(frozen=True)
class ScorecardParams(ChapterParams):
    """The scorecard reads verdict files; it trains nothing."""


@register("intro")
@dataclass(frozen=True)
class IntroParams(ChapterParams):
    """The first page reads verdict files (what the book found); it trains nothing."""


#: badge colour of a headline verdict (a statement with no claim row is "not tested")
HEADLINE_BADGES = {**BADGES, "not tested": "secondary"}
#: the scorecard's sections, by kind, in order (the beyond rows have their own section, ``beyond_markdown``)
SECTIONS = (("claim", "Claims: tests of the paper's statements"),
            ("proxy", "Proxies: the paper's experiments on a stand-in data set, counted apart"),
            ("instantiation", "Instantiations: properties of settings this book chose, not counted"),
            ("check", "Checks: true or false by construction, never counted"))


def headline_badge(verdict: str) -> str:
    """A headline verdict as a badge (``HEADLINE_BADGES``)."""
    if verdict not in HEADLINE_BADGES:
        raise ValueError(f"verdict={verdict!r} is not one of {list(HEADLINE_BADGES)}")
    return f"{{bdg-{HEADLINE_BADGES[verdict]}}}`{verdict}`"


def headlines_markdown(table: pd.DataFrame) -> str:
    """One line per statement of the paper (``claim_registry.headlines``): its badge, the computed sentence, and a
    link to its chapter's verdict section."""
    from .claim_registry import headlines
    lines = []
    for h in headlines(table):
        quick = table[table.chapter == h.chapter] if "chapter" in table else table.iloc[0:0]
        q = " *(quick run)*" if len(quick) and _quick(quick).any() else ""
        lines.append(f"* **{h.name}** {headline_badge(h.verdict)}{q} {_cell(h.sentence)} "
                     f"{{ref}}`The chapter's verdicts <{verdict_label(h.chapter)}>`" + _trend_phrase(h.trend))
    return "\n".join(lines) + "\n"


#: the label of the scorecard's section on the regime trends
TRENDS_LABEL = "regime-trends"


def _trend_phrase(trend: list) -> str:
    """A headline's regime trends in one phrase: how many of its row trends go each way (``trends.direction``)."""
    if not trend:
        return ""
    ways = {}
    for t in trend:
        w = ("without two points that have an estimate" if t["direction"].startswith("no trend (fewer")
             else t["direction"].split(" (")[0])
        ways[w] = ways.get(w, 0) + 1
    order = ["reaches the stated range", "toward the stated range", "no trend", "away from the stated range",
             "without two points that have an estimate"]
    said = ", ".join(f"{ways[w]} {w}" for w in order if w in ways)
    axes = "larger $d$, more classes" + (", smaller $\\sigma_0$" if any(t["axis"] == "sigma0" for t in trend) else "")
    return (f" Toward the theorem's regime ({axes}), of its {len(trend)} row trends: {said} "
            f"({{ref}}`the trends <{TRENDS_LABEL}>`).")


def _trend_table(regime: dict, statements=None) -> str:
    """The regime trends as a Markdown table: per statement (all, or ``statements``; one statement's table has no
    statement column), row and axis, the direction first (the narrow page scrolls wide tables sideways), then the
    value measured at each point and the verdicts there."""
    from . import trends
    from .claim_registry import STATEMENTS
    one = statements is not None and len(statements) == 1
    head = ([] if one else ["statement"]) + ["row", "along", "direction", "measured at each point", "verdicts"]
    lines = ["| " + " | ".join(head) + " |", "|" + ":--|" * len(head)]
    for st, ts in regime.items():
        if statements is not None and st not in statements:
            continue
        for t in ts:
            meas = " → ".join(f"{p}: " + ("n/a" if m is None else f"{m:.3g}") for p, m in zip(t["points"], t["measured"]))
            cells = ([] if one else [STATEMENTS[st][0]]) + [
                f"`{t['row']}`", _cell(trends.AXIS_TEXT[t["axis"]]), _cell(t["direction"]), meas,
                _cell(", ".join(t["verdicts"]))]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _trend_status() -> str:
    from . import trends
    return trends.status()


def trends_markdown(regime: dict | None = None) -> str:
    """The scorecard's section on the regime trends (``trends.summarize`` of the committed table, or ``regime``):
    per statement, row and axis, the measured value at each point, the verdicts and the direction; empty when the
    sweep has not run."""
    from . import trends
    regime = trends.committed() if regime is None else regime
    if not regime:
        return ""
    intro = (f"({TRENDS_LABEL})=\n## Toward the theorem's regime\n\nThe theory is asymptotic (large $d$, small "
             "$\\sigma_0$, $M=\\Omega(N\\log N)$); every chapter runs at $d=16$, $N=4$. Each claim row of a "
             "statement that does not hold is measured again by its chapter's own functions and rule at $d$ = 16, "
             "32, 64, 128, at $N$ = 2, 4, 8 classes ($d=32$, $M$ scaled as $N\\log N$) and, for Proposition 2, "
             "at init scales a decade lower, on 8 seeds per point (`python -m mot_lib sweep regime`, committed as "
             "`data/regime_trends/`). The direction compares the distance from the accepted range at the first "
             "and the last point with the intervals' half-width (`mot_lib.book.trends`). The table: "
             + _trend_status())
    return intro + "\n\n" + _trend_table(regime)


def statement_trends_markdown(statement: str) -> str:
    """One statement's regime trends (its chapter shows them under its verdicts), with the table's status; a
    sentence saying so when the committed table has none for it."""
    from . import trends
    from .claim_registry import STATEMENTS
    if statement not in STATEMENTS:
        raise ValueError(f"statement={statement!r} is not one of {list(STATEMENTS)}")
    regime = trends.committed()
    if statement not in regime:
        return "The regime sweep (`python -m mot_lib sweep regime`) has no rows for this statement.\n"
    return _trend_table(regime, {statement}) + "\n" + _trend_status() + "\n"


def fair_answer_markdown(table: pd.DataFrame) -> str:
    """The fair comparison's answer (chapter 08), per iteration and per FLOP, computed from its verdict rows: at
    which numbers of experts the MoT reaches the loss level first against the best single transformer (tuned
    step) and against the shared-attention MoE."""
    import re
    rows = table[table["id"].fillna("").str.startswith("fair.")] if "id" in table else table.iloc[0:0]
    if rows.empty:
        return ""
    parse = lambda i: re.match(r"fair\.M(\d+)\.(iterations|flops)\.(.+)$", i)  # noqa: E731
    got = {}
    for _, r in rows.iterrows():
        m = parse(r["id"])
        if m:
            got[(m.group(3), m.group(2))] = got.get((m.group(3), m.group(2)), []) + [(int(m.group(1)), r["verdict"])]

    def said(key):
        by = {}
        for lev, v in sorted(got.get(key, [])):
            by.setdefault(v, []).append(lev)
        return "; ".join(f"{v} at {_levels(levs)}" for v, levs in by.items()) or "not measured"
    eps = re.search(r"test loss ([0-9.e-]+)", rows.claim.iloc[0])
    lvl = f"test loss {eps.group(1)}" if eps else "the loss level"
    return (f"* **Fair comparison** (a question the paper does not ask, {{ref}}`chapter 08 <{verdict_label('08_fair_comparison')}>`): "
            f"does the MoT reach {lvl} on more than half of the seeds before the best single transformer "
            f"(its step tuned on other seeds, at most the MoT's total parameters)? Per iteration: "
            f"{said(('single', 'iterations'))}. Per FLOP: {said(('single', 'flops'))}. Before the shared-attention "
            f"MoE, per iteration: {said(('shared_attention', 'iterations'))}.\n")


def _levels(levs) -> str:
    levs = [str(x) for x in levs]
    return (", ".join(levs[:-1]) + " and " + levs[-1] if len(levs) > 1 else levs[0]) + " experts"


def _kinds(table: pd.DataFrame) -> pd.Series:
    return table["kind"].fillna("undeclared") if "kind" in table else pd.Series("undeclared", index=table.index)


def scorecard_markdown(table: pd.DataFrame, replications: dict[str, pd.DataFrame] | None = None,
                       beyond: pd.DataFrame | None = None) -> str:
    """The scorecard of the paper's claims: the six headline verdicts (``headlines_markdown``), a line counting
    the claim rows alone with their agreement on the replication's seed sets, then the rows grouped by kind
    (claims, proxies, instantiations, checks: ``SECTIONS``), per chapter a table with the bound, the measured
    value, a verdict badge, the verdict on each replication seed set and a link to the chapter's verdict section.
    ``replications`` maps a seed-set label to its verdict rows.  ``table`` holds the claim chapters' rows only; the
    part "Beyond the paper" has its own section (``beyond_markdown``); its rows (``beyond``), when given, add the
    fair comparison's answer under the headlines (``fair_answer_markdown``)."""
    replications = replications or {}
    kinds = _kinds(table)
    claims = table[kinds == "claim"]
    counts = claims.verdict.value_counts()
    parts = [headlines_markdown(table) + (fair_answer_markdown(beyond) if beyond is not None else "")]
    line = (f"**{len(claims)} claim rows: {counts.get('holds', 0)} hold, {counts.get('does not hold', 0)} do not "
            f"hold, {counts.get('inconclusive', 0)} inconclusive.** Not counted: "
            + ", ".join(f"{int((kinds == k).sum())} {k} rows" for k, _ in SECTIONS[1:]) + ".")
    quick = _quick(table)
    full = claims[~quick[kinds == "claim"]]     # a quick run's verdicts are not compared with the full-size replication
    if replications and len(full):
        same = same_everywhere(full, replications)
        per = [int(compare_verdicts(full, rep)["same"].sum()) for rep in replications.values()]
        line += (f" On the untuned seed sets ({', '.join(replications)}), the same verdict as the defaults on every "
                 f"set: {int(same.sum())} of {len(full)} claim rows ({same.mean():.0%}); each set alone: "
                 + ", ".join(f"{k} of {len(full)} ({k / len(full):.0%})" for k in per) + ".")
    if quick.any():
        one = quick.sum() == 1
        line += (f" {int(quick.sum())} {'row comes' if one else 'rows come'} from quick runs (fewer seeds, shorter "
                 f"runs)" + (" and " + ("is" if one else "are") + " not compared with the replication." if replications
                             else "."))
    parts.append(line)
    head = "| row | bound (accepted range) | measured [95% interval] | verdict |"
    rule = "|:--|:--|:--|:--|"
    for label in replications:
        head += f" {_cell(label)} |"
        rule += ":--|"
    sections = list(SECTIONS) + ([("undeclared", "Rows no registry declares (rerun their chapters)")]
                                 if (kinds == "undeclared").any() else [])
    for kind, title in sections:
        part = table[kinds == kind]
        if part.empty:
            continue
        parts.append(f"## {title}")
        for chapter, rows in part.groupby("chapter", sort=False):
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
    regime = trends_markdown()
    if regime:
        parts.append(regime.rstrip("\n"))
    return "\n\n".join(parts) + "\n"


def seed_dependent_markdown(table: pd.DataFrame, replications: dict[str, pd.DataFrame] | None) -> str:
    """The claim rows whose verdict on some replication seed set is not the defaults' one, each with its test and,
    on the default seeds and on every set, the measured value with its interval, the seeds it counts and the
    verdict: where a verdict depends on the seeds, and by how much.  Empty when there is none (or no replication);
    a quick run's rows are not compared."""
    if not replications:
        return ""
    kinds = _kinds(table)
    claims = table[(kinds == "claim").to_numpy() & ~_quick(table).to_numpy()]
    if claims.empty:
        return ""
    differ = ~same_everywhere(claims, replications).to_numpy()
    if not differ.any():
        return ""
    by_set = {label: rep.drop_duplicates("id").set_index("id") for label, rep in replications.items()}
    head = "| row | bound (accepted range) | test | defaults | " + " | ".join(_cell(k) for k in replications) + " |"
    lines = [head, "|:--|:--|:--|:--|" + ":--|" * len(replications)]
    for _, r in claims[differ].iterrows():
        cells = [f"{_measured(r)}, {int(r['seeds'])} seeds: {badge(r['verdict'])}"]
        for label, rep in by_set.items():
            if r["id"] not in rep.index:
                cells.append("not run")
                continue
            x = rep.loc[r["id"]]
            cells.append(f"{_measured(x)}, {int(x['seeds'])} seeds: {badge(x['verdict'])}")
        lines.append(f"| {_cell(r['claim'])} | {_cell(r['bound'])} | {_cell(r['test'])} | " + " | ".join(cells) + " |")
    n = int(differ.sum())
    return (f"{n} claim {'row gives' if n == 1 else 'rows give'} another verdict on some untuned seed set than on "
            "the defaults:\n\n" + "\n".join(lines) + "\n")


def history_markdown(manifest: dict | None, current_hash: str) -> str:
    """The replication's history (its manifest's ``history``): the agreement of rules frozen before their seeds
    were drawn (an entry whose registry hash is the current one), beside the earlier figures, whose rules were
    changed after their draws were seen."""
    if not manifest or not manifest.get("history"):
        return ""
    lines = ["| replication | rules | claim rows: same verdict on every set | each set alone | every row: same on "
             "every set | claim rows inconclusive on the defaults |", "|:--|:--|:--|:--|:--|:--|"]
    for h in manifest["history"]:
        frozen = h.get("registry_hash") == current_hash and h.get("frozen_before_draw")
        rules = ("frozen before the draw (registry " + h["registry_hash"][:8] + ")" if frozen else
                 "registry " + h["registry_hash"][:8] + ", changed since" if h.get("registry_hash") else
                 "before the registry; rules changed after this draw was seen")
        a = h.get("agreement") or {}
        c, every = a.get("claims") or {}, a.get("all rows") or {}
        frac = lambda k, n: f"{k} of {n} ({k / n:.0%})" if n else "—"  # noqa: E731
        claims = frac(c["identical"], c["rows"]) if c else "—"
        per = ", ".join(frac(k, c["rows"]) for k in c.get("per set", {}).values()) if c else "—"
        allr = frac(every["identical"], every["rows"]) if every else h.get("identical", "—")
        inc = str(c.get("inconclusive on the defaults", "—")) if c else "—"
        what = f"draw {h['draw']}" if isinstance(h.get("draw"), int) else str(h.get("draw", "?"))
        lines.append(f"| {_cell(what)}, {h.get('date', '?')} ({h.get('commit', '?')}) | {_cell(rules)} | {claims} | "
                     f"{_cell(per) if c else _cell(h.get('per set', '—'))} | {_cell(allr)} | {inc} |")
    return "\n".join(lines) + "\n"


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

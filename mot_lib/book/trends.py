"""The regime trends of the headlines (issue 18, point 7): the committed table data/regime_trends/, computed by
``python -m mot_lib sweep regime`` (``claims.regime``: the claim rows of the statements that do not hold, measured
again at larger d, at a decade lower sigma0, at more classes with M ~ N log N), read here and summarised per
headline: along each axis, the measured value of each row at each point, and whether it moves toward the row's
accepted range (``direction``).

The rule of the direction: along the axis (toward the theorem's regime: d up, sigma0 down, N up), take the first
and the last point that have an estimate (a finite value and interval: at least two seeds entered; at a large d
the chapters' horizons can be too short for the seeds to reach what a row reads, and such a point is named as
having none), and the distance of the measured value from the accepted range (0 inside it) at each; "reaches the
stated range" when the last one's verdict is "holds" and the first's is not; else "toward" when the distance
falls by more than the mean half-width of the two intervals, "away" when it grows by more, "no trend" otherwise.
The numbers are printed beside it, so a reader can judge the rule.

The files: rows.csv (one row per statement, axis, point and claim row: the measured value, its interval, the seeds
that entered, the verdict by the chapter's own rule, the accepted range, and a note: "none", or why a point's
measurement stopped) and manifest.json (sha256 and rows of the
file, the canary of the claim chapters' engine, the regime points and rows it holds, the command, time, machine).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import datafiles

NAME = "regime_trends"
ROWS = "rows.csv"
COMMAND = "python -m mot_lib sweep regime --jobs 2"
#: the axes, in words, and the direction of each toward the theorem's regime
AXIS_TEXT = {"d": "d", "N": "N (with M ~ N log N)", "sigma0": "sigma0"}
LABELS = ["statement", "axis", "d", "N", "sigma0_factor"]
KINDS = {"statement": "str", "axis": "str", "d": "int", "N": "int", "sigma0_factor": "num", "id": "str",
         "measured": "num", "lo": "num", "hi": "num", "seeds": "int", "verdict": "str", "accept_lo": "num",
         "accept_hi": "num", "quick": "bool", "note": "str"}
VERDICTS = ("holds", "does not hold", "inconclusive")


def modules() -> tuple:
    from .staleness import CLAIM_ENGINE
    return CLAIM_ENGINE + ("claims.regime",)


def fingerprint() -> dict:
    """The manifest's staleness keys: the claim chapters' canary (the same runs as the replication's), and the hash
    of the modules that hold the rules (for information)."""
    from .staleness import claims_canary, fingerprint as fp
    return fp(modules(), claims_canary)


def stale(meta: dict) -> str | None:
    """Why the table of manifest ``meta`` is stale now (its canary differs), or None."""
    from .staleness import claims_canary, table_stale
    return table_stale(meta, claims_canary)


def save(rows: pd.DataFrame, meta: dict, folder: Path = datafiles.DATA) -> Path:
    """Write <folder>/regime_trends (rows.csv and manifest.json, which lists the points and rows it holds), swapped
    in at once; returns the folder."""
    pts = rows[LABELS].drop_duplicates().to_dict("records")
    meta = {**meta, "regime_points": [{k: (float(v) if k == "sigma0_factor" else v if isinstance(v, str) else int(v))
                                       for k, v in p.items()} for p in pts],
            "row_ids": {st: sorted(g.id.unique()) for st, g in rows.groupby("statement")}}
    return datafiles.write_set(Path(folder) / NAME, {ROWS: rows[list(KINDS)].to_csv(index=False, float_format="%.8g")},
                               meta)


def load(folder: Path = datafiles.DATA) -> tuple[pd.DataFrame, dict]:
    """(rows, manifest) of the committed table; a missing, changed or malformed file raises a ValueError naming it
    and the command that recomputes it (``datafiles.MissingFile`` when there is no table)."""
    where = Path(folder) / NAME
    redo = datafiles.redo_text(COMMAND, where)
    meta = datafiles.read_manifest(where, redo)
    redo = datafiles.redo_text(meta.get("command") or COMMAND, where)
    p = where / ROWS
    rows = datafiles.read_csv(p, redo)
    pts = meta.get("regime_points")
    ids = meta.get("row_ids")
    if not isinstance(pts, list) or not pts or not isinstance(ids, dict):
        raise ValueError(f"{datafiles.rel(where / datafiles.MANIFEST)}: it lists no regime_points and row_ids; {redo}")
    expected = pd.DataFrame([{**q, "id": i} for q in pts for i in ids.get(q["statement"], [])])
    ranges = {"seeds": datafiles.Range(0), "lo": datafiles.Range(nan=True), "hi": datafiles.Range(nan=True)}
    datafiles.check_schema(rows, p, redo, KINDS, key=LABELS + ["id"], expected=expected,
                           source="the regime points and rows its manifest lists", ranges=ranges)
    bad = ~rows.verdict.isin(VERDICTS)
    if bad.any():
        i = bad.idxmax()
        raise ValueError(f"{datafiles.rel(p)}: line {i + 2} has the verdict {rows.verdict[i]!r}, not one of "
                         f"{list(VERDICTS)}; {redo}")
    datafiles.check_files(where, meta, redo)
    return rows, meta


def _distance(m: float, lo: float, hi: float) -> float:
    return max(lo - m, m - hi, 0.0) if np.isfinite(m) else math.nan


def _order(axis: str, g: pd.DataFrame) -> pd.DataFrame:
    """The points of one axis toward the theorem's regime (d up, N up, sigma0 down)."""
    if axis == "sigma0":
        return g.sort_values("sigma0_factor", ascending=False)
    return g.sort_values(axis)


def _value(axis: str, r) -> str:
    return f"x{r.sigma0_factor:g}" if axis == "sigma0" else f"{int(r[axis])}"


def _num(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.3g}"


def _has_estimate(r) -> bool:
    return bool(np.isfinite(r.measured) and np.isfinite(r.lo) and np.isfinite(r.hi))


def direction(first, last) -> str:
    """The module's rule, from the first and the last point's row that have an estimate (measured, lo, hi,
    verdict, accept_lo/hi)."""
    if not (_has_estimate(first) and _has_estimate(last)):
        return "no trend (fewer than two points have an estimate)"
    if last.verdict == "holds" and first.verdict != "holds":
        return "reaches the stated range"
    d0 = _distance(first.measured, first.accept_lo, first.accept_hi)
    d1 = _distance(last.measured, last.accept_lo, last.accept_hi)
    half = np.mean([(first.hi - first.lo) / 2, (last.hi - last.lo) / 2])
    if d1 < d0 - half:
        return "toward the stated range"
    if d1 > d0 + half:
        return "away from the stated range"
    return "no trend"


def _accepted(lo: float, hi: float) -> str:
    if np.isinf(lo) and np.isinf(hi):
        return "any"
    if np.isinf(hi):
        return f"above {lo:g}"
    if np.isinf(lo):
        return f"at most {hi:g}"
    return f"in [{lo:g}, {hi:g}]"


def summarize(rows: pd.DataFrame) -> dict[str, list[dict]]:
    """{statement: one trend per (axis, row id)}: the axis, the row, the points, the measured values with their
    intervals, the verdicts, the direction (``direction``) and the sentence."""
    out: dict[str, list[dict]] = {}
    for (st, axis, i), g in rows.groupby(["statement", "axis", "id"], sort=False):
        g = _order(axis, g)
        est = g[[_has_estimate(r) for r in g.itertuples()]]
        vals = [_value(axis, r) for _, r in g.iterrows()]
        if len(est) >= 2:
            way = direction(est.iloc[0], est.iloc[-1])
            if len(est) < len(g) and not way.startswith("no trend ("):
                way += " (no estimate at " + ", ".join(f"{AXIS_TEXT[axis].split(' ')[0]} = {v}" for v, r in
                                                      zip(vals, g.itertuples()) if not _has_estimate(r)) + ")"
        else:
            way = "no trend (fewer than two points have an estimate)"
        meas = " → ".join(_num(m) for m in g.measured)
        first = g.iloc[0]
        text = (f"{i}: {meas} as {AXIS_TEXT[axis]} goes {' → '.join(vals)} (accepted: "
                f"{_accepted(first.accept_lo, first.accept_hi)}; verdicts {', '.join(g.verdict)}): {way}")
        out.setdefault(st, []).append({
            "sweep": f"data/{NAME} ({COMMAND})", "axis": axis, "row": i, "points": vals,
            "measured": [None if not np.isfinite(m) else float(m) for m in g.measured],
            "interval": [[None if not np.isfinite(a) else float(a), None if not np.isfinite(b) else float(b)]
                         for a, b in zip(g.lo, g.hi)],
            "seeds": [int(s) for s in g.seeds], "verdicts": list(g.verdict), "direction": way, "text": text})
    return out


def lines(summary: dict[str, list[dict]]) -> list[str]:
    """The trends as lines of text, statement by statement."""
    return [f"[{st}] {t['text']}" for st, ts in summary.items() for t in ts]


def committed(folder: Path = datafiles.DATA) -> dict[str, list[dict]]:
    """The committed table's trends (``summarize``), or {} when there is no table; a changed or malformed one
    raises (``load``)."""
    try:
        rows, _ = load(folder)
    except datafiles.MissingFile:
        return {}
    return summarize(rows)


def status(folder: Path = datafiles.DATA) -> str:
    """What the committed table is and whether it is current."""
    rows, meta = load(folder)
    why = stale(meta)
    return (f"computed by: `{meta.get('command')}` on {meta.get('cpus')} CPU cores, torch {meta.get('torch')}, "
            f"{meta.get('seconds')} s, {len(meta['regime_points'])} regime points on seeds {meta.get('seeds')}; "
            + (f"STALE: {why}; rerun the command above" if why else
               "current: its file is the one it was written with and the claim chapters' canary runs give the "
               "numbers they gave then"))


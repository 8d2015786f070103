"""Toward the theorem's regime (mot_lib/claims/regime.py, mot_lib/book/trends.py): the regime points, the rule of a
trend's direction, the committed table data/regime_trends/ (current, whole, the points and rows of the current code),
and every headline that does not hold carrying its trends."""
import math
import shutil

import pandas as pd
import pytest

from mot_lib import book
from mot_lib.book import claim_registry as cr
from mot_lib.book import datafiles, trends
from mot_lib.claims import regime


def test_experts_scale_as_n_log_n():
    assert [regime.experts(16, n) for n in (2, 4, 8)] == [4, 16, 48]
    assert regime.experts(2, 2) == 2          # at least one expert per class


def test_points_cover_the_axes_and_measure_a_shared_point_once():
    pts = regime.points()
    for st, axes in regime.AXES.items():
        mine = [p for p in pts if p.statement == st]
        assert {p.axis for p in mine} == set(axes)
        assert sorted(p.d for p in mine if p.axis == "d") == list(regime.DS)
        if "N" in axes:
            assert sorted(p.N for p in mine if p.axis == "N") == list(regime.NS)
            assert {p.d for p in mine if p.axis == "N"} == {regime.N_AXIS_D}
    calls = []

    def fake(p):
        calls.append((p.d, p.N, p.sigma0_factor))
        return [{"id": i, "measured": 1.0, "interval": [0.5, 1.5], "seeds": 8, "verdict": "inconclusive"}
                for i in regime.ROWS[p.statement]]
    mp = pytest.MonkeyPatch()
    mp.setattr(regime, "MEASURE", {st: fake for st in regime.AXES})
    try:
        few = [p for p in pts if p.statement == "prop2"]
        rows = regime.run(few)
    finally:
        mp.undo()
    # prop2: d = 16, 32, 64, 128; sigma0 x1 (= d 16) and x0.1; N = 2, 4 (= d 32), 8 at d = 32: 7 measurements
    assert len(calls) == len(set(calls)) == 7
    assert len(rows) == len(few) * len(regime.ROWS["prop2"])
    assert set(rows.axis) == {"d", "sigma0", "N"}


def _row(measured, lo, hi, verdict, accept=(0.75, math.inf)):
    return pd.Series({"measured": measured, "lo": lo, "hi": hi, "verdict": verdict, "accept_lo": accept[0],
                      "accept_hi": accept[1]})


def test_the_direction_rule():
    far = _row(0.0, -0.1, 0.1, "does not hold")
    assert trends.direction(far, _row(0.5, 0.4, 0.6, "does not hold")) == "toward the stated range"
    assert trends.direction(far, _row(0.05, -0.05, 0.15, "does not hold")) == "no trend"
    assert trends.direction(_row(0.5, 0.4, 0.6, "does not hold"), far) == "away from the stated range"
    assert trends.direction(far, _row(0.9, 0.8, 1.0, "holds")) == "reaches the stated range"
    assert trends.direction(far, _row(math.nan, math.nan, math.nan, "inconclusive")).startswith("no trend")
    # an upper bound: the distance is measured from the top of the range
    up = (-math.inf, 0.25)
    assert trends.direction(_row(1.5, 1.2, 1.8, "does not hold", up),
                            _row(0.8, 0.6, 1.0, "does not hold", up)) == "toward the stated range"


def test_a_point_without_an_estimate_is_skipped_and_named():
    rows = pd.DataFrame([
        {"statement": "prop1", "axis": "d", "d": d, "N": 4, "sigma0_factor": 1.0, "id": "prop1.steps_sigma0_gd",
         "measured": m, "lo": m - 0.05, "hi": m + 0.05, "seeds": k, "verdict": v, "accept_lo": -math.inf,
         "accept_hi": 0.75, "quick": False, "note": "none"}
        for d, m, k, v in ((16, 0.88, 8, "does not hold"), (32, 1.1, 8, "does not hold"),
                           (128, math.nan, 0, "inconclusive"))])
    [t] = trends.summarize(rows)["prop1"]
    assert t["direction"] == "away from the stated range (no estimate at d = 128)"
    assert t["measured"][-1] is None and "0.88 → 1.1 → n/a" in t["text"]
    one = rows.assign(measured=[0.88, math.nan, math.nan])
    assert trends.summarize(one)["prop1"][0]["direction"].startswith("no trend (fewer than two")


def test_summarize_orders_each_axis_toward_the_regime():
    rows = pd.DataFrame([
        {"statement": "prop2", "axis": "sigma0", "d": 16, "N": 4, "sigma0_factor": f, "id": "prop2.other_scores",
         "measured": m, "lo": m - 0.01, "hi": m + 0.01, "seeds": 8, "verdict": "does not hold", "accept_lo": 0.75,
         "accept_hi": math.inf, "quick": False, "note": "none"} for f, m in ((0.1, 0.5), (1.0, 0.0))])
    [t] = trends.summarize(rows)["prop2"]
    assert t["points"] == ["x1", "x0.1"] and t["measured"] == [0.0, 0.5]
    assert t["direction"] == "toward the stated range" and "0 → 0.5" in t["text"]


@pytest.fixture(scope="module")
def committed():
    try:
        return trends.load()
    except datafiles.MissingFile:
        pytest.fail("data/regime_trends/ is missing: run `python -m mot_lib sweep regime --jobs 2`")


def test_the_committed_table_is_current_and_of_the_current_points(committed):
    rows, meta = committed
    assert trends.stale(meta) is None, trends.stale(meta)
    want = [{**p.label(), "axis": p.axis} for p in regime.points()]
    got = meta["regime_points"]
    key = lambda q: (q["statement"], q["axis"], q["d"], q["N"], float(q["sigma0_factor"]))  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, want))
    assert meta["row_ids"] == {st: sorted(ids) for st, ids in regime.ROWS.items()}
    assert meta["seeds"] == list(regime.SEEDS) and not rows.quick.any()
    # the rule: each row's verdict is its chapter's, from its interval and accepted range
    for r in rows.itertuples():
        if r.verdict == "holds":
            assert r.accept_lo <= r.lo and r.hi <= r.accept_hi, r
        elif r.verdict == "does not hold":
            assert r.hi < r.accept_lo or r.lo > r.accept_hi, r


def test_a_changed_table_is_refused(committed, tmp_path):
    shutil.copytree(datafiles.DATA / trends.NAME, tmp_path / trends.NAME)
    p = tmp_path / trends.NAME / trends.ROWS
    text = p.read_text().splitlines()
    p.write_text("\n".join(text[:-1]) + "\n")
    with pytest.raises(ValueError, match="rows.csv"):
        trends.load(tmp_path)
    with pytest.raises(datafiles.MissingFile):
        trends.load(tmp_path / "nowhere")
    assert trends.committed(tmp_path / "nowhere") == {}


@pytest.mark.verdicts
def test_every_headline_that_does_not_hold_carries_its_trend(committed):
    """The default run's headlines (the chapters' verdicts under _build/out, which nbval's run of the chapters
    writes): each that is not 'holds' (nor 'not tested') has a trend along every axis of its statement, on every
    row the sweep measures."""
    table = book.read_verdicts()
    if table.empty or set(book.claim_chapters()) - set(table.chapter):
        pytest.skip("the claim chapters' verdicts are not all under _build/out (run make book or the nbval tests)")
    for h in cr.headlines(table):
        if h.verdict in ("holds", "not tested"):
            continue
        assert h.statement in regime.AXES, f"{h.name} does not hold and has no regime sweep"
        assert {t["axis"] for t in h.trend} == set(regime.AXES[h.statement]), h.name
        assert {t["row"] for t in h.trend} == set(regime.ROWS[h.statement]), h.name


def test_a_chapter_trend_table_puts_the_direction_before_the_measurements():
    """A chapter's table (one statement) has no statement column and shows the direction before the values at each
    point: the page is narrow, and a wide table hid the direction off to the right behind a scroll bar."""
    text = book.statement_trends_markdown("theorem1")
    assert text.startswith("| row | along | direction | measured at each point | verdicts |")
    row = next(line for line in text.splitlines() if line.startswith("| `theorem1.mot_gd` | d |"))
    assert " 16: " in row and " → 32: " in row
    card = book.scorecard.trends_markdown()
    assert "| statement | row | along | direction | measured at each point | verdicts |" in card

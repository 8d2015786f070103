"""Ties are not wins: every verdict row whose claim is a strict comparison ("below", "fewer", "more than",
"above", "> 0") declares its accepted range open at the compared value (``rates.above``), so an interval
that reaches equality does not hold.  Each case builds the tie by hand in the chapter's own row function;
rows that state "at least"/"at most" keep their closed ranges."""
import numpy as np
import pandas as pd
import pytest

import mot_lib as mot
from mot_lib.claims import beyond
from mot_lib.claims import floor
from mot_lib import stats as rates
from mot_lib.claims import mechanism as mech
from mot_lib.claims import predecessor_chapter as pc
from mot_lib.experiments import predecessor_table as pt
from mot_lib.experiments import realdata as rd


def test_share_rows_of_chapters_08_and_09_need_more_than_the_share():
    """beyond.share_row ("against more than seed_share"; chapters 08 and 09): a Wilson lower bound exactly at
    seed_share is not above it."""
    lo = rates.wilson(20, 20, 0.95)[0]
    assert beyond.share_row("c", "b", [True] * 20, 0.95, lo, "x")["verdict"] == "inconclusive"
    assert beyond.share_row("c", "b", [True] * 20, 0.95, 0.5, "x")["verdict"] == "holds"   # (0.5, 1]: 1 included


class _FakeRun:
    def __init__(self, loss, acc, T):
        self.loss, self.acc, self.cfg = loss, acc, mot.TrainConfig(T1=0, T2=0, T=T)

    def scalar(self, q):
        return {"test_loss": self.loss, "test_acc": self.acc, "routing_acc": self.acc * 0 + 1}[q]

    def final(self, q):
        return self.scalar(q).iloc[-1]


def test_floor_ratio_of_exactly_one_is_not_below():
    """Chapter 04: 'MoT final test loss below the attention-free MoE's' (ratio MoE / MoT above 1). Two identical
    runs give 1 [1, 1]; the old range (1 + tiny, inf) was [1, inf) in floating point and called it holds."""
    steps = np.arange(0, 301, 10)
    loss = pd.DataFrame({s: 1.0 / np.maximum(steps, 1) * (1 + 0.1 * s) for s in range(8)},
                        index=pd.Index(steps, name="step"))
    run = _FakeRun(loss, loss * 0 + 1.0, 300)
    rows = floor.verdict_rows({"MoT": run, "attention-free MoE": run}, "tie", floor.FloorParams(T1=0, T2=0, T=300))
    assert (rows[0]["measured"], rows[0]["interval"]) == (1.0, [1.0, 1.0])
    assert rows[0]["verdict"] == "does not hold"


def test_mechanism_shares_above_are_strict():
    """Chapter 06: every share row states 'a share above seed_share' (as the parameter's comment says, 'more than
    this share'), and a share whose interval starts exactly at seed_share is not above it (#17 made the
    strong-convexity and routing rows strict, like the rest, before the replication's seeds were drawn)."""
    rows = [{"model": "MoT specialists", "subspace": sub, "seed": s, "rel_min": 0.1} for sub in ("signals", "full")
            for s in range(12)]
    rows += [{"model": "single transformer", "subspace": "signals", "seed": s, "rel_min": 0.01} for s in range(12)]
    lo = rates.wilson(12, 12)[0]
    out = mech.curvature_rows(pd.DataFrame(rows), 1e-3, seed_share=lo)
    assert [r["verdict"] for r in out] == ["inconclusive", "inconclusive", "inconclusive"]
    assert all("a share above" in r["bound"] for r in out)
    high = mech.curvature_rows(pd.DataFrame(rows), 1e-3, seed_share=lo - 1e-9)
    assert [r["verdict"] for r in high] == ["holds", "holds", "holds"]


def test_predecessor_attention_rows_tie():
    """Chapter 10: 'MoT experts' test accuracy above the attention-free MoE's' (paired difference > 0): equal
    accuracies on every seed do not hold (the old range [1e-9, inf) already said so; now by the open edge)."""
    acc = 80 + np.linspace(-1, 1, 10)
    df = pd.DataFrame([{"setting": 1, "model": m, "loss": "logistic loss", "seed": s, "test_acc": a,
                        "test_acc_clean": a, "entropy": 0.1, "updates": 1, "final_train_loss": 0.3,
                        "steps_to_level": 100, "label_weight": 0.2}
                       for m in pt.ATTENTION_MODELS for s, a in enumerate(acc)])
    r, = pc.attention_rows(df, pc.PredecessorParams())
    assert r["interval"] == [0.0, 0.0] and r["verdict"] == "does not hold"


def _run(model, errors):
    return rd.RealRun(model, list(range(len(errors))), pd.DataFrame(
        [dict(seed=s, epoch=1, test_acc=1 - e, test_loss=1.0) for s, e in enumerate(errors)]), 0, {})


@pytest.mark.parametrize("base", ["single ViT", "attention-free MoE"])
def test_real_data_tie_is_not_below(base):
    """Chapter 07: the issue's one-class run measured 'MoT below the single ViT' as 0 [0, 0] against > 0 and
    showed holds.  The same errors on every seed now do not hold."""
    runs = {"MoT": _run("MoT", [0.2, 0.3, 0.25]), base: _run(base, [0.2, 0.3, 0.25])}
    row = rd.verdict_rows(runs, 0.9, 0.5)[0]
    assert base in row["claim"] and row["interval"] == [0.0, 0.0] and row["verdict"] == "does not hold"


def test_real_data_share_and_expert_count_ties():
    """Chapter 07: 'fewer epochs' needs a share above share_pass; 'uses more experts' a paired difference > 0."""
    runs = {"MoT": _run("MoT", [0.1] * 12), "single ViT": _run("single ViT", [0.5] * 12)}
    lo = rates.wilson(12, 12)[0]
    assert rd.verdict_rows(runs, 0.8, lo)[1]["verdict"] == "inconclusive"
    assert rd.verdict_rows(runs, 0.8, 0.5)[1]["verdict"] == "holds"
    row = rd.used_verdict_row([2, 3, 2, 4], [2, 3, 2, 4])
    assert row["interval"] == [0.0, 0.0] and row["verdict"] == "does not hold"

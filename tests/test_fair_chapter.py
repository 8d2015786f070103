"""Chapter 08's sizes, tuning rule, verdict rule and committed sweep (mot_lib.fair, fair_chapter, beyond)."""
import math

import numpy as np
import pandas as pd
import pytest

import mot_lib as mot
from mot_lib.claims import beyond
from mot_lib.engine import capacity
from mot_lib.experiments import fair
from mot_lib.experiments import sweeps
from mot_lib.experiments.jobs import Job
from mot_lib.claims import fair_chapter as fc


@pytest.mark.parametrize("M", fair.LEVELS)
def test_matched_models_are_the_largest_that_fit(M):
    models = fair.matched_models(M)
    tot, act = capacity.param_counts(models[0]["cfg"], 16)
    assert models[0]["model"] == "MoT" and models[0]["cfg"].M == M
    for m in models[1:]:
        t, a = capacity.param_counts(m["cfg"], 16)
        budget = {"total": [t <= tot], "active": [a <= act], "both": [t <= tot, a <= act]}[m["match"]]
        assert all(budget), m
        c = m["cfg"]   # one more neuron (or, for the single transformer sized by total parameters, head) no longer fits
        bigger = c.replace(H=c.H + 1) if m["model"] == "single transformer" and m["match"] == "total" else c.replace(J=c.J + 1)
        t2, a2 = capacity.param_counts(bigger, 16)
        assert {"total": t2 > tot, "active": a2 > act, "both": t2 > tot or a2 > act}[m["match"]], m
    single_total = [m for m in models if m["model"] == "single transformer" and m["match"] == "total"][0]
    assert single_total["cfg"].H == M and single_total["cfg"].J == 2    # H(d^2 + 2d) = M(d^2 + 2d) exactly


def test_choose_multipliers_lowest_median_then_nearest_one():
    rows = pd.DataFrame({"level": 4, "model": "m", "match": "both",
                         "mult": [0.5] * 3 + [1.0] * 3 + [2.0] * 3,
                         "final_test_loss": [0.1, 0.2, 0.3, 0.2, 0.2, 0.2, math.inf, 0.01, 0.02]})
    # medians: 0.5 -> 0.2, 1 -> 0.2, 2 -> 0.02 (a diverged seed counts as infinite, the median survives it)
    assert fair.choose_multipliers(rows)["mult"].tolist() == [2.0]
    rows.loc[rows["mult"] == 2.0, "final_test_loss"] = math.inf
    assert fair.choose_multipliers(rows)["mult"].tolist() == [1.0]          # tie 0.5 / 1: the one nearer 1


def test_faster_counts_never_as_slower_and_ties_as_not_faster():
    a = [100, np.nan, np.nan, 200, 150]
    b = [200, 100, np.nan, 100, 150]
    assert beyond.faster(a, b).tolist() == [True, False, False, False, False]
    assert beyond.faster([120], [np.nan]).tolist() == [True]


def test_censored_median_keeps_never_reached_seeds():
    est = beyond.censored_median_ci([100, 200, np.nan, np.nan, np.nan])
    assert est.value == math.inf
    est = beyond.censored_median_ci([100, 110, 120, 130, 140, 150, np.nan, np.nan, np.nan])
    assert est.value == 140 and est.lo == 110 and est.hi == math.inf


def test_share_row_decides_on_the_wilson_interval():
    assert beyond.share_row("c", "b", [True] * 20, 0.95, 0.5, "x")["verdict"] == "holds"
    assert beyond.share_row("c", "b", [True] * 13 + [False] * 7, 0.95, 0.5, "x")["verdict"] == "inconclusive"
    assert beyond.share_row("c", "b", [False] * 18 + [True] * 2, 0.95, 0.5, "x")["verdict"] == "does not hold"


def test_params_reject_an_eps_outside_the_grid():
    with pytest.raises(ValueError, match="eps=0.005"):
        fc.FairParams(eps=0.005)
    with pytest.raises(ValueError, match="seed_share"):
        fc.FairParams(seed_share=1.0)


def test_the_committed_sweep_is_current_and_complete():
    rows, curves, meta, stale = fc.load(fc.FairParams())
    assert stale is None, "the engine changed since the sweep was computed: rerun `python -m mot_lib sweep fair`"
    v = rows[rows.part == "verdict"]
    per_model = v.groupby(["level", "model", "match"]).seed.apply(sorted)
    assert len(per_model) == sum(len(fair.matched_models(M)) for M in fair.LEVELS)
    assert all(s == list(fair.SEEDS) for s in per_model)
    assert set(rows[rows.part == "tuning"].seed) == set(fair.TUNING_SEEDS) and not set(fair.TUNING_SEEDS) & set(fair.SEEDS)
    assert len(fc.verdicts(rows, meta, fc.FairParams())) == 3 * 4 + 2


def test_sweep_job_runs_and_summarizes_at_a_tiny_size():
    job = sweeps.smoke(fair.tuning_jobs(levels=(4,), mults=(1.0,))[0])
    rows, curves = sweeps.run_job(job)
    assert len(rows) == 2 and {"final_test_loss", "steps_to_0.001", "params_total", "step_flops"} <= set(rows)
    assert (rows.params_total == capacity.param_counts(job.config(), 16)[0]).all()


def test_no_tuned_multiplier_lies_at_an_edge_of_its_grid():
    """Issue 18: a tuned step at the grid's edge may be one the grid cut short (failed on the table whose single
    transformers all chose 8, the top of MULTS)."""
    _, _, meta, _ = fc.load(fc.FairParams())
    chosen = fc.chosen_table(meta)
    assert len(chosen) == 18
    edge = fair.at_edge(chosen)
    assert edge.empty, edge.to_string()
    fake = chosen.assign(mult=[max(fair.mults_for({"kind": "single" if m == "single transformer" else "mot"}))
                               for m in chosen.model])
    assert len(fair.at_edge(fake)) == 18


def test_every_chapter_compares_with_the_tuned_single_transformer():
    """One comparator: chapters 01, 05 and 06 read the step chapter 08's sweep chose for H = 4, J = 2."""
    from mot_lib.claims import comparator, convergence, mechanism, setting
    t = comparator.tuned(4, 2)
    _, _, meta, _ = fc.load(fc.FairParams())
    level4 = [c for c in meta["chosen"] if c["model"] == "single transformer" and c["level"] == 4 and c["match"] == "total"]
    assert t["eta"] == pytest.approx(fair.SINGLE.eta * level4[0]["mult"]) and t["eta"] != fair.SINGLE.eta
    assert setting.SettingChapterParams().single_config()[0].eta == t["eta"]
    assert convergence.Theorem1Params().single_config().eta == t["eta"]
    assert mechanism.MechanismParams().single_config().eta == t["eta"]
    assert mechanism.MechanismParams(single_eta=0.5).single_config().eta == 0.5
    with pytest.raises(ValueError, match=r"tuned the single transformer at .*not at H=3, J=2; give single_eta"):
        mechanism.MechanismParams(H=3).single_config()
    assert "may not be tuned here" in comparator.resolve("tuned", 4, 2, mot.Setting(d=32))[1]


def test_reuse_takes_whole_jobs_of_an_earlier_table_only(tmp_path):
    """sweep --reuse: a job's rows (and curves) come from the earlier table only when it holds all its seeds under
    the same labels; the assembled table equals the one computed from scratch."""
    jobs = [sweeps.smoke(j) for j in fair.tuning_jobs(levels=(4,), mults=(1.0,))[:2]]
    jobs[1] = Job(**{**jobs[1].__dict__, "curves": ("test_loss",)})
    rows, curves = sweeps.run_jobs(jobs)
    known = sweeps.reusable(jobs, rows, curves)
    assert sorted(known) == [0, 1]
    again = sweeps.run_jobs(jobs, reuse=known)
    pd.testing.assert_frame_equal(again[0], rows)
    pd.testing.assert_frame_equal(again[1], curves)
    other = Job(**{**jobs[0].__dict__, "labels": {**jobs[0].labels, "mult": 2.0}})
    assert sweeps.reusable([other], rows, curves) == {}
    for j in jobs:     # a seed missing from the rows: the job is computed again
        assert sweeps.reusable([j], rows[rows.seed != j.seeds[0]], curves) == {}

"""Metrics on hand-built cases; fits recover known rates; verdicts follow intervals."""
import math

import numpy as np
import pytest
import torch

import mot_lib as mot
from mot_lib.engine import metrics as mt
from mot_lib import stats as rates


def test_dispatch_routing_usage_entropy():
    idx = torch.tensor([[0, 0, 1, 2, 2, 2]])
    cls = torch.tensor([[0, 0, 1, 1, 1, 1]])
    D = mt.dispatch_matrix(idx, cls, N=2, M=3)
    assert torch.allclose(D[0], torch.tensor([[1.0, 0, 0], [0, 0.25, 0.75]], dtype=D.dtype))
    spec = torch.tensor([[0, 0, 1]])
    assert mt.routing_accuracy(idx, cls, spec).item() == pytest.approx(5 / 6)  # sample 2 goes to a class-0 specialist
    assert mt.experts_used(idx, 3).item() == 3
    assert mt.experts_used(idx, 3, min_share=0.2).item() == 2
    H = mt.dispatch_entropy(D).item()
    assert H == pytest.approx((0 + -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))) / 2)


def test_specialty_and_gap():
    V = torch.eye(3, dtype=torch.float64)[None]
    W = torch.tensor([[[0.5, 2.0, -1.0], [0.1, 0.0, 0.3]]], dtype=torch.float64)
    assert mt.specialty(W, V).tolist() == [[1, 2]]
    assert torch.allclose(mt.specialization_gap(W, V), torch.tensor([[1.5, 0.2]], dtype=torch.float64))


def test_gradient_conflict_shared_vs_specialist():
    """A shared expert sees opposing class gradients on v_n' (the distractor); a one-class batch has none."""
    data = mot.make_dataset(mot.Setting(N=2, d=12, n_train=2000, n_test=10, sigma_xi=0.0), [0])
    X, y, cls = data.train.X[0], data.train.y[0], data.train.cls[0]
    W = data.V[0, 0] + 0.3 * data.V[0, 1]   # an expert leaning on class 0's label signal
    G = mt.class_gradients(W, X, y, cls, N=2)
    cos = mt.cosine_matrix(G)
    assert cos.shape == (2, 2) and torch.allclose(torch.diagonal(cos), torch.ones(2, dtype=cos.dtype))
    assert cos[0, 1] < 0.5  # classes pull W in different directions


def test_hessian_linear_model_is_psd():
    """With a linear activation each expert's logistic loss is convex: smallest eigenvalue >= 0."""
    st = mot.Setting(N=2, d=10, L=4, n_train=200, n_test=50)
    run = mot.train_mot(st, mot.TrainConfig(M=2, T1=5, T2=5, T=10, activation="linear", record_every=5), [0],
                        progress=False)
    lam = mt.expert_hessian_min_eig(run, subspace="full")
    got = lam[torch.isfinite(lam)]
    assert got.numel() >= 1 and (got > -1e-10).all()


def test_iterations_to_eps():
    assert rates.iterations_to_eps([0, 10, 20, 30], [1, 0.1, 0.01, 0.001], 0.05) == 20
    assert math.isnan(rates.iterations_to_eps([0, 10], [1, 0.5], 0.1))


def test_fits_recover_known_rates():
    t = np.arange(1, 200, dtype=float)
    c, _, r2 = rates.fit_exponential(t, 3 * np.exp(-0.05 * t))
    assert c == pytest.approx(0.05) and r2 == pytest.approx(1)
    p, _, _ = rates.fit_power_law(t, 2 * t ** -1.5)
    assert p == pytest.approx(-1.5)


def test_verdict_from_an_interval():
    est = rates.Estimate(0.5, 0.45, 0.55)
    assert rates.verdict(est, (0.4, 0.6)) == "holds"
    assert rates.verdict(est, (0.9, 1.1)) == "does not hold"
    assert rates.verdict(rates.Estimate(0.5, 0.3, 0.7), (0.4, 0.6)) == "inconclusive"
    assert rates.verdict(rates.Estimate(0.5, float("nan"), 0.7), (0.4, 0.6)) == "inconclusive"
    row = rates.verdict_row("gap ~ sigma0^0.5", "slope 0.5", est, (0.4, 0.6))
    assert set(row) == {"claim", "bound", "measured", "interval", "verdict"}


# ---------------------------------------------------------------------- population-level verdicts
def test_wilson_matches_known_values():
    lo, hi = rates.wilson(20, 20)
    assert abs(lo - 0.8389) < 1e-3 and hi == 1.0
    lo, hi = rates.wilson(10, 20)
    assert abs(lo - 0.2993) < 1e-3 and abs(hi - 0.7007) < 1e-3
    e = rates.share([1, 1, 0, float("nan")])        # a NaN seed never passed
    assert e.value == 0.5


def test_mean_t_and_median_ci_have_their_coverage():
    """Coverage at 10 seeds over many simulated seed sets: t on normal data, median on skewed data."""
    rng = np.random.default_rng(0)
    hit_t = hit_m = 0
    for _ in range(2000):
        x = rng.normal(1.0, 2.0, size=10)
        e = rates.mean_t(x)
        hit_t += e.lo <= 1.0 <= e.hi
        y = rng.lognormal(0.0, 1.0, size=10)          # median 1
        m = rates.median_ci(y)
        hit_m += m.lo <= 1.0 <= m.hi
    assert 0.93 <= hit_t / 2000 <= 0.97
    assert hit_m / 2000 >= 0.95
    assert np.isnan(rates.median_ci([1, 2, 3]).lo)    # too few seeds for a 95% order-statistic interval


def test_median_ci_ranks_the_seeds_above_last():
    """above=k: k seeds without a value rank above every value (+inf), so the median and interval move up."""
    base = rates.median_ci(np.arange(10.0))
    up = rates.median_ci(np.arange(10.0), above=3)
    assert (base.value, base.lo, base.hi) == (4.5, 1.0, 8.0)
    assert (up.value, up.lo, up.hi) == (6.0, 2.0, np.inf)
    assert rates.median_ci([1.0, np.nan, 2.0], above=0).value == 1.5
    with pytest.raises(ValueError, match=r"^above=-1 is not allowed"):
        rates.median_ci([1.0], above=-1)


def test_population_row_explains_an_inconclusive_verdict():
    e = rates.share([1] * 17 + [0] * 3)               # 0.85 [0.64, 0.95]
    row = rates.population_row("c", "b", e, (0.75, 1.0), "share of seeds passing, Wilson 95%", 20)
    assert row["verdict"] == "inconclusive" and row["seeds"] == 20
    assert "leans holds" in row["note"] and "0.75" in row["note"] and "seeds would settle it" in row["note"]
    ok = rates.population_row("c", "b", rates.share([1] * 20), (0.75, 1.0), "t", 20)
    assert ok["verdict"] == "holds" and ok["note"] == ""
    bad = rates.population_row("c", "b", rates.mean_t([-3, -2.5, -2.8, -3.1]), (0.0, np.inf), "t", 4)
    assert bad["verdict"] == "does not hold"


# ---------------------------------------------------------------------- strict comparisons: a tie is not a win
def test_an_open_edge_excludes_a_tie():
    tie = rates.Estimate(0.0, 0.0, 0.0)
    assert rates.verdict(tie, (0.0, math.inf)) == "holds"                  # a closed range keeps its old meaning
    assert rates.verdict(tie, rates.above(0.0)) == "does not hold"         # "> 0": a tie lies outside (0, inf)
    assert rates.verdict(tie, rates.below(0.0)) == "does not hold"
    touch = rates.Estimate(0.01, 0.0, 0.02)                                 # reaches 0 exactly
    assert rates.verdict(touch, (0.0, math.inf)) == "holds"
    row = rates.population_row("c", "> 0", touch, rates.above(0.0), "t", 10)
    assert row["verdict"] == "inconclusive" and "leans holds" in row["note"] and "edge 0" in row["note"]
    assert rates.verdict(rates.Estimate(-0.01, -0.02, 0.0), rates.above(0.0)) == "does not hold"
    assert rates.verdict(rates.Estimate(0.01, 1e-12, 0.02), rates.above(0.0)) == "holds"
    # a share in (0.5, 1]: 20 of 20 reaches 1 exactly and holds; a lower bound exactly at 0.5 does not
    assert rates.verdict(rates.share([1] * 20), rates.above(0.5, 1.0)) == "holds"
    lo = rates.wilson(20, 20)[0]
    assert rates.verdict(rates.share([1] * 20), rates.above(lo, 1.0)) == "inconclusive"
    assert rates.verdict(rates.share([1] * 20), (lo, 1.0)) == "holds"
    on_edge = rates.population_row("c", "b", rates.Estimate(0.0, -0.01, 0.01), rates.above(0.0), "t", 10)
    assert on_edge["verdict"] == "inconclusive" and "leans does not hold" in on_edge["note"]


def test_accept_is_a_two_tuple_that_survives_copies():
    import copy
    import pickle
    a = rates.above(0.5, 1.0)
    lo, hi = a
    assert (lo, hi) == (0.5, 1.0) and len(a) == 2 and repr(a) == "(0.5, 1]" and repr(rates.below(0.0)) == "[-inf, 0)"
    for b in (copy.deepcopy(a), pickle.loads(pickle.dumps(a))):
        assert b == a and b.lo_open and not b.hi_open
    assert rates.seeds_to_settle(rates.Estimate(0.7, 0.45, 0.95), a, 10) == 16    # 10 (0.25 / 0.2)^2, up

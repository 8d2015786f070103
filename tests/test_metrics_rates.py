"""Metrics on hand-built cases; fits recover known rates; verdicts follow intervals."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import mot_lib as mot
from mot_lib import metrics as mt
from mot_lib import rates


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


def test_bootstrap_interval_and_verdicts():
    rng = np.random.default_rng(0)
    x = np.logspace(-2, 0, 6)
    df = pd.DataFrame([{"seed": s, "x": xi, "y": xi ** 0.5 * np.exp(rng.normal(0, 0.05))}
                       for s in range(8) for xi in x])
    est = rates.bootstrap_fit(df, "x", "y")
    assert est.lo < 0.5 < est.hi and est.hi - est.lo < 0.2
    assert rates.verdict(est, (0.4, 0.6)) == "holds"
    assert rates.verdict(est, (0.9, 1.1)) == "does not hold"
    assert rates.verdict(rates.Estimate(0.5, 0.3, 0.7), (0.4, 0.6)) == "inconclusive"
    assert rates.verdict(rates.Estimate(0.5, float("nan"), 0.7), (0.4, 0.6)) == "inconclusive"
    row = rates.verdict_row("gap ~ sigma0^0.5", "slope 0.5", est, (0.4, 0.6))
    assert set(row) == {"claim", "bound", "measured", "interval", "verdict"}
    m = rates.bootstrap_mean([1.0, 2.0, 3.0])
    assert m.value == 2.0 and m.lo <= 2.0 <= m.hi

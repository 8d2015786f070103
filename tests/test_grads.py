"""The closed-form passes (mot_lib.engine.grads) against autograd through the models' forward passes: every
model family, every stage's set of trained parameters, every activation and query pooling, to 1e-10 in float64;
and whole training runs of both engines agreeing to rounding."""
import numpy as np
import pytest
import torch

import mot_lib as mot
from mot_lib.engine import grads as G
from mot_lib.engine import models as md

TOL = 1e-10


def rel(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


@pytest.fixture(scope="module")
def data():
    return mot.make_dataset(mot.Setting(n_train=60, n_test=20), [0, 1, 2])


def _params(S, M, J, d, shared, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(S, M, d, generator=g, dtype=torch.float64) if J == 1 else \
        torch.randn(S, M, J, d, generator=g, dtype=torch.float64)
    return {"W": 0.5 * W, "WKQ": 0.3 * torch.randn(S, 1 if shared else M, d, d, generator=g, dtype=torch.float64),
            "theta": 0.2 * torch.randn(S, M, d, generator=g, dtype=torch.float64)}


class _Cfg:
    def __init__(self, attention, shared, pool):
        self.attention, self.shared_attention, self.query_pool = attention, shared, pool


# (experts, neurons, attention, shared, pool, activation, trained parameters, live attention)
MOT_CASES = [
    (5, 1, True, False, "sum", "cubic", ("W", "theta"), False),          # Stage I/III, cached weights
    (5, 1, True, False, "sum", "cubic", ("WKQ", "theta"), True),         # Stage II
    (5, 1, True, False, "sum", "cubic", ("W", "WKQ", "theta"), True),    # joint schedule
    (4, 3, True, False, "mean", "cubic", ("W", "WKQ", "theta"), True),   # J-neuron experts, mean pooling
    (4, 1, True, True, "sum", "relu", ("W", "WKQ", "theta"), True),      # shared attention
    (4, 2, True, True, "mean", "linear", ("WKQ",), True),
    (6, 1, False, False, "sum", "cubic", ("W", "theta"), False),         # attention-free MoE
    (6, 3, False, False, "mean", "relu", ("W",), False),
]


@pytest.mark.parametrize("M,J,attention,shared,pool,act,wrt,live", MOT_CASES)
def test_mot_gradients_match_autograd(data, M, J, attention, shared, pool, act, wrt, live):
    X, y, xs = data.train.X, data.train.y, data.train.xsum
    S, d = X.shape[0], X.shape[-1]
    p = _params(S, M, J, d, shared)
    if not attention:
        p["WKQ"].zero_()
    cfg = _Cfg(attention, shared, pool)
    h = md.router_scores(xs, p["theta"])
    idx = md.route(h)
    assert len(set(idx.reshape(-1).tolist())) > 1          # several experts are exercised
    q = {k: v.clone().requires_grad_(k in wrt) for k, v in p.items()}
    a_ref = md._weights(cfg, X, q["WKQ"], idx, None)
    F, _, _ = md.mot_forward(q, X, xs, idx, a_ref, md.activation(act))
    loss = md.logistic_loss(y * F).mean(-1)
    ref = dict(zip(wrt, torch.autograd.grad(loss.sum(), [q[k] for k in wrt])))
    a = None if live else md._weights(cfg, X, p["WKQ"], idx, None)
    loss2, got = G.mot_step(p, X, xs, y, idx, h, a, activation=act, query_pool=pool, shared=shared, wrt=wrt)
    assert set(got) == set(wrt)
    assert rel(loss2, loss.detach()) < TOL
    for k in wrt:
        assert got[k].shape == p[k].shape
        assert rel(got[k], ref[k]) < TOL, k


#: the single transformer's cases: heads, neurons per head, activation, symmetric heads
SINGLE_CASES = [(4, 2, "cubic", False), (3, 1, "relu", False), (2, 3, "linear", False), (16, 2, "cubic", False),
                (2, 3, "relu", True), (4, 2, "cubic", True)]


def single_reference(data, H, J, act, signed):
    """Random weights p of an H-head single transformer on the data's seeds, its head signs, and autograd's outputs
    F, per-seed loss and gradients (in W, in W_KQ) through ``models.single_forward``."""
    X, y = data.train.X, data.train.y
    S, d = X.shape[0], X.shape[-1]
    g = torch.Generator().manual_seed(1)
    p = {"W": 0.3 * torch.randn(S, H, J, d, generator=g, dtype=torch.float64),
         "WKQ": 0.3 * torch.randn(S, H, d, d, generator=g, dtype=torch.float64)}
    signs = md.head_signs(H, signed)
    q = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    F = md.single_forward(q, X, md.activation(act), signs)
    loss = md.logistic_loss(y * F).mean(-1)
    ref = torch.autograd.grad(loss.sum(), [q["W"], q["WKQ"]])
    return p, signs, F.detach(), loss.detach(), ref


@pytest.mark.parametrize("H,J,act,signed", SINGLE_CASES)
def test_single_gradients_match_autograd(data, H, J, act, signed, monkeypatch):
    X, y = data.train.X, data.train.y
    p, signs, F, loss, ref = single_reference(data, H, J, act, signed)
    # several sample blocks, and one: the blocks change the summation order only
    for elems in (X.shape[0] * H * X.shape[2] * X.shape[3] * 7, G.SAMPLE_BLOCK_ELEMS):
        monkeypatch.setattr(G, "SAMPLE_BLOCK_ELEMS", elems)
        loss2, got, F2 = G.single_step(p, X, y, activation=act, signs=signs)
        assert rel(F2, F) < TOL and rel(loss2, loss) < TOL
        assert rel(got["W"], ref[0]) < TOL and rel(got["WKQ"], ref[1]) < TOL


def test_a_wrong_gradient_is_caught(data, monkeypatch):
    """The comparison can fail: a slope off by 1e-6 (the cubic's 3 z^2 made 3.000003 z^2) is seen."""
    real = G.sigma_and_slope
    monkeypatch.setattr(G, "sigma_and_slope", lambda name, z: (real(name, z)[0], real(name, z)[1] * (1 + 1e-6)))
    with pytest.raises(AssertionError):
        test_mot_gradients_match_autograd(data, *MOT_CASES[0])


@pytest.mark.parametrize("schedule,attention", [("three_stage", True), ("joint", True), ("three_stage", False)])
def test_training_runs_agree_with_autograd(data, schedule, attention):
    cfg = mot.TrainConfig(M=4, T=12, T1=4, T2=8, schedule=schedule, attention=attention, record_every=4)
    st = data.setting
    a = mot.train_mot(st, cfg, data.seeds, data, progress=False)
    b = mot.train_mot(st, cfg, data.seeds, data, progress=False, gradients="autograd")
    for k in a.params:
        assert rel(a.params[k], b.params[k]) < 1e-12 or float(b.params[k].abs().max()) == 0
    for sc in (mot.SingleConfig(T=6, record_every=3),
               mot.SingleConfig(H=2, J=3, T=9, T1=3, T2=6, signed_heads=True, activation="relu", opt="gd", eta=0.5,
                                record_every=3)):
        b = mot.train_single(st, sc, data.seeds, data, progress=False, gradients="autograd")
        for g in ("fused", "closed"):
            a = mot.train_single(st, sc, data.seeds, data, progress=False, gradients=g)
            for k in a.params:
                assert rel(a.params[k], b.params[k]) < 1e-12
            assert np.allclose(a.history.value.to_numpy(), b.history.value.to_numpy(), rtol=1e-9, atol=1e-12,
                               equal_nan=True)


def test_the_two_headed_comparator_trains_stage_wise(data):
    """Yang et al.'s algorithm: steps 1..T1 move the neurons only, T1+1..T2 the key-query matrices only, then
    both; a head's ReLU output has one sign, so the symmetric pair needs signed_heads."""
    st = data.setting
    base = mot.SingleConfig(H=2, J=3, T1=3, T2=6, signed_heads=True, activation="relu", opt="gd", eta=0.5)
    at = {t: mot.train_single(st, base.replace(T=t, T1=min(3, t), T2=min(6, t), record_every=t), data.seeds, data,
                              progress=False).params for t in (3, 6, 9)}
    init = mot.train_single(st, base.replace(T=1, T1=1, T2=1, eta=1e-300, record_every=1), data.seeds, data,
                            progress=False).params
    assert torch.equal(at[3]["WKQ"], init["WKQ"]) and not torch.equal(at[3]["W"], init["W"])
    assert torch.equal(at[6]["W"], at[3]["W"]) and not torch.equal(at[6]["WKQ"], at[3]["WKQ"])
    assert not torch.equal(at[9]["W"], at[6]["W"]) and not torch.equal(at[9]["WKQ"], at[6]["WKQ"])
    with pytest.raises(ValueError, match="H=3 with signed_heads=True is not allowed"):
        mot.SingleConfig(H=3, signed_heads=True)
    with pytest.raises(ValueError, match="^T2=2 is out of range"):
        mot.SingleConfig(T1=4, T2=2)


def test_gradients_argument_is_checked(data):
    with pytest.raises(ValueError, match="gradients='fast' is not allowed"):
        mot.train_mot(data.setting, mot.TrainConfig(T=2, T1=1, T2=2), data.seeds, data, gradients="fast")

"""The closed-form passes (mot_lib.engine.grads) against autograd through the models' forward passes: every
model family, every stage's set of trained parameters, every activation and query pooling, to 1e-10 in float64;
and whole training runs of both engines agreeing to rounding."""
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


@pytest.mark.parametrize("H,J,act", [(4, 2, "cubic"), (3, 1, "relu"), (2, 3, "linear"), (16, 2, "cubic")])
def test_single_gradients_match_autograd(data, H, J, act, monkeypatch):
    X, y = data.train.X, data.train.y
    S, d = X.shape[0], X.shape[-1]
    g = torch.Generator().manual_seed(1)
    p = {"W": 0.3 * torch.randn(S, H, J, d, generator=g, dtype=torch.float64),
         "WKQ": 0.3 * torch.randn(S, H, d, d, generator=g, dtype=torch.float64)}
    q = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    F = md.single_forward(q, X, md.activation(act))
    loss = md.logistic_loss(y * F).mean(-1)
    ref = torch.autograd.grad(loss.sum(), [q["W"], q["WKQ"]])
    # several sample blocks, and one: the blocks change the summation order only
    for elems in (S * H * X.shape[2] * d * 7, G.SAMPLE_BLOCK_ELEMS):
        monkeypatch.setattr(G, "SAMPLE_BLOCK_ELEMS", elems)
        loss2, got, F2 = G.single_step(p, X, y, activation=act)
        assert rel(F2, F.detach()) < TOL and rel(loss2, loss.detach()) < TOL
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
    sc = mot.SingleConfig(T=6, record_every=3)
    a = mot.train_single(st, sc, data.seeds, data, progress=False)
    b = mot.train_single(st, sc, data.seeds, data, progress=False, gradients="autograd")
    for k in a.params:
        assert rel(a.params[k], b.params[k]) < 1e-12


def test_gradients_argument_is_checked(data):
    with pytest.raises(ValueError, match="gradients='fast' is not allowed"):
        mot.train_mot(data.setting, mot.TrainConfig(T=2, T1=1, T2=2), data.seeds, data, gradients="fast")

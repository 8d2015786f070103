"""The fused kernels (mot_lib.engine.fused): their exponential against the platform's, their gradients against
autograd's to 1e-10 on every case they cover, whole runs against the torch engines, the fallback for the cases they
do not cover, and the same bits whatever instructions they are compiled for or however many threads run them."""
import hashlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import mot_lib as mot
from mot_lib.engine import fused
from mot_lib.engine import models as md
# the torch engine's tolerance, comparison, data and single-transformer cases
from test_grads import SINGLE_CASES, TOL, data, rel, single_reference  # noqa: F401


def test_det_exp_is_within_one_ulp_and_the_row_version_agrees():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-708, 709, 20000), rng.uniform(-3, 3, 20000), rng.normal(0, 1e-9, 2000),
                        [0.0, -0.0, 1e-300, -1e-300, 0.5 * np.log(2), np.log(2), -1.5 * np.log(2)]])
    got = np.array([fused.det_exp(v) for v in x])
    ref = np.exp(x)
    assert np.max(np.abs(got - ref) / np.spacing(ref)) <= 1.0
    assert fused.det_exp(710.0) == np.inf and fused.det_exp(-746.0) == 0.0 and np.isnan(fused.det_exp(np.nan))
    neg = -np.abs(x[np.abs(x) < 744])
    row = neg.copy()
    fused._exp_shifted(row, 0.0)
    assert np.max(np.abs(row - np.exp(neg)) / np.spacing(np.exp(neg))) <= 1.0
    # the same bits as det_exp but below 2^-28 in size, where det_exp returns 1 + x
    big = np.abs(neg) > 2.0 ** -28
    assert np.array_equal(row[big], np.array([fused.det_exp(v) for v in neg[big]]))


def _params(S, M, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"W": 0.5 * torch.randn(S, M, d, generator=g, dtype=torch.float64),
            "WKQ": 0.3 * torch.randn(S, M, d, d, generator=g, dtype=torch.float64),
            "theta": 0.2 * torch.randn(S, M, d, generator=g, dtype=torch.float64)}


class _Cfg:
    def __init__(self, attention, pool):
        self.attention, self.shared_attention, self.query_pool = attention, False, pool


# (experts, attention, pool, activation, trained parameters, live attention, exploration)
CASES = [
    (5, True, "sum", "cubic", ("W", "theta"), False, 0.0),           # Stage I/III, cached weights
    (5, True, "sum", "cubic", ("W", "theta"), False, 1.0),           # ... exploring
    (5, True, "sum", "cubic", ("WKQ", "theta"), True, 1.0),          # Stage II
    (5, True, "mean", "relu", ("W", "WKQ", "theta"), True, 0.0),     # joint schedule
    (4, True, "sum", "linear", ("WKQ",), True, 0.5),
    (6, False, "sum", "cubic", ("W", "theta"), False, 1.0),          # attention-free MoE
    (6, False, "mean", "relu", ("W",), False, 0.0),
]


@pytest.mark.parametrize("M,attention,pool,act,wrt,live,lam", CASES)
def test_fused_gradients_match_autograd(data, M, attention, pool, act, wrt, live, lam):
    X, y, xs = data.train.X, data.train.y, data.train.xsum
    S, d = X.shape[0], X.shape[-1]
    p = _params(S, M, d)
    if not attention:
        p["WKQ"].zero_()
    cfg = _Cfg(attention, pool)
    gens = [torch.Generator().manual_seed(s) for s in range(S)]
    h = md.router_scores(xs, p["theta"])
    idx = md.route(h, lam, [torch.Generator().manual_seed(s) for s in range(S)])   # the same draws
    assert len(set(idx.reshape(-1).tolist())) > 1
    q = {k: v.clone().requires_grad_(k in wrt) for k, v in p.items()}
    a_ref = md._weights(cfg, X, q["WKQ"], idx, None)
    F, _, _ = md.mot_forward(q, X, xs, idx, a_ref, md.activation(act))
    loss = md.logistic_loss(y * F).mean(-1)
    ref = dict(zip(wrt, torch.autograd.grad(loss.sum(), [q[k] for k in wrt])))
    if live:
        a_cache = None
    elif attention:
        a_cache = md.token_weights_all(X, p["WKQ"], pool)
    else:
        a_cache = md.uniform_weights(X, pool)[:, None]
    loss2, got, idx2, h2 = fused.mot_step(p, fused.Data(data.train, M), lam, gens, a_cache, activation=act,
                                          query_pool=pool, wrt=wrt)
    assert torch.equal(idx2, idx) and rel(h2, h) < TOL
    assert list(got) == list(wrt) and rel(loss2, loss.detach()) < TOL
    for k in wrt:
        assert got[k].shape == p[k].shape
        assert rel(got[k], ref[k]) < TOL, k
    F3, idx3, a3 = fused.forward(p, fused.Data(data.train, M), a_cache, activation=act, query_pool=pool)
    idx0 = md.route(h)
    assert torch.equal(idx3, idx0)
    assert rel(a3, md._weights(cfg, X, p["WKQ"], idx0, None)) < TOL


@pytest.mark.parametrize("kernel", ["_frozen", "_single"])
def test_a_wrong_gradient_is_caught(data, monkeypatch, kernel):
    """The comparisons can fail: a kernel (the MoT's Stage I/III one, the single transformer's) compiled anew with the
    cubic slope made 3.000003 z^2 is seen."""
    import numba as nb

    def act(z, code):
        if code == 0:
            return z * z * z, 3.000003 * z * z
        return z, 1.0
    monkeypatch.setattr(fused, "_act", nb.njit(act))
    for version in ("serial", "parallel"):
        monkeypatch.setattr(fused, f"{kernel}_{version}", nb.njit(getattr(fused, kernel)))
    with pytest.raises(AssertionError):
        if kernel == "_frozen":
            test_fused_gradients_match_autograd(data, *CASES[0])
        else:
            test_fused_single_transformer_matches_autograd(data, *SINGLE_CASES[0])


@pytest.mark.parametrize("H,J,act,signed", SINGLE_CASES)
def test_fused_single_transformer_matches_autograd(data, H, J, act, signed):
    """The single transformer's kernel: its outputs, loss and gradients in W and W_KQ against autograd's through
    ``models.single_forward``, to 1e-10; and its outputs without the backward pass, bit for bit the same."""
    p, signs, F, loss, ref = single_reference(data, H, J, act, signed)
    kd = fused.Data(data.train, 1)
    loss2, got, F2 = fused.single_step(p, kd, activation=act, signs=signs)
    assert rel(F2, F) < TOL and rel(loss2, loss) < TOL
    assert got["W"].shape == p["W"].shape and got["WKQ"].shape == p["WKQ"].shape
    assert rel(got["W"], ref[0]) < TOL and rel(got["WKQ"], ref[1]) < TOL
    loss3, none, F3 = fused.single_step(p, kd, activation=act, signs=signs, grads=False)
    assert none == {} and torch.equal(F3, F2) and torch.equal(loss3, loss2)
    with pytest.raises(ValueError, match="activation='tanh' is not allowed"):
        fused.single_step(p, kd, activation="tanh")


@pytest.mark.parametrize("schedule,attention,lam3", [("three_stage", True, None), ("three_stage", True, 0.0),
                                                     ("joint", True, None), ("three_stage", False, None),
                                                     ("I_joint", True, None)])
def test_fused_runs_agree_with_the_torch_engines(data, schedule, attention, lam3):
    cfg = mot.TrainConfig(M=4, T=12, T1=4, T2=8, schedule=schedule, attention=attention, record_every=4, lam3=lam3)
    st = data.setting
    runs = {g: mot.train_mot(st, cfg, data.seeds, data, progress=False, gradients=g, loss_every=2)
            for g in ("fused", "closed", "autograd")}
    for g in ("closed", "autograd"):
        for k in runs["fused"].params:
            assert rel(runs["fused"].params[k], runs[g].params[k]) < 1e-12 or float(runs[g].params[k].abs().max()) == 0
        a, b = runs["fused"].history, runs[g].history
        keys = ["step", "seed", "quantity", "expert", "i", "j"]
        assert a[keys].equals(b[keys])
        assert np.allclose(a.value.to_numpy(), b.value.to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True)


def test_models_the_kernels_do_not_cover_train_as_before(data):
    """J-neuron experts and a shared key-query matrix go through grads.mot_step: the same bits as gradients="closed"."""
    st = data.setting
    for cfg in (mot.TrainConfig(M=3, J=2, T=6, T1=2, T2=4, record_every=3),
                mot.TrainConfig(M=3, T=6, T1=2, T2=4, shared_attention=True, record_every=3)):
        a = mot.train_mot(st, cfg, data.seeds, data, progress=False)
        b = mot.train_mot(st, cfg, data.seeds, data, progress=False, gradients="closed")
        assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    with pytest.raises(ValueError, match="fused kernels cover one-neuron experts"):
        fused.mot_step({"W": torch.zeros(3, 2, 2, 16), "theta": torch.zeros(3, 2, 16)}, fused.Data(data.train, 2),
                       0.0, [], None, activation="cubic", query_pool="sum", wrt=("W",))
    with pytest.raises(ValueError, match="query_pool='max' is not allowed"):
        fused.mot_step(_params(3, 2, 16), fused.Data(data.train, 2), 0.0, [], None, activation="cubic",
                       query_pool="max", wrt=("W",))


_HASH_RUN = textwrap.dedent("""
    import hashlib, mot_lib as mot
    st = mot.Setting(n_train=120, n_test=60)
    h = hashlib.sha256()
    for cfg in (mot.TrainConfig(M=4, T=24, T1=8, T2=16, record_every=8),
                mot.TrainConfig(M=4, T=10, schedule="joint", activation="relu", query_pool="mean", record_every=5)):
        r = mot.train_mot(st, cfg, [0, 1], progress=False)
        for k in sorted(r.params):
            h.update(r.params[k].numpy().tobytes())
        h.update(r.history.value.to_numpy().tobytes())
    for sc in (mot.SingleConfig(T=8, record_every=4),
               mot.SingleConfig(H=2, J=3, T=9, T1=3, T2=6, signed_heads=True, activation="relu", opt="gd", eta=0.5,
                                record_every=3)):
        r = mot.train_single(st, sc, [0, 1], progress=False)
        for k in sorted(r.params):
            h.update(r.params[k].numpy().tobytes())
        h.update(r.history.value.to_numpy().tobytes())
    print(h.hexdigest())
""")


def _hash_in_subprocess(tmp_path, prefix="", **env) -> str:
    full = {**os.environ, "MOT_PROGRESS": "0", "NUMBA_CACHE_DIR": str(tmp_path / "nbcache"), **env}
    out = subprocess.run([sys.executable, "-c", prefix + _HASH_RUN], env=full, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_the_same_bits_whatever_the_instruction_set_or_threads(tmp_path):
    """The kernels compiled for the generic x86-64 (SSE2), for Haswell (AVX2, FMA available) and for this CPU, with
    LLVM's SLP vectorizer on (as ``fused._run`` compiles them) and off, and run on one thread or two (the seeds in
    parallel), give the same weights and history, bit for bit: no contraction into fused multiply-adds, no
    reordered sums, no platform exponential."""
    host = _hash_in_subprocess(tmp_path / "host", MOT_THREADS="1")
    assert _hash_in_subprocess(tmp_path / "generic", NUMBA_CPU_NAME="generic", MOT_THREADS="1") == host
    assert _hash_in_subprocess(tmp_path / "haswell", NUMBA_CPU_NAME="haswell", MOT_THREADS="1") == host
    assert _hash_in_subprocess(tmp_path / "two", MOT_THREADS="2") == host
    assert _hash_in_subprocess(tmp_path / "no_slp", "from mot_lib.engine import fused; fused._SLP = 0\n",
                               MOT_THREADS="1") == host


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_all_finite_finds_any_nan_or_inf(dtype):
    """The training loops' fast divergence check: every entry of every tensor, whatever its shape."""
    a, b = torch.zeros(3, 4, 5, dtype=dtype), torch.ones(7, dtype=dtype)
    assert fused.all_finite(a, b) and fused.all_finite()
    for bad in (float("nan"), float("inf"), -float("inf")):
        for t in (a, b):
            t.view(-1)[-1] = bad
            assert not fused.all_finite(a, b)
            t.view(-1)[-1] = 0.0
    assert fused.all_finite(a, b)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_compiled_draws_are_torch_rand(threads, monkeypatch):
    """fused.mt_rand gives torch.rand's float64 numbers from each seed's generator, call after call and across the
    twister's refills (shapes below, at and past its 624 words), and leaves the generators where torch would: the
    streams go on identically in torch afterwards (uniform and normal draws)."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    for shape in [(1,), (3, 5), (311, 2), (312, 1), (1000, 8)]:
        ours = [torch.Generator().manual_seed(100 + s) for s in range(3)]
        theirs = [torch.Generator().manual_seed(100 + s) for s in range(3)]
        for _ in range(4):
            out = np.empty((3,) + shape)
            fused.mt_rand(ours, out)
            ref = np.stack([torch.rand(*shape, generator=g, dtype=torch.float64).numpy() for g in theirs])
            assert np.array_equal(out, ref)
        for a, b in zip(ours, theirs):
            assert torch.equal(a.get_state(), b.get_state())
            assert torch.equal(torch.rand(9, generator=a, dtype=torch.float64),
                               torch.rand(9, generator=b, dtype=torch.float64))
            assert torch.equal(torch.randn(40, generator=a), torch.randn(40, generator=b))


def test_the_compiled_draws_refuse_a_state_they_do_not_know():
    """A generator whose state is not torch 2.13's CPU twister (another torch, another device) is refused, by name,
    before anything is drawn."""
    class Other:
        def get_state(self):
            return torch.zeros(100, dtype=torch.uint8)
    with pytest.raises(ValueError, match="5056 bytes.*got states of 100 bytes"):
        fused.mt_rand([Other()], np.empty((1, 3)))

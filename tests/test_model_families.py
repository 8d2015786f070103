"""The model families added to the MoT engine: J-neuron experts, a shared key-query matrix, the two-stage
schedules ("I_joint", "joint_III"), the recorded quantity explore_agree, and ``mot_lib.capacity``.

Checks: seeds batched give each seed's own run; the shared-attention gradients equal a plain per-sample
autograd reference; parameter and FLOP counts equal hand counts (and the trained tensors, and the matmuls
the forward pass runs); every new parameter is validated; stage labels and freezing follow the schedule;
J=1 without shared attention gives the numbers of the engine before these families were added.
"""
import importlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import mot_lib as mot
from mot_lib.engine import capacity
from mot_lib.engine import models
from mot_lib.engine import training

TINY = mot.Setting(N=3, d=12, L=6, n_train=200, n_test=200)
CFG = mot.TrainConfig(M=4, T1=6, T2=9, T=12, record_every=4)
REPO = Path(__file__).resolve().parent.parent
#: the last commit before J, shared_attention, the two-stage schedules and explore_agree were added
ENGINE_BEFORE = "db85ec95e5865a2e5fd0b38e629738bbd6ec8ed5"


def assert_seed_matches(both: mot.Run, k: int, one: mot.Run):
    """Seed k of a batched run equals the same seed trained alone: parameters and history."""
    for name in one.params:
        assert torch.allclose(both.params[name][k], one.params[name][0], rtol=1e-9, atol=1e-12), name
    a = both.history[both.history.seed == one.seeds[0]].reset_index(drop=True)
    b = one.history.reset_index(drop=True)
    pd.testing.assert_frame_equal(a.drop(columns="value"), b.drop(columns="value"))
    np.testing.assert_allclose(a.value, b.value, rtol=1e-8, atol=1e-12)


# ----------------------------------------------------------------------------- 1. batched = per seed
@pytest.mark.parametrize("changes", [
    dict(J=4, attention=False),                      # attention-free MoE, 4 neurons per expert
    dict(shared_attention=True),                     # shared-attention MoE, one neuron
    dict(shared_attention=True, J=3),                # shared-attention MoE, 3 neurons with signs
    dict(schedule="I_joint"),
    dict(schedule="joint_III"),
], ids=["J4-attention-free", "shared-J1", "shared-J3", "I_joint", "joint_III"])
def test_batched_equals_per_seed(changes):
    cfg = CFG.replace(**changes)
    both = mot.train_mot(TINY, cfg, [3, 8], progress=False)
    for k, s in enumerate([3, 8]):
        assert_seed_matches(both, k, mot.train_mot(TINY, cfg, [s], progress=False))


def test_single_batched_equals_per_seed():
    sc = mot.SingleConfig(H=3, J=5, T=12, record_every=4)
    both = mot.train_single(TINY, sc, [3, 8], progress=False)
    for k, s in enumerate([3, 8]):
        assert_seed_matches(both, k, mot.train_single(TINY, sc, [s], progress=False))


# ----------------------------------------------------------------------------- 2. gradients
def reference_loss(X, y, W, WKQ, theta, signs):
    """Mean logistic loss of one seed, one sample, query, key and neuron at a time (lam = 0).

    X (n,L,d); y (n,); W (M,J,d); WKQ (d,d) shared by every expert; theta (M,d); signs: J floats.
    F(X) = softmax(h)_{m*} sum_q sum_k softmax_k(x_q^T W_KQ x_k) sum_j s_j <W^(m*,j), x_k>^3,
    h_m = sum_l <theta_m, x_l>, m* = argmax_m h_m."""
    n, L, _ = X.shape
    M = theta.shape[0]
    total = 0.0
    for i in range(n):
        x = X[i]
        h = torch.stack([sum(theta[m] @ x[l] for l in range(L)) for m in range(M)])
        m_star = int(torch.argmax(h))
        pi = torch.exp(h[m_star]) / torch.exp(h).sum()
        f = 0.0
        for q in range(L):
            scores = torch.stack([x[q] @ WKQ @ x[k] for k in range(L)])
            att = torch.exp(scores) / torch.exp(scores).sum()
            for k in range(L):
                f = f + att[k] * sum(s * (W[m_star, j] @ x[k]) ** 3 for j, s in enumerate(signs))
        total = total + torch.log(1 + torch.exp(-y[i] * pi * f))
    return total / n


@pytest.mark.parametrize("J,signs", [(1, [1.0]), (3, [1.0, 1.0, -1.0])])  # +1 for the first ceil(J/2)
def test_shared_attention_gradients_match_per_sample_reference(J, signs):
    S, M, n, L, d = 2, 3, 6, 4, 5
    g = torch.Generator().manual_seed(11)

    def rand(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    X, y = rand(S, n, L, d), torch.where(rand(S, n) > 0, 1.0, -1.0).to(torch.float64)
    w_shape = (S, M, d) if J == 1 else (S, M, J, d)
    init = {"W": rand(*w_shape, scale=0.5), "WKQ": rand(S, 1, d, d, scale=0.5), "theta": rand(S, M, d, scale=0.5)}
    cfg = mot.TrainConfig(M=M, J=J, shared_attention=True, lam=0.0)

    p = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    xsum = X.sum(2)
    idx = models.route(models.router_scores(xsum, p["theta"]).detach())
    assert all(len(torch.unique(idx[s])) > 1 for s in range(S)), "routing should vary across samples"
    a = training._weights(cfg, X, p["WKQ"], idx, None)
    F, _, _ = models.mot_forward(p, X, xsum, idx, a, models.activation("cubic"))
    lib = torch.autograd.grad(models.logistic_loss(y * F).mean(-1).sum(), [p["W"], p["WKQ"], p["theta"]])

    r = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    ref_loss = sum(reference_loss(X[s], y[s], r["W"][s].reshape(M, J, d), r["WKQ"][s, 0], r["theta"][s], signs)
                   for s in range(S))
    ref = torch.autograd.grad(ref_loss, [r["W"], r["WKQ"], r["theta"]])
    for name, gl, gr in zip(("W", "WKQ", "theta"), lib, ref):
        assert gr.abs().max() > 1e-3, name  # a gradient that is there to compare
        assert torch.allclose(gl, gr, rtol=0, atol=1e-10), (name, (gl - gr).abs().max().item())


# ----------------------------------------------------------------------------- 3. capacity
# Hand counts at d=12, L=6, n_train=200, M=3, J=2, H=2.
COUNT_SETTING = mot.Setting(N=3, d=12, L=6, n_train=200, n_test=200)
COUNT_CASES = {
    # name: (config, total params, active params per sample, forward multiply-adds per sample)
    "MoT": (mot.TrainConfig(M=3, J=2),
            3 * 2 * 12 + 3 * 12 * 12 + 3 * 12,     # FFN M J d + key-query M d^2 + router M d = 72+432+36 = 540
            2 * 12 + 12 * 12 + 3 * 12,             # routed FFN J d + its key-query d^2 + router M d = 204
            3 * 12 + 6 * 12 * 12 + 6 * 6 * 12 + 6 * 2 * 12),  # router M d + X W_KQ L d^2 + scores L^2 d
                                                   # + FFN L J d = 36+864+432+144 = 1476
    "shared-attention MoE": (mot.TrainConfig(M=3, J=2, shared_attention=True),
                             3 * 2 * 12 + 12 * 12 + 3 * 12,   # one d^2 key-query matrix: 72+144+36 = 252
                             2 * 12 + 12 * 12 + 3 * 12,       # 204, as the MoT
                             3 * 12 + 6 * 12 * 12 + 6 * 6 * 12 + 6 * 2 * 12),  # 1476, as the MoT (top-1)
    "attention-free MoE": (mot.TrainConfig(M=3, J=2, attention=False),
                           3 * 2 * 12 + 3 * 12,    # FFN + router, W_KQ = 0 is no parameter: 72+36 = 108
                           2 * 12 + 3 * 12,        # 24+36 = 60
                           3 * 12 + 6 * 2 * 12),   # router + FFN = 36+144 = 180
    "single transformer": (mot.SingleConfig(H=2, J=2),
                           2 * (12 * 12 + 2 * 12),  # H (d^2 + J d) = 2 * 168 = 336
                           2 * (12 * 12 + 2 * 12),  # all active
                           2 * (6 * 12 * 12 + 6 * 6 * 12 + 6 * 2 * 12 + 6 * 6 * 2)),  # H (L d^2 + L^2 d + L J d
                                                                                       # + L^2 J) = 2 * 1512 = 3024
}


def trainable_entries(run: mot.Run) -> int:
    """Entries per seed of the tensors training updates (W_KQ of an attention-free model stays at 0)."""
    frozen = {"WKQ"} if isinstance(run.cfg, mot.TrainConfig) and not run.cfg.attention else set()
    return sum(v[0].numel() for k, v in run.params.items() if k not in frozen)


def matmul_flops_of_forward(cfg, setting: mot.Setting) -> int:
    """The FLOPs torch counts in one sample's forward pass (routing given: it only reads the router)."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(1, 1, setting.L, setting.d, generator=g, dtype=torch.float64)
    sigma = models.activation("cubic")
    if isinstance(cfg, mot.SingleConfig):
        p = models.init_single(1, cfg.H, cfg.J, setting.d, 0.1, [g])
        with FlopCounterMode(display=False) as fc:
            models.single_forward(p, X, sigma)
        return fc.get_total_flops()
    p = models.init_mot(1, cfg.M, setting.d, 0.1, [g], cfg.J, cfg.shared_attention)
    idx = torch.zeros(1, 1, dtype=torch.long)
    with FlopCounterMode(display=False) as fc:
        a = training._weights(cfg, X, p["WKQ"], idx, None)
        models.mot_forward(p, X, X.sum(2), idx, a, sigma)
    return fc.get_total_flops()


@pytest.mark.parametrize("name", list(COUNT_CASES))
def test_capacity_equals_hand_counts(name):
    cfg, total, active, macs = COUNT_CASES[name]
    assert capacity.param_counts(cfg, COUNT_SETTING.d) == (total, active)
    assert capacity.forward_macs(cfg, COUNT_SETTING) == macs
    assert capacity.step_flops(cfg, COUNT_SETTING) == 6 * macs * 200  # 2 FLOPs per MAC x (1 fwd + 2 bwd) x n
    assert matmul_flops_of_forward(cfg, COUNT_SETTING) == 2 * macs  # torch counts 2 FLOPs per multiply-add
    short = cfg.replace(T=1) if isinstance(cfg, mot.SingleConfig) else cfg.replace(T1=1, T2=1, T=2)
    train = mot.train_single if isinstance(cfg, mot.SingleConfig) else mot.train_mot
    assert trainable_entries(train(COUNT_SETTING, short, [0], progress=False)) == total


# ----------------------------------------------------------------------------- 4. validation
@pytest.mark.parametrize("kwargs,match", [
    (dict(J=0), r"^J=0 is out of range"),
    (dict(J=1.5), r"^J=1\.5 has the wrong type"),
    (dict(J=True), r"^J=True has the wrong type"),
    (dict(shared_attention="yes"), r"^shared_attention='yes' has the wrong type"),
    (dict(shared_attention=True, attention=False), r"^shared_attention=True .*attention=False"),
    (dict(schedule="two_stage"), r"^schedule='two_stage' is not allowed"),
    (dict(schedule="I_joint", T1=501, T=500), r"^T1=501 is out of range"),
    (dict(schedule="joint_III", T2=501, T=500), r"^T2=501 is out of range"),
])
def test_new_parameters_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mot.TrainConfig(**kwargs)


def test_new_parameters_accepted_at_the_edges():
    """The neighbours of the rejected values are allowed (the errors above are not spurious)."""
    mot.TrainConfig(J=1)
    mot.TrainConfig(J=2, shared_attention=True)
    mot.TrainConfig(schedule="I_joint", T1=500, T2=900, T=500)   # T2 unused by I_joint
    mot.TrainConfig(schedule="joint_III", T1=900, T2=500, T=500)  # T1 unused by joint_III


@pytest.mark.parametrize("fn", [lambda c: capacity.param_counts(c, 12), lambda c: capacity.forward_macs(c, TINY),
                                lambda c: capacity.step_flops(c, TINY)], ids=["param_counts", "forward_macs",
                                                                              "step_flops"])
def test_capacity_rejects_non_config(fn):
    with pytest.raises(ValueError, match=r"^cfg=.*must be a TrainConfig or a SingleConfig"):
        fn({"M": 3})


# ----------------------------------------------------------------------------- 5. stages
def stage_by_step(run: mot.Run) -> dict:
    rows = run.rows("test_loss")
    return dict(zip(rows.step, rows.stage))


def initial(cfg: mot.TrainConfig, name: str) -> torch.Tensor:
    """Seed 0's initial W or W_KQ."""
    gen = mot.data.seed_streams(0)[1]
    return models.init_mot(1, cfg.M, TINY.d, cfg.sigma0, [gen], cfg.J, cfg.shared_attention)[name]


def test_two_stage_schedules_label_and_freeze():
    """I_joint: Stage I to T1 (W_KQ frozen), then joint; joint_III: joint to T2, then Stage III (W_KQ frozen)."""
    c1 = CFG.replace(schedule="I_joint", T1=6, T=12)
    r1 = mot.train_mot(TINY, c1, [0], progress=False, snapshot_at=(6,))
    assert stage_by_step(r1) == {0: "I", 4: "I", 6: "I", 8: "joint", 12: "joint"}
    assert torch.equal(r1.snapshots[6]["WKQ"], initial(c1, "WKQ"))
    assert not torch.equal(r1.snapshots[6]["W"], initial(c1, "W"))
    assert not torch.equal(r1.params["WKQ"], r1.snapshots[6]["WKQ"])

    c2 = CFG.replace(schedule="joint_III", T2=6, T=12)
    r2 = mot.train_mot(TINY, c2, [0], progress=False, snapshot_at=(6,))
    assert stage_by_step(r2) == {0: "joint", 4: "joint", 6: "joint", 8: "III", 12: "III"}
    assert not torch.equal(r2.snapshots[6]["WKQ"], initial(c2, "WKQ"))
    assert torch.equal(r2.params["WKQ"], r2.snapshots[6]["WKQ"])
    assert not torch.equal(r2.params["W"], r2.snapshots[6]["W"])


def test_explore_agree():
    """1 at every recorded step without exploration; a share in [0, 1], and below 1 somewhere, with lam = 1."""
    for lam in (0.0, 1.0):
        run = mot.train_mot(TINY, CFG.replace(lam=lam), [0, 1], progress=False)
        agree = run.scalar("explore_agree")
        assert sorted(agree.index) == [4, 6, 8, 9, 12] and list(agree.columns) == [0, 1]
        v = agree.to_numpy()
        if lam == 0:
            assert (v == 1.0).all()
        else:
            assert ((v >= 0) & (v <= 1)).all() and v.min() < 1


# ----------------------------------------------------------------------------- 6. J=1, per-expert attention
@pytest.fixture(scope="module")
def engine_before(tmp_path_factory):
    """mot_lib as it was at ENGINE_BEFORE, imported as a separate package (read from git, nothing changed)."""
    try:
        tar = subprocess.run(["git", "-C", str(REPO), "archive", ENGINE_BEFORE, "mot_lib"],
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"git or commit {ENGINE_BEFORE[:7]} not available")
    root = tmp_path_factory.mktemp("engine_before")
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(root, filter="data")
    (root / "mot_lib").rename(root / "mot_lib_before")
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("mot_lib_before")
    finally:
        sys.path.remove(str(root))
        for k in [k for k in sys.modules if k.split(".")[0] == "mot_lib_before"]:
            del sys.modules[k]


@pytest.mark.parametrize("changes", [{}, dict(attention=False), dict(schedule="joint")],
                         ids=["three_stage", "attention-free", "joint"])
def test_one_neuron_per_expert_attention_gives_the_old_numbers(engine_before, changes):
    cfg = CFG.replace(**changes)
    explicit = cfg.replace(J=1, shared_attention=False)
    new = mot.train_mot(TINY, explicit, [2], progress=False)
    pd.testing.assert_frame_equal(new.history, mot.train_mot(TINY, cfg, [2], progress=False).history,
                                  check_exact=True)
    old_cfg = engine_before.TrainConfig(**{k: v for k, v in cfg.as_dict().items()
                                           if k not in ("J", "shared_attention", "lam3")})
    old = engine_before.train_mot(engine_before.Setting(**TINY.as_dict()), old_cfg, [2], progress=False)
    # the engine's autograd path gives the old numbers bit for bit; its closed-form passes agree to rounding
    graph = mot.train_mot(TINY, explicit, [2], progress=False, gradients="autograd")
    h = graph.history[graph.history.quantity != "explore_agree"].reset_index(drop=True)
    pd.testing.assert_frame_equal(h, old.history, check_exact=True)
    for k in ("W", "WKQ", "theta"):
        assert torch.equal(graph.params[k], old.params[k]), k
        assert torch.allclose(new.params[k], old.params[k], rtol=1e-10, atol=1e-14), k

"""The predecessor MoE experiment's definitions (Chen et al. 2022), pinned at a small size."""
import math

import numpy as np
import pytest
import torch

import mot_lib as mot
from mot_lib.experiments import predecessor as pr
from mot_lib.experiments import predecessor_table as pt
from mot_lib.engine.config import PredecessorConfig

SMALL = pt.setting(1, n_train=200, n_test=200)


@pytest.fixture(scope="module")
def data():
    return mot.make_dataset(SMALL, [0, 1])


def _amplitudes(data, s=0):
    """Per-sample (alpha, beta, gamma) read back from the patches (projections on the signals, over scale)."""
    sp, C, V, k = data.train, data.C[s], data.V[s], data.setting.scale
    X, n = sp.X[s], torch.arange(sp.n)
    alpha = (X @ V.T)[n, sp.label_pos[s], sp.cls[s]] * sp.y[s] / k
    beta = (X @ C.T)[n, :, sp.cls[s]].max(-1).values / k
    gamma = (X @ V.T)[n, :, sp.other[s]].abs().max(-1).values / k
    return alpha, beta, gamma


def test_amplitude_ranges_per_sample(data):
    """alpha ~ U(0.5, 2), beta ~ U(1, 2), gamma ~ U(0.5, 3) (setting 1), drawn per sample."""
    for got, (lo, hi) in zip(_amplitudes(data), [(0.5, 2.0), (1.0, 2.0), (0.5, 3.0)]):
        assert got.min() >= lo - 1e-9 and got.max() <= hi + 1e-9
        # spread over the whole range (200 uniform draws: min and max within 5% of the range of the ends)
        assert got.min() < lo + 0.05 * (hi - lo) and got.max() > hi - 0.05 * (hi - lo)
        assert abs(got.mean().item() - (lo + hi) / 2) < 0.1 * (hi - lo)
    # settings 3 and 4 narrow gamma to U(0.5, 2)
    g3 = _amplitudes(mot.make_dataset(pt.setting(3, 400, 10), [0]))[2]
    assert g3.max() <= 2.0 + 1e-9 and g3.max() > 1.9


def test_data_scaled_by_ten_and_isotropic_noise(data):
    one = mot.make_dataset(SMALL.replace(scale=1.0), [0, 1])
    assert torch.allclose(data.train.X, 10 * one.train.X, rtol=0, atol=1e-12)
    # the noise patch (the one patch outside the signal span) is isotropic: E|xi|^2 = sigma_p^2 (times 10^2)
    X = one.train.X[0]
    P = one.signals[0]
    resid = X - (X @ P.T) @ P
    noise = resid.norm(dim=-1).max(-1).values   # the noise patch's part off the signals
    assert abs((noise ** 2).mean().item() / (1.0 * (50 - 8) / 50) - 1) < 0.1
    assert ((X @ P.T).abs().sum(-1) > 1e-6).all()   # not projected off the signals: every patch touches them


def test_noisy_gate_value_multiplies_the_output(data):
    """F = (h_m* + r_m*) f_m*: the top noisy router logit, not a softmax probability."""
    cfg = PredecessorConfig(dtype="float64")
    g = torch.Generator().manual_seed(3)
    W, b = pr.conv_init(2, cfg.M, cfg.J, 50, 0.3, [g, g], torch.float64)
    theta = torch.randn(2, cfg.M, 50, generator=g, dtype=torch.float64) * 0.01
    p = {"W": W, "b": b, "theta": theta}
    X, Xsum = data.train.X, data.train.xsum
    gens = [torch.Generator().manual_seed(11), torch.Generator().manual_seed(12)]
    state = [x.get_state() for x in gens]
    F, idx, _ = pr.forward(p, X, Xsum, cfg, gens)
    r = torch.stack([torch.rand(X.shape[1], cfg.M, generator=torch.Generator().set_state(st), dtype=torch.float64)
                     for st in state])
    noisy = torch.einsum("snd,smd->snm", Xsum, theta) + r
    gval, m = noisy.max(-1)
    assert torch.equal(idx, m)
    # the routed expert written out neuron by neuron: first J neurons vote for y = -1, last J for y = +1
    s, i = 1, 7
    Wm, bm = W[s, m[s, i]], b[s, m[s, i]]
    z = (X[s, i] @ Wm.T + bm) ** 3                         # (L, 2J)
    f = z[:, cfg.J:].sum() - z[:, :cfg.J].sum()
    assert torch.allclose(F[s, i], gval[s, i] * f, rtol=1e-10)
    assert not torch.allclose(F[s, i], torch.softmax(noisy[s, i], -1).max() * f, rtol=1e-3)


def test_double_softmax_loss_floor_and_definition():
    assert abs(pr.LOSS_FLOOR - 0.3133) < 5e-5
    m = torch.tensor([-50.0, -1.0, 0.0, 2.0, 50.0], dtype=torch.float64)
    loss = pr.loss_fn(m, "double_softmax")
    assert (loss >= pr.LOSS_FLOOR - 1e-12).all() and abs(loss[-1].item() - pr.LOSS_FLOOR) < 1e-12
    assert abs(loss[2].item() - math.log(2)) < 1e-12
    # the public code: CrossEntropyLoss(softmax(gate * logits)) on two logits, labels 0 (y=-1) / 1 (y=+1)
    g = torch.Generator().manual_seed(0)
    z, gate = torch.randn(64, 2, generator=g, dtype=torch.float64) * 3, torch.rand(64, 1, generator=g, dtype=torch.float64) * 4
    lab = torch.randint(2, (64,), generator=g)
    ref = torch.nn.functional.cross_entropy(torch.softmax(gate * z, 1), lab, reduction="none")
    y = lab.to(torch.float64) * 2 - 1
    mine = pr.loss_fn(y * gate[:, 0] * (z[:, 1] - z[:, 0]), "double_softmax")
    assert torch.allclose(mine, ref, rtol=1e-12)
    # the logistic loss is the single-softmax cross-entropy
    ref1 = torch.nn.functional.cross_entropy(gate * z, lab, reduction="none")
    assert torch.allclose(pr.loss_fn(y * gate[:, 0] * (z[:, 1] - z[:, 0]), "logistic"), ref1, rtol=1e-12)


def test_early_stop_rule(data):
    """A seed stops at the first step whose loss is not a new minimum and either rises above the minimum by
    stop_rise or is at most stop_floor; nothing before it met the rule; no update at the stopping step."""
    cfg = PredecessorConfig(T=150, record_every=50, stop_floor=0.6)   # a high floor, so that it stops here
    run = pr.train_predecessor(SMALL, cfg, [0], data=mot.make_dataset(SMALL, [0]), progress=False)
    L = run.scalar("train_loss")[0].to_numpy()
    stop = len(L) - 1
    upd = int(run.final("updates")[0])
    assert upd == stop < cfg.T - 1
    best = np.minimum.accumulate(L)
    def met(t):
        return L[t] > best[t - 1] and (L[t] > best[t - 1] + cfg.stop_rise or L[t] <= cfg.stop_floor)
    assert met(stop) and not any(met(t) for t in range(1, stop))
    # with early_stop=False the same run goes the whole way
    full = pr.train_predecessor(SMALL, cfg.replace(early_stop=False, T=60), [0], progress=False)
    assert int(full.final("updates")[0]) == 60


def test_batched_equals_per_seed_and_attention_free_start(data):
    cfg = PredecessorConfig(T=30, record_every=10, dtype="float64")
    both = pr.train_predecessor(SMALL, cfg, [0, 1], data=data, progress=False)
    one = pr.train_predecessor(SMALL, cfg, [1], progress=False)
    for k in ("W", "b", "theta"):
        assert torch.allclose(both.params[k][1], one.params[k][0], rtol=1e-9, atol=1e-12), k
    # MoT experts start at W_KQ = 0: until Stage II they are the predecessor's experts, step for step
    mot_run = pr.train_predecessor(SMALL, cfg.replace(attention=True, T1=30, T2=30), [0, 1], data=data, progress=False)
    assert torch.equal(mot_run.params["W"], both.params["W"]) and torch.count_nonzero(mot_run.params["WKQ"]) == 0
    # Stage II moves W_KQ and leaves the neurons alone
    st2 = pr.train_predecessor(SMALL, cfg.replace(attention=True, T1=20, T2=30), [0], progress=False)
    st1 = pr.train_predecessor(SMALL, cfg.replace(T=20), [0], progress=False)
    assert torch.equal(st2.params["W"], st1.params["W"]) and torch.count_nonzero(st2.params["WKQ"]) > 0


def test_entropy_definition():
    """The predecessor's entropy: load-weighted entropy of the clusters inside each expert."""
    cls = torch.tensor([[0, 0, 1, 1, 2, 3]])
    idx = torch.tensor([[0, 0, 1, 1, 2, 2]])      # expert 2 mixes clusters 2 and 3 half and half
    e = mot.metrics.expert_cluster_entropy(idx, cls, 4, 3)
    assert abs(e.item() - (2 / 6) * math.log(2)) < 1e-12
    pure = mot.metrics.expert_cluster_entropy(torch.tensor([[0, 0, 1, 1, 2, 3]]), cls, 4, 4)
    assert pure.item() == 0.0


@pytest.mark.parametrize("field,value", [("M", 0), ("J", 0), ("loss", "mse"), ("opt", "sgd"), ("T", 0),
                                         ("stop_rise", 0.0), ("stop_after", -2), ("dtype", "float16"),
                                         ("init_scale", 0.0), ("T2", 10_000), ("activation", "relu")])
def test_bad_option_names_the_parameter(field, value):
    with pytest.raises(ValueError, match=rf"^{field}="):
        PredecessorConfig(**{field: value})


def test_bad_combinations_and_ranges_name_the_parameter():
    with pytest.raises(ValueError, match=r"^attention=.*model='single'"):
        PredecessorConfig(model="single", attention=True)
    with pytest.raises(ValueError, match=r"^gamma_range=.*lo <= hi"):
        mot.Setting(gamma_range=(3.0, 0.5))
    with pytest.raises(ValueError, match=r"^setting=5"):
        pt.setting(5)
    with pytest.raises(ValueError, match=r"^model="):
        pt.baseline_config("resnet")


def test_cli_jobs_cover_every_seed_once_in_chunks():
    whole = pt.jobs_for([1, 2], [1], [1], range(10), n=100)
    split = pt.jobs_for([1, 2], [1], [1], range(10), n=100, chunk=3)
    key = lambda j: (j["settings"], j["baselines"], j["attention_settings"], j.get("losses"))  # noqa: E731
    cover = lambda jobs: sorted((key(j), s) for j in jobs for s in j["seeds"])  # noqa: E731
    assert cover(split) == cover(whole) and len(cover(whole)) == len(set(cover(whole)))
    assert len(split) == 4 * len(whole) and max(len(j["seeds"]) for j in split) == 3
    assert [j["job"] for j in split] == list(range(len(split)))
    assert split[0]["cost"] >= split[-1]["cost"]
    with pytest.raises(ValueError, match="chunk"):
        pt.jobs_for([1], [1], [1], range(4), n=100, chunk=-1)

"""Sampler statistics and signal geometry."""
import pytest
import torch

import mot_lib as mot


@pytest.fixture(scope="module")
def data():
    return mot.make_dataset(mot.Setting(N=4, d=24, L=8, n_train=4000, n_test=100, sigma_xi=1.5), [0, 1])


def test_signals_orthonormal(data):
    for s in range(2):
        G = data.signals[s] @ data.signals[s].T
        assert torch.allclose(G, torch.eye(8, dtype=G.dtype), atol=1e-12)
        # a rotation, not basis vectors: no signal is axis-aligned
        assert data.signals[s].abs().max() < 0.99


def test_non_orthogonal_signals():
    d = mot.make_dataset(mot.Setting(rho=0.3, n_train=10, n_test=10), [0])
    G = d.V[0] @ d.V[0].T
    off = G[~torch.eye(4, dtype=bool)]
    assert torch.allclose(off, torch.full_like(off, 0.3), atol=1e-12)
    assert torch.allclose(torch.diagonal(G), torch.ones(4, dtype=G.dtype))


def test_each_sample_holds_class_label_distractor(data):
    st, sp = data.setting, data.train
    X, C, V = sp.X[0], data.C[0], data.V[0]
    projC, projV = X @ C.T, X @ V.T        # (n,L,N)
    n_idx = torch.arange(sp.n)
    cls, other, y = sp.cls[0], sp.other[0], sp.y[0]
    assert (cls != other).all()
    # class token: exactly one token with projection beta on c_cls
    assert torch.allclose((projC[n_idx, :, cls] - st.beta).abs().min(-1).values, torch.zeros(sp.n, dtype=X.dtype), atol=1e-12)
    # label token sits at label_pos with projection alpha*y on v_cls
    lab = projV[n_idx, sp.label_pos[0], cls]
    assert torch.allclose(lab, st.alpha * y, atol=1e-12)
    # distractor: |projection| gamma on v_other somewhere
    assert torch.allclose(projV[n_idx, :, other].abs().max(-1).values, torch.full((sp.n,), st.gamma, dtype=X.dtype), atol=1e-12)


def test_balance_and_order(data):
    sp = data.train
    counts = torch.bincount(sp.cls[0], minlength=4).double() / sp.n
    assert (counts - 0.25).abs().max() < 0.03
    assert abs(sp.y[0].mean()) < 0.05
    # random token order: the label token sits in every position
    assert torch.bincount(sp.label_pos[0], minlength=8).min() > sp.n / 8 * 0.7


def test_noise_statistics(data):
    st = data.setting
    noise = data.train.X[0][:, :, :]  # noise tokens: those orthogonal to every signal
    P = data.signals[0]
    proj = (noise @ P.T).abs().sum(-1)
    tok = noise[proj < 1e-9]
    assert tok.shape[0] == data.train.n * (st.L - 3)
    # N(0, sigma^2/d I) projected off the 2N signal dims: E|xi|^2 = sigma^2 (d - 2N) / d
    expect = st.sigma_xi ** 2 * (st.d - 2 * st.N) / st.d
    assert abs(tok.pow(2).sum(-1).mean().item() / expect - 1) < 0.02


def test_isotropic_noise_touches_signals():
    d = mot.make_dataset(mot.Setting(noise_orthogonal=False, sigma_xi=2.0, n_train=500, n_test=10), [3])
    X = d.train.X[0]
    # with isotropic noise no token is exactly orthogonal to all signals
    assert ((X @ d.signals[0].T).abs().sum(-1) > 1e-6).all()


def test_seeds_independent_and_reproducible():
    st = mot.Setting(n_train=50, n_test=20)
    a, b = mot.make_dataset(st, [5, 6]), mot.make_dataset(st, [6])
    assert torch.equal(a.train.X[1], b.train.X[0])
    assert not torch.equal(a.train.X[0], a.train.X[1])

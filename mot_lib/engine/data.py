"""The synthetic data model: signals, sampler, datasets batched over seeds.

Used by every chapter.  Each seed owns its signals, its training set and its
fresh test sample (drawn from independent random streams), so a run over seeds
[s1, s2] equals the runs over [s1] and [s2] stacked.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import Setting, check_seeds

DTYPE = torch.float64  # losses reach 1e-10; float32 softplus flattens near 1e-8 and fakes a floor


def seed_streams(seed: int, n: int = 4) -> list[torch.Generator]:
    """Independent torch generators for one seed: data, init, exploration, spare."""
    children = np.random.SeedSequence(seed).spawn(n)
    return [torch.Generator().manual_seed(int(c.generate_state(1, dtype=np.uint64)[0] >> 1))
            for c in children]


def make_signals(setting: Setting, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class signals C (N,d), classification signals V (N,d), and an orthonormal basis Q (d,d).

    The 2N signals are the first 2N columns of a seeded random rotation Q, so
    nothing is axis-aligned by accident.  With rho > 0 the v_n share a common
    direction u = Q[:, 2N]: v_n = sqrt(1-rho) e_n + sqrt(rho) u, so <v_n, v_m> = rho.
    """
    N, d = setting.N, setting.d
    g = torch.randn(d, d, generator=gen, dtype=DTYPE)
    Q, R = torch.linalg.qr(g)
    Q = Q * torch.sign(torch.diagonal(R))  # unique (Haar) rotation
    C = Q[:, :N].T.contiguous()
    V = Q[:, N:2 * N].T.contiguous()
    if setting.rho > 0:
        u = Q[:, 2 * N]
        V = (1 - setting.rho) ** 0.5 * V + setting.rho ** 0.5 * u
    return C, V, Q


@dataclass
class Split:
    """One set of samples for S seeds.

    X (S,n,L,d); y (S,n) in {+1,-1}; cls (S,n) the class n; other (S,n) the
    distractor's class n'; label_pos (S,n) where the label token sits in X.
    """
    X: torch.Tensor
    y: torch.Tensor
    cls: torch.Tensor
    other: torch.Tensor
    label_pos: torch.Tensor

    def __post_init__(self):
        self.xsum = self.X.sum(2)  # (S,n,d): what the router reads, computed once

    @property
    def n(self) -> int:
        return self.X.shape[1]


def _amplitudes(setting: Setting, name: str, n: int, gen: torch.Generator):
    """The fixed amplitude (a float), or per-sample amplitudes U(lo, hi) as an (n, 1) column when the
    setting gives a range.  Nothing is drawn for a fixed amplitude, so the default setting's random
    stream, and hence its data, stay as they were."""
    r = getattr(setting, f"{name}_range")
    if r is None:
        return getattr(setting, name)
    lo, hi = r
    return (lo + (hi - lo) * torch.rand(n, generator=gen, dtype=DTYPE))[:, None]


def _sample_one(setting: Setting, C, V, Q, n: int, gen: torch.Generator) -> tuple:
    N, d, L = setting.N, setting.d, setting.L
    cls = torch.randint(N, (n,), generator=gen)
    y = torch.randint(2, (n,), generator=gen).to(DTYPE) * 2 - 1
    other = (cls + torch.randint(1, N, (n,), generator=gen)) % N  # uniform over n' != n
    eps = torch.randint(2, (n,), generator=gen).to(DTYPE) * 2 - 1
    noise = torch.randn(n, L - 3, d, generator=gen, dtype=DTYPE) * (setting.sigma_xi / d ** 0.5)
    if setting.noise_orthogonal:
        k = 2 * N + (1 if setting.rho > 0 else 0)
        P = Q[:, :k]
        noise = noise - (noise @ P) @ P.T
    alpha, beta, gamma = (_amplitudes(setting, name, n, gen) for name in ("alpha", "beta", "gamma"))
    tokens = torch.cat([
        (beta * C[cls])[:, None],
        (alpha * y[:, None] * V[cls])[:, None],
        (gamma * eps[:, None] * V[other])[:, None],
        noise,
    ], dim=1)
    order = torch.argsort(torch.rand(n, L, generator=gen), dim=1)  # random token order per sample
    X = torch.gather(tokens, 1, order[:, :, None].expand(n, L, d))
    if setting.scale != 1.0:
        X = X * setting.scale
    label_pos = torch.argmax((order == 1).to(torch.int64), dim=1)
    return X, y, cls, other, label_pos


@dataclass
class Dataset:
    """Signals, training set and fresh test sample for a list of seeds (leading dim S)."""
    setting: Setting
    seeds: list
    C: torch.Tensor      # (S,N,d)
    V: torch.Tensor      # (S,N,d)
    train: Split
    test: Split

    @property
    def signals(self) -> torch.Tensor:
        """The 2N signal vectors [c_1..c_N, v_1..v_N], shape (S,2N,d)."""
        return torch.cat([self.C, self.V], dim=1)

    def signal_names(self) -> list[str]:
        N = self.setting.N
        return [f"c{n + 1}" for n in range(N)] + [f"v{n + 1}" for n in range(N)]


def make_dataset(setting: Setting, seeds) -> Dataset:
    """Draw the signals, ``n_train`` training and ``n_test`` fresh test samples for each seed."""
    seeds = check_seeds(seeds)
    parts = []
    for s in seeds:
        gen = seed_streams(s)[0]
        C, V, Q = make_signals(setting, gen)
        tr = _sample_one(setting, C, V, Q, setting.n_train, gen)
        te = _sample_one(setting, C, V, Q, setting.n_test, gen)
        parts.append((C, V, tr, te))
    stack = lambda i: torch.stack([p[i] for p in parts])  # noqa: E731
    split = lambda j: Split(*[torch.stack([p[j][k] for p in parts]) for k in range(5)])  # noqa: E731
    return Dataset(setting, seeds, stack(0), stack(1), split(2), split(3))

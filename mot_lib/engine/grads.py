"""Closed-form forward and backward passes of every model the training loops train, over the batched tensors
(seeds x experts/heads x samples x tokens), with no autograd graph.

The models are small (d = 16, L = 8, one cubic neuron per expert), so a step is many tiny products, and on a
CPU its time went to autograd's bookkeeping and to allocating large temporaries (a fresh 64 MB tensor costs
four times the arithmetic done in it: the pages are faulted in anew).  Here each step is written out once:

* the MoT (and its attention-free, shared-attention and J-neuron variants): the routed expert's output
  ``F = pi_{m*} sum_k a_k phi(<W^(m*), x_k>)`` and the gradients of the mean logistic loss in W (per expert,
  accumulated by one product with the routing's one-hot pattern), in Theta (the gate's softmax) and, while
  attention trains, in W_KQ (through the softmax rows of the routed expert's scores);
* the single multi-head transformer: ``F = sum_{h,q,j} sigma(sum_k A^(h)_qk <W^(h,j), x_k>)`` and its
  gradients in W and W_KQ, computed over blocks of samples (``SAMPLE_BLOCK_ELEMS``) so that its largest
  temporaries (samples x heads x tokens x d) stay in the cache.

Summation orders depend only on the shapes (the block sizes are computed from them), so a run gives the same
numbers on every machine with the pinned numerics (``numerics``).  ``tests/test_grads.py`` compares every
gradient with autograd's through ``models.mot_forward`` and ``models.single_forward`` to 1e-10, for every
model family, schedule stage, activation and pooling.
"""
from __future__ import annotations

import torch

from .models import gather_experts, live_attention, output_signs, row_softmax

#: the number of float64 elements of the single transformer's largest per-block temporary (samples x heads x
#: tokens x d): 4 MiB, the fastest of 2^16..2^21 measured on a 2-core EPYC (its L2: 1 MiB per core).  Fixed, so that the blocks, hence the
#: summation order of the gradients, do not depend on the machine.
SAMPLE_BLOCK_ELEMS = 1 << 19


def sigma_and_slope(name: str, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sigma(z) and sigma'(z) for the activations of ``models.activation`` (relu'(0) = 0, as autograd)."""
    if name == "cubic":
        z2 = z * z
        return z2 * z, 3.0 * z2
    if name == "linear":
        return z, torch.ones_like(z)
    if name == "relu":
        return torch.relu(z), (z > 0).to(z.dtype)
    raise ValueError(f"activation={name!r} is not allowed; choose one of ['cubic', 'linear', 'relu']")


def loss_slope(y: torch.Tensor, F: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-seed mean logistic loss (S,) of margins y F (S,n), and its derivative in F (S,n)."""
    m = y * F
    loss = torch.nn.functional.softplus(-m).mean(-1)
    return loss, -y * torch.sigmoid(-m) / F.shape[-1]


def _pool_scale(query_pool: str, L: int) -> float:
    return 1.0 if query_pool == "sum" else 1.0 / L


def _expert_accumulate(coef: torch.Tensor, idx: torch.Tensor, M: int, X: torch.Tensor) -> torch.Tensor:
    """sum over the samples i routed to expert m (idx) and their tokens k of coef[s,i,k(,j)] x_ik, per seed and
    expert: (S,M,d) from coef (S,n,L), (S,M,J,d) from coef (S,n,L,J).  Per-sample sums over tokens (a
    broadcast product: 8 x 16 matrix-vector products batched by matmul cost twice as much), then ``_expert_sum``."""
    if coef.dim() == 3:
        return _expert_sum((coef[..., None] * X).sum(2), idx, M)
    U = torch.stack([(coef[..., j, None] * X).sum(2) for j in range(coef.shape[-1])], 2)   # (S,n,J,d)
    return _expert_sum(U, idx, M)


def _expert_sum(Y: torch.Tensor, idx: torch.Tensor, M: int) -> torch.Tensor:
    """sum over the samples routed to each expert of per-sample Y (S,n,...): (S,M,...), by index_add in sample
    order (deterministic on CPU)."""
    S, n = idx.shape
    rows = (idx + M * torch.arange(S)[:, None]).reshape(-1)
    out = torch.zeros(S * M, *Y.shape[2:], dtype=Y.dtype)
    out.index_add_(0, rows, Y.reshape(S * n, *Y.shape[2:]))
    return out.view(S, M, *Y.shape[2:])


def mot_step(p: dict, X: torch.Tensor, xsum: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, h: torch.Tensor,
             a: torch.Tensor | None, *, activation: str, query_pool: str, shared: bool,
             wrt: tuple) -> tuple[torch.Tensor, dict]:
    """The per-seed mean logistic loss (S,) of the MoT on (X, y) under routing ``idx`` and gate scores ``h``
    (S,n,M), and its gradients in the parameters named in ``wrt`` (among "W", "WKQ", "theta").

    ``a``: the routed experts' token weights (S,n,L) when W_KQ does not train (cached, or uniform for the
    attention-free MoE); None computes them live from ``p["WKQ"]`` (then "WKQ" may be in ``wrt``)."""
    W, theta = p["W"], p["theta"]
    S, n, L, d = X.shape
    M = theta.shape[1]
    A = None
    if a is None:
        A, a, groups = live_attention(X, p["WKQ"], idx, shared, query_pool)
    # routed expert's pre-activations z (S,n,L) for J = 1, (S,n,L,J) for J-neuron experts
    if W.dim() == 3:
        Wsel = gather_experts(W, idx)                                                   # (S,n,d)
        z = torch.matmul(X, Wsel[..., None])[..., 0]
        phi, dphi = sigma_and_slope(activation, z)
        signs = None
    else:
        J = W.shape[2]
        z = torch.matmul(X, gather_experts(W, idx).transpose(-1, -2))                    # (S,n,L,J)
        s, ds = sigma_and_slope(activation, z)
        signs = output_signs(J, W.dtype)
        phi, dphi = s @ signs, ds * signs
    f = (a * phi).sum(-1)
    hmax = h.amax(-1, keepdim=True)
    e = torch.exp(h - hmax)
    probs = e / e.sum(-1, keepdim=True)                                                 # (S,n,M)
    pi = torch.gather(probs, -1, idx[..., None])[..., 0]
    F = pi * f
    loss, gF = loss_slope(y, F)
    grads = {}
    gf = gF * pi                                                                        # dloss/df (S,n)
    if "W" in wrt:
        coef = (gf[..., None] * a)
        coef = coef * dphi if signs is None else coef[..., None] * dphi
        grads["W"] = _expert_accumulate(coef, idx, M, X)
    if "theta" in wrt:
        gh = -(gF * F)[..., None] * probs                                               # dF/dh_j = F (1{j=m*} - p_j)
        gh.scatter_add_(-1, idx[..., None], (gF * F)[..., None])
        grads["theta"] = torch.bmm(gh.transpose(1, 2), xsum)
    if "WKQ" in wrt:
        if A is None:
            raise ValueError("the W_KQ gradient needs live attention (a=None)")
        ga = gf[..., None] * phi * _pool_scale(query_pool, L)                          # dloss/dA_qk = ga_k
        if not shared:
            ga = groups.sort(ga)                                                        # (S*n, L), as A
        r = (A * ga[..., None, :]).sum(-1, keepdim=True)
        dS = A * (ga[..., None, :] - r)                                                 # dloss/dscores
        if shared:
            T = torch.matmul(dS, X)                                                     # sum_k dS_qk x_k
            grads["WKQ"] = torch.bmm(X.reshape(S, n * L, d).transpose(1, 2), T.reshape(S, n * L, d))[:, None]
        else:
            grads["WKQ"] = groups.outer(torch.bmm(dS, groups.X), M)
    return loss, grads


def _blocks(n: int, per_sample: int) -> list[slice]:
    """Sample blocks of at most SAMPLE_BLOCK_ELEMS // per_sample samples (at least one)."""
    B = max(1, SAMPLE_BLOCK_ELEMS // max(1, per_sample))
    return [slice(i, min(n, i + B)) for i in range(0, n, B)]


def single_step(p: dict, X: torch.Tensor, y: torch.Tensor, *, activation: str,
                grads: bool = True, signs: torch.Tensor | None = None) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """The per-seed mean logistic loss (S,) of the single H-head transformer on (X, y), (``grads``) its
    gradients in W (S,H,J,d) and W_KQ (S,H,d,d), and its outputs F (S,n); computed over blocks of samples.
    ``signs``: the heads' output signs (``models.head_signs``; None: every head adds)."""
    W, WKQ = p["W"], p["WKQ"]
    S, n, L, d = X.shape
    H, J = W.shape[1], W.shape[2]
    KQ = WKQ.permute(0, 2, 1, 3).reshape(S, d, H * d)                                   # [s, e, (h, f)]
    Wt = W.reshape(S, H * J, d).transpose(1, 2)                                         # [s, e, (h, j)]
    F = torch.empty(S, n, dtype=X.dtype)
    gW = torch.zeros(S, H * J, d, dtype=X.dtype) if grads else None
    gKQ = torch.zeros(S, d, H * d, dtype=X.dtype) if grads else None
    for blk in _blocks(n, S * H * L * d):
        Xb = X[:, blk]
        B = Xb.shape[1]
        Xf = Xb.reshape(S, B * L, d)
        Xs = Xb.reshape(S * B, L, d)
        XW = torch.bmm(Xf, KQ).view(S * B, L * H, d)                                    # rows (q, h)
        A = row_softmax(torch.bmm(XW, Xs.transpose(1, 2))).view(S * B, L, H, L)         # [b, q, h, k]
        u = torch.bmm(Xf, Wt).view(S * B, L, H, J)                                      # [b, k, h, j]
        # the contractions over keys and neurons (J is small) as broadcast products in the block's layout: a
        # batched product of 8 x 8 matrices per (sample, head) cost more in overhead than in arithmetic
        # the broadcast operands are made contiguous first (the products then run on whole rows: 16% faster on the
        # two-headed comparator's step, the same numbers)
        uj = [u[..., j].transpose(1, 2).contiguous()[:, None] for j in range(J)]        # [b, 1, h, k]
        z = torch.stack([(A * uj[j]).sum(-1) for j in range(J)], -1)                    # [b, q, h, j]
        sz, dz = sigma_and_slope(activation, z)
        if signs is not None:                                                           # symmetric heads
            sz, dz = sz * signs[:, None], dz * signs[:, None]
        Fb = sz.sum(dim=(1, 2, 3)).view(S, B)
        F[:, blk] = Fb
        if not grads:
            continue
        # dloss/dF of a sample depends on its own F only: the block's backward runs while it is in the cache
        gF = -y[:, blk] * torch.sigmoid(-y[:, blk] * Fb) / n
        Gz = dz * gF.reshape(S * B, 1, 1, 1)                                            # dloss/dz [b, q, h, j]
        Gzj = [Gz[..., j, None].contiguous() for j in range(J)]                         # [b, q, h, 1]
        du = torch.stack([(A * Gzj[j]).sum(1) for j in range(J)], -1)                   # [b, h, k, j]
        gW.baddbmm_(du.permute(0, 2, 1, 3).reshape(S, B * L, H * J).transpose(1, 2), Xf)
        dA = Gzj[0] * uj[0]
        for j in range(1, J):
            dA += Gzj[j] * uj[j]                                                        # [b, q, h, k]
        dS = A * (dA - (A * dA).sum(-1, keepdim=True))
        T = torch.bmm(dS.view(S * B, L * H, L), Xs)                                     # [b, (q, h), e] = sum_k dS x_k
        gKQ.baddbmm_(Xf.transpose(1, 2), T.view(S, B * L, H * d))
    loss = torch.nn.functional.softplus(-y * F).mean(-1)
    if not grads:
        return loss, {}, F
    return loss, {"W": gW.view(S, H, J, d), "WKQ": gKQ.view(S, d, H, d).permute(0, 2, 1, 3).contiguous()}, F

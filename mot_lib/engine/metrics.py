"""Measured quantities: specialization, routing, gradient conflict, curvature.

Nothing here is assumed: specialty n_i* = argmax_n <W^(i), v_n> is read off the
weights, routing accuracy off the dispatch of a fresh sample.
"""
from __future__ import annotations

import torch

from .models import activation, eval_routing, logistic_loss


def alignments(W: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """<W^(i), v_n> (S,M,N)."""
    return torch.einsum("smd,snd->smn", W, V)


def specialty(W: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """n_i* = argmax_n <W^(i), v_n> (S,M)."""
    return alignments(W, V).argmax(-1)


def specialization_gap(W: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """<W^(i), v_{n_i*}> - max_{n != n_i*} <W^(i), v_n> (S,M): Proposition 1's gap."""
    top2 = alignments(W, V).topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


def dispatch_matrix(idx: torch.Tensor, cls: torch.Tensor, N: int, M: int) -> torch.Tensor:
    """D[s, n, m]: share of class-n samples routed to expert m (rows sum to 1)."""
    S = idx.shape[0]
    counts = torch.zeros(S, N, M, dtype=torch.float64)
    counts.view(S, -1).scatter_add_(1, cls * M + idx, torch.ones_like(idx, dtype=torch.float64))
    return counts / counts.sum(-1, keepdim=True).clamp_min(1)


def routing_accuracy(idx: torch.Tensor, cls: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
    """Share of samples sent to an expert whose specialty is their class (S,)."""
    return (torch.gather(spec, 1, idx) == cls).to(torch.float64).mean(-1)


def experts_used(idx: torch.Tensor, M: int, min_share: float = 0.01) -> torch.Tensor:
    """Number of experts that receive at least ``min_share`` of the samples (S,)."""
    S, n = idx.shape
    counts = torch.zeros(S, M, dtype=torch.float64).scatter_add_(1, idx, torch.ones(S, n, dtype=torch.float64))
    return (counts / n >= min_share).sum(-1).to(torch.float64)


def dispatch_entropy(D: torch.Tensor) -> torch.Tensor:
    """Mean over classes of the entropy (nats) of each class's dispatch row (S,): 0 = one expert per class."""
    p = D.clamp_min(1e-300)
    return -(D * p.log()).sum(-1).mean(-1)


def expert_cluster_entropy(idx: torch.Tensor, cls: torch.Tensor, N: int, M: int) -> torch.Tensor:
    """The predecessor's dispatch entropy (Chen et al. 2022, public code's ``entropy``) (S,):
    sum_m (n_m / n) H(cluster | expert m), the load-weighted entropy (nats) of the clusters each expert
    receives; 0 when no expert receives two clusters.  (``dispatch_entropy`` is the other way round: the
    entropy of the experts each class is sent to.)"""
    S = idx.shape[0]
    counts = torch.zeros(S, N, M, dtype=torch.float64)
    counts.view(S, -1).scatter_add_(1, cls * M + idx, torch.ones_like(idx, dtype=torch.float64))
    load = counts.sum(1, keepdim=True)                                   # (S,1,M)
    prob = counts / load.clamp_min(1)
    h = -(prob * prob.clamp_min(1e-300).log()).sum(1)                    # (S,M); 0 for an idle expert
    return (load[:, 0] / counts.sum((1, 2))[:, None] * h).sum(-1)


# ----------------------------------------------------------------------------- gradient conflict
def class_gradients(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, cls: torch.Tensor, N: int,
                    a: torch.Tensor | None = None, act: str = "cubic") -> torch.Tensor:
    """Gradient of each class's mean logistic loss of one expert wrt its FFN vector, (N,d).

    W (d,), X (n,L,d), y, cls (n,), a (n,L) token weights (default 1: W_KQ = 0).
    All samples of a class go through this one expert (used to show the conflict a
    shared expert faces, and its absence inside a specialist's own class).
    """
    sigma = activation(act)
    if a is None:
        a = torch.ones(X.shape[:2], dtype=X.dtype)
    Wg = W.detach().clone().requires_grad_(True)
    f = (a * sigma(X @ Wg)).sum(-1)
    losses = logistic_loss(y * f)
    grads = []
    for n in range(N):
        mask = cls == n
        if mask.sum() == 0:
            grads.append(torch.zeros_like(W))
            continue
        g, = torch.autograd.grad(losses[mask].mean(), Wg, retain_graph=True)
        grads.append(g)
    return torch.stack(grads)


def cosine_matrix(G: torch.Tensor) -> torch.Tensor:
    """Pairwise cosines of the rows of G."""
    Gn = G / G.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    return Gn @ Gn.T


# ----------------------------------------------------------------------------- curvature
def expert_hessian_min_eig(run, split: str = "train", subspace: str = "signals") -> torch.Tensor:
    """Smallest Hessian eigenvalue of each expert's Stage III loss in its own W (S,M).

    Expert i's loss: mean over the samples the (unperturbed) router sends to it of
    l(y pi_i f_i(X; W)), as a function of W^(i) alone.  subspace="signals"
    restricts the Hessian to span{c_n, v_n} (the directions the data moves W in);
    "full" uses all of R^d.  NaN for an expert that receives no sample.
    """
    data = run.data
    sp = data.train if split == "train" else data.test
    p = run.params
    sigma = activation(run.cfg.activation)
    idx, pi, a = eval_routing(run, sp)
    S, M = p["W"].shape[:2]
    out = torch.full((S, M), float("nan"), dtype=torch.float64)
    for s in range(S):
        basis = torch.linalg.qr(data.signals[s].T).Q if subspace == "signals" else None
        for m in range(M):
            mask = idx[s] == m
            if mask.sum() == 0:
                continue
            X, y, pim, am = sp.X[s][mask], sp.y[s][mask], pi[s][mask], a[s][mask]

            def loss(w):
                return logistic_loss(y * pim * (am * sigma(X @ w)).sum(-1)).mean()

            Hm = torch.func.hessian(loss)(p["W"][s, m])
            if basis is not None:
                Hm = basis.T @ Hm @ basis
            out[s, m] = torch.linalg.eigvalsh(Hm)[0]
    return out


def single_ffn_hessian(run, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Hessian of the single transformer's training loss in all its H*J FFN vectors (seed index s),
    attention held at its trained value, and the block basis that restricts each vector to
    span{c_n, v_n}: (H (HJd, HJd), B (HJd, HJ*2N)).  Shared by ``single_hessian_min_eig`` and the
    mechanism chapter's ``single_hessian_spectrum``."""
    from .models import single_forward

    if getattr(run.cfg, "signed_heads", False):
        raise ValueError("single_ffn_hessian covers the single transformer whose heads all add (signed_heads=False)")
    data, p = run.data, run.params
    sigma = activation(run.cfg.activation)
    _, H, J, d = p["W"].shape
    X, y = data.train.X[s:s + 1], data.train.y[s:s + 1]
    WKQ = p["WKQ"][s:s + 1]

    def loss(w):
        return logistic_loss(y * single_forward({"W": w.view(1, H, J, d), "WKQ": WKQ}, X, sigma)).mean()

    Hm = torch.func.hessian(loss)(p["W"][s].reshape(-1))
    return Hm, torch.block_diag(*([torch.linalg.qr(data.signals[s].T).Q] * (H * J)))


def single_hessian_min_eig(run, subspace: str = "signals") -> torch.Tensor:
    """Smallest Hessian eigenvalue of the single transformer's loss in its FFN weights (S,).

    The comparator of ``expert_hessian_min_eig``: all H*J FFN vectors at once,
    attention held at its trained value; restricted per vector to the signal span
    when subspace="signals".
    """
    S = run.params["W"].shape[0]
    out = torch.empty(S, dtype=torch.float64)
    for s in range(S):
        Hm, B = single_ffn_hessian(run, s)
        if subspace == "signals":
            Hm = B.T @ Hm @ B
        out[s] = torch.linalg.eigvalsh(Hm)[0]
    return out

"""The models, with seeds (S) and experts (M) / heads (H) as tensor dimensions.

* MoT (Mixture-of-Transformers): router h_m(X) = sum_l <theta_m, x_l>, top-1
  routing m* = argmax_m (h_m + r_m), output F(X) = pi_{m*}(X) f_{m*}(X) with
  pi = softmax(h).  Expert i:
      f_i(X) = sum_q sum_k softmax_k(x_q^T W_KQ^(i) x_k) sigma(<W^(i), x_k>)
             = sum_k a^(i)_k(X) sigma(<W^(i), x_k>),
  a_k = sum_q softmax_k(...) the attention weight token k receives.  With
  W_KQ = 0, a_k = 1: a one-neuron MoE expert summed over tokens.
* Attention-free MoE: the same with W_KQ fixed at 0.
* Single transformer: H heads, attention then a J-neuron FFN on each query's
  head output o_q = sum_k softmax_k(x_q^T W_KQ^(h) x_k) x_k:
      F(X) = sum_h sum_q sum_j sigma(<W^(h,j), o^(h)_q>).
"""
from __future__ import annotations

import torch

from .data import DTYPE


def activation(name: str):
    """sigma: cubic (default, odd and superlinear), linear, or relu."""
    if name == "cubic":
        return lambda z: z * z * z
    if name == "linear":
        return lambda z: z
    if name == "relu":
        return torch.relu
    raise ValueError(f"activation={name!r} is not allowed; choose one of ['cubic', 'linear', 'relu']")


def logistic_loss(margin: torch.Tensor) -> torch.Tensor:
    """l(z) = log(1 + exp(-z)), stable for large |z|."""
    return torch.nn.functional.softplus(-margin)


# ----------------------------------------------------------------------------- MoT
def init_mot(S: int, M: int, d: int, sigma0: float, gens: list[torch.Generator], J: int = 1,
             shared_attention: bool = False) -> dict:
    """W_0, W_KQ,0 ~ N(0, sigma0^2/d) entrywise; theta_0 = 0 (paper's init), per seed.

    W is (S,M,d) for one neuron per expert (J = 1), (S,M,J,d) for J >= 2; W_KQ is (S,M,d,d), or (S,1,d,d)
    when one matrix is shared by all experts.  Each seed draws W, then W_KQ, from its own generator."""
    std = sigma0 / d ** 0.5
    shape = (M, d) if J == 1 else (M, J, d)
    W = torch.stack([torch.randn(*shape, generator=g, dtype=DTYPE) for g in gens]) * std
    K = 1 if shared_attention else M
    WKQ = torch.stack([torch.randn(K, d, d, generator=g, dtype=DTYPE) for g in gens]) * std
    theta = torch.zeros(S, M, d, dtype=DTYPE)
    return {"W": W, "WKQ": WKQ, "theta": theta}


def output_signs(J: int, dtype=DTYPE) -> torch.Tensor:
    """s_j of a J-neuron expert: +1 for the first ceil(J/2) neurons, -1 for the rest (J = 1: +1)."""
    return torch.cat([torch.ones((J + 1) // 2, dtype=dtype), -torch.ones(J // 2, dtype=dtype)])


def effective_W(W: torch.Tensor) -> torch.Tensor:
    """One vector per expert (S,M,d) for the measurements (alignment, specialty, gap): W itself for J = 1,
    sum_j s_j W^(m,j) for a J-neuron expert (W of shape (S,M,J,d)); with an odd activation
    s_j sigma(<w, x>) = sigma(<s_j w, x>), so every neuron that serves class n has s_j w_j along +v_n."""
    if W.dim() == 3:
        return W
    return torch.einsum("smjd,j->smd", W, output_signs(W.shape[2], W.dtype))


def router_scores(Xsum: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """h (S,n,M): h_m(X) = sum_l <theta_m, x_l> = <theta_m, Xsum>, from Xsum = X.sum(2) (S,n,d)."""
    return torch.bmm(Xsum, theta.transpose(1, 2))


def route(h: torch.Tensor, lam: float = 0.0, gens: list[torch.Generator] | None = None) -> torch.Tensor:
    """Top-1 expert index (S,n): argmax_m (h_m + r_m), r_m ~ U[0, lam] (lam=0: no exploration)."""
    if lam > 0 and gens is not None:
        S, n, M = h.shape
        r = torch.stack([torch.rand(n, M, generator=g, dtype=h.dtype) for g in gens]) * lam
        h = h + r
    return torch.argmax(h, dim=-1)


class _RowSoftmax(torch.autograd.Function):
    """softmax over the last axis, written out: on CPU, for rows of L ~ 8 keys, about 4x faster than
    torch.softmax forward and 2x backward (measured on (8, 1000, 8, 8) float64 scores); same values
    to rounding.  setup_context, jvp and the generated vmap rule keep it usable inside torch.func
    transforms (the mechanism chapter's Hessians)."""
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        e = (x - x.amax(-1, keepdim=True)).exp()
        return e / e.sum(-1, keepdim=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, g):
        y, = ctx.saved_tensors
        return y * (g - (g * y).sum(-1, keepdim=True))

    @staticmethod
    def jvp(ctx, dx):
        y, = ctx.saved_tensors
        return y * (dx - (dx * y).sum(-1, keepdim=True))


def row_softmax(x: torch.Tensor) -> torch.Tensor:
    """softmax_k over the last axis (attention over keys)."""
    return _RowSoftmax.apply(x)


def _pool(A: torch.Tensor, query_pool: str) -> torch.Tensor:
    """Attention weight each key receives: sum (or mean) over queries of softmax rows."""
    return A.sum(-2) if query_pool == "sum" else A.mean(-2)


def token_weights(X: torch.Tensor, WKQ_sel: torch.Tensor, query_pool: str = "sum") -> torch.Tensor:
    """a (S,n,L) for per-sample key-query matrices WKQ_sel (S,n,d,d).

    matmul rather than einsum: einsum's path for these (L x d)(d x d) blocks was 2x slower on CPU.
    """
    scores = torch.matmul(torch.matmul(X, WKQ_sel), X.transpose(-1, -2))
    return _pool(row_softmax(scores), query_pool)


def shared_token_weights(X: torch.Tensor, WKQ: torch.Tensor, query_pool: str = "sum") -> torch.Tensor:
    """a (S,n,L) for one key-query matrix per seed, WKQ (S,d,d), shared by every sample (one large matmul)."""
    S, n, L, d = X.shape
    XW = torch.bmm(X.reshape(S, n * L, d), WKQ).view(S, n, L, d)
    return _pool(row_softmax(torch.matmul(XW, X.transpose(-1, -2))), query_pool)


@torch.no_grad()
def token_weights_all(X: torch.Tensor, WKQ: torch.Tensor, query_pool: str = "sum") -> torch.Tensor:
    """a (S,M,n,L) for every expert; a loop over experts bounds memory.  Used while W_KQ is frozen."""
    S, n, L, d = X.shape
    Xt = X.transpose(-1, -2)
    out = []
    for m in range(WKQ.shape[1]):
        XW = torch.bmm(X.reshape(S, n * L, d), WKQ[:, m]).view(S, n, L, d)
        out.append(_pool(row_softmax(torch.matmul(XW, Xt)), query_pool))
    return torch.stack(out, dim=1)


def uniform_weights(X: torch.Tensor, query_pool: str = "sum") -> torch.Tensor:
    """a (S,n,L) with W_KQ = 0: 1 per token (sum over queries) or 1/L (mean)."""
    S, n, L, _ = X.shape
    return torch.full((S, n, L), 1.0 if query_pool == "sum" else 1.0 / L, dtype=X.dtype)


def gather_experts(P: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """P (S,M,...) indexed per sample by idx (S,n) -> (S,n,...).

    index_select on flattened rows: several times faster than P[s, idx] on CPU,
    and its backward is an index_add rather than an accumulating index_put.
    """
    S, M = P.shape[:2]
    rows = (idx + M * torch.arange(S)[:, None]).reshape(-1)
    return P.reshape(S * M, *P.shape[2:]).index_select(0, rows).view(*idx.shape, *P.shape[2:])


def expert_output(X: torch.Tensor, W: torch.Tensor, idx: torch.Tensor, a: torch.Tensor, sigma) -> torch.Tensor:
    """f (S,n) = sum_k a_k sigma(<W^(m*), x_k>) for the routed expert m* = idx (J = 1, W (S,M,d)), or
    sum_k a_k sum_j s_j sigma(<W^(m*,j), x_k>) for J-neuron experts (W (S,M,J,d), ``output_signs``).

    The routed expert's vector is gathered per sample and applied with one
    batched matmul (measured 3x faster on CPU, forward + backward, than computing
    all M experts in one large matmul and gathering the routed column).
    """
    if W.dim() == 3:
        z = torch.matmul(X, gather_experts(W, idx)[..., None])[..., 0]
        return (a * sigma(z)).sum(-1)
    z = torch.matmul(X, gather_experts(W, idx).transpose(-1, -2))               # (S,n,L,J)
    return (a * (sigma(z) @ output_signs(W.shape[2], W.dtype))).sum(-1)


def gate_prob(h: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """pi_{m*} = softmax(h)_{m*} (S,n), without materialising the whole softmax (slow on short rows)."""
    m = h.detach().amax(-1, keepdim=True)
    e = torch.exp(h - m)
    return torch.gather(e, -1, idx[..., None])[..., 0] / e.sum(-1)


def mot_forward(params: dict, X: torch.Tensor, Xsum: torch.Tensor, idx: torch.Tensor, a: torch.Tensor,
                sigma) -> tuple:
    """F (S,n) = pi_{m*} f_{m*} and its parts, given routing idx and token weights a."""
    h = router_scores(Xsum, params["theta"])
    f = expert_output(X, params["W"], idx, a, sigma)
    return gate_prob(h, idx) * f, f, h


# ----------------------------------------------------------------------------- single transformer
def init_single(S: int, H: int, J: int, d: int, sigma0: float, gens: list[torch.Generator]) -> dict:
    std = sigma0 / d ** 0.5
    W = torch.stack([torch.randn(H, J, d, generator=g, dtype=DTYPE) for g in gens]) * std
    WKQ = torch.stack([torch.randn(H, d, d, generator=g, dtype=DTYPE) for g in gens]) * std
    return {"W": W, "WKQ": WKQ}


def head_signs(H: int, signed: bool, dtype=DTYPE) -> torch.Tensor | None:
    """The heads' output signs (H,): +1 for the first H/2, -1 for the rest when ``signed`` (symmetric heads); None
    otherwise (every head adds)."""
    if not signed:
        return None
    return torch.cat([torch.ones(H // 2, dtype=dtype), -torch.ones(H - H // 2, dtype=dtype)])


def single_forward(params: dict, X: torch.Tensor, sigma, signs: torch.Tensor | None = None) -> torch.Tensor:
    """F (S,n) of the single multi-head transformer (module docstring).

    Written as three large batched matmuls (X W_KQ for all heads, then per-sample
    scores, then A (X W^T)): about 1.5x faster than the naive einsum chain.
    """
    S, n, L, d = X.shape
    WKQ, W = params["WKQ"], params["W"]
    H, J = W.shape[1], W.shape[2]
    Xf = X.reshape(S, n * L, d)
    XW = torch.bmm(Xf, WKQ.permute(0, 2, 1, 3).reshape(S, d, H * d)).reshape(S, n, L, H, d).transpose(2, 3)
    A = row_softmax(torch.matmul(XW, X[:, :, None].transpose(-1, -2)))             # (S,n,H,q,k)
    XWt = torch.bmm(Xf, W.reshape(S, H * J, d).transpose(1, 2)).reshape(S, n, L, H, J).transpose(2, 3)
    z = torch.matmul(A, XWt)                                                      # (S,n,H,q,J)
    if signs is not None:
        return (sigma(z).sum(dim=(3, 4)) * signs).sum(-1)
    return sigma(z).sum(dim=(2, 3, 4))


def attention_scores(WKQ: torch.Tensor, signals: torch.Tensor) -> torch.Tensor:
    """p_{mu,nu} = mu^T W_KQ nu over the signal set: (S,M,2N,2N) from WKQ (S,M,d,d), signals (S,2N,d)."""
    return torch.einsum("sad,smde,sbe->smab", signals, WKQ, signals)


class _Groups:
    """The samples of every seed sorted by the expert they are routed to (stable, so samples keep their order
    within a group): ``X`` (S*n, L, d) in that order, and each (seed, expert) group's rows.  The routed
    experts' key-query products then run as one matrix product per group (X_g W_KQ^(g), X_g^T T_g) instead of
    one 8 x 16 by 16 x 16 product per sample (three times faster, measured at S=20, n=500, M=16)."""

    def __init__(self, X: torch.Tensor, idx: torch.Tensor, M: int):
        S, n, L, d = X.shape
        key = (idx + M * torch.arange(S)[:, None]).reshape(-1)
        self.perm = torch.argsort(key, stable=True)
        self.X = X.reshape(S * n, L * d).index_select(0, self.perm).view(S * n, L, d)
        counts = torch.bincount(key, minlength=S * M).tolist()
        starts = [0]
        for c in counts:
            starts.append(starts[-1] + c)
        self.spans = [(g, starts[g] * L, starts[g + 1] * L) for g in range(S * M) if counts[g]]
        self.shape = (S, n, L, d)

    def times(self, WKQ: torch.Tensor) -> torch.Tensor:
        """x W_KQ^(m*) for every token (S*n, L, d), sorted."""
        S, n, L, d = self.shape
        Xf, Wf = self.X.view(-1, d), WKQ.reshape(-1, d, d)
        out = torch.empty_like(Xf)
        for g, a, b in self.spans:
            torch.mm(Xf[a:b], Wf[g], out=out[a:b])
        return out.view(S * n, L, d)

    def outer(self, T: torch.Tensor, M: int) -> torch.Tensor:
        """sum over each group's tokens of x ⊗ T (S,M,d,d), from T (S*n, L, d) sorted."""
        S, n, L, d = self.shape
        Xf, Tf = self.X.view(-1, d), T.reshape(-1, d)
        out = torch.zeros(S * M, d, d, dtype=T.dtype)
        for g, a, b in self.spans:
            torch.mm(Xf[a:b].T, Tf[a:b], out=out[g])
        return out.view(S, M, d, d)

    def sort(self, v: torch.Tensor) -> torch.Tensor:
        """A per-sample tensor (S,n,...) in the sorted order (S*n,...)."""
        return v.reshape(self.perm.numel(), *v.shape[2:]).index_select(0, self.perm)

    def unsort(self, v: torch.Tensor) -> torch.Tensor:
        """The inverse of ``sort``: (S*n,...) sorted -> (S,n,...)."""
        out = torch.empty_like(v)
        out[self.perm] = v
        return out.view(*self.shape[:2], *v.shape[1:])


def live_attention(X: torch.Tensor, WKQ: torch.Tensor, idx: torch.Tensor, shared: bool, query_pool: str):
    """The routed experts' attention rows A and the pooled token weights a (S,n,L) (softmax over keys of
    x_q^T W_KQ^(m*) x_k); WKQ (S,M,d,d), or (S,1,d,d) when shared.  A is (S,n,L,L) when shared; otherwise
    (S*n,L,L) in the order of the returned ``_Groups``."""
    S, n, L, d = X.shape
    if shared:
        XW = torch.bmm(X.reshape(S, n * L, d), WKQ[:, 0]).view(S, n, L, d)
        A = row_softmax(torch.matmul(XW, X.transpose(-1, -2)))
        a, groups = A.sum(-2), None
    else:
        groups = _Groups(X, idx, WKQ.shape[1])
        A = row_softmax(torch.bmm(groups.times(WKQ), groups.X.transpose(1, 2)))
        a = groups.unsort(A.sum(-2))
    return A, (a if query_pool == "sum" else a / L), groups


# ----------------------------------------------------------------------------- routing of a trained run
def _weights(cfg, X, WKQ, idx, cache):
    """Token weights a (S,n,L) for the routed experts: uniform, cached (W_KQ frozen) or live.  A shared
    key-query matrix (W_KQ of shape (S,1,d,d)) gives every sample the same matrix, whichever expert it meets."""
    if not cfg.attention:
        return uniform_weights(X, cfg.query_pool)
    if cfg.shared_attention:
        return cache[:, 0] if cache is not None else shared_token_weights(X, WKQ[:, 0], cfg.query_pool)
    if cache is not None:  # cache (S,M,n,L): row (s, idx[s,i], i)
        S, M, n, L = cache.shape
        rows = ((torch.arange(S)[:, None] * M + idx) * n + torch.arange(n)).reshape(-1)
        return cache.reshape(-1, L).index_select(0, rows).view(S, n, L)
    if not (WKQ.requires_grad and torch.is_grad_enabled()):   # no graph needed: grouped by expert
        return live_attention(X, WKQ, idx, False, cfg.query_pool)[1]
    return token_weights(X, gather_experts(WKQ, idx), cfg.query_pool)


def eval_routing(run, split):
    """Unperturbed routing on a split: idx (S,n), gate probability pi (S,n,M), token weights a (S,n,L)."""
    p = run.params
    h = router_scores(split.xsum, p["theta"])
    idx = route(h)
    with torch.no_grad():
        a = _weights(run.cfg, split.X, p["WKQ"], idx, None)
    return idx, gate_prob(h, idx), a

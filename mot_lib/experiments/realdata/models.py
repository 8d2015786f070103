"""The real-data models: one-layer ViT experts, their gate, the MoT forward pass, and baselines sized to match."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...engine.config import _check


@dataclass(frozen=True)
class ModelConfig:
    """Sizes and training of one model family on one data set (every field a chapter parameter)."""
    M: int = 5                 # experts (MoT and attention-free MoE)
    width: int = 32            # D, the experts' token width
    mlp_ratio: int = 2         # MLP hidden = mlp_ratio * D
    heads_expert: int = 1      # attention heads per MoT expert
    heads_single: int = 4      # attention heads of the single ViT
    epochs: int = 24
    T1: int = 8                # end of Stage I (epochs)
    T2: int = 16               # end of Stage II (epochs)
    batch_size: int = 128
    lr: float = 3e-3           # Adam step of experts and baselines
    lr_gate: float = 3e-3      # Adam step of the gate
    lam: float = 1.0           # exploration: r_m ~ U[0, lam] added to the gate scores during training
    sigma_qk: float = 0.02     # init std of Wq, Wk (near-uniform attention at the start)
    gate: str = "mean"         # the gate reads the mean token ("mean") or all tokens ("flat")
    eval_chunk: int = 2048     # test samples per forward pass at evaluation

    def __post_init__(self):
        _check("M", self.M, kind=int, lo=1, hi=256)
        _check("width", self.width, kind=int, lo=2, hi=4096)
        _check("mlp_ratio", self.mlp_ratio, kind=int, lo=1, hi=16)
        _check("heads_expert", self.heads_expert, kind=int, lo=1, hi=self.width)
        _check("heads_single", self.heads_single, kind=int, lo=1, hi=self.width * 16)
        if self.width % self.heads_expert:
            raise ValueError(f"heads_expert={self.heads_expert} must divide width={self.width}")
        _check("epochs", self.epochs, kind=int, lo=1, hi=10_000)
        _check("T1", self.T1, kind=int, lo=0, hi=self.epochs)
        _check("T2", self.T2, kind=int, lo=self.T1, hi=self.epochs)
        _check("batch_size", self.batch_size, kind=int, lo=1, hi=1_000_000)
        _check("lr", self.lr, lo=0.0, hi=10.0, lo_open=True)
        _check("lr_gate", self.lr_gate, lo=0.0, hi=10.0)
        _check("lam", self.lam, lo=0.0, hi=1e4)
        _check("sigma_qk", self.sigma_qk, lo=0.0, hi=10.0, lo_open=True)
        _check("gate", self.gate, choices=("mean", "flat"))
        _check("eval_chunk", self.eval_chunk, kind=int, lo=1, hi=10_000_000)


ATTN = ("Wq", "Wk", "Wv", "Wo")


def vit_param_count(p: int, L: int, D: int, hidden: int, C: int, attention: bool = True) -> int:
    """Parameters of one ViT expert (embedding, positions, [attention], MLP, head)."""
    n = p * D + D + L * D + D * hidden + hidden + hidden * D + D + D * C + C
    return n + (4 * D * D if attention else 0)


def init_vit(gen: torch.Generator, lead: tuple, p: int, L: int, D: int, hidden: int, C: int,
             attention: bool = True, sigma_qk: float = 0.02) -> dict:
    """One seed's ViT parameters with leading dims ``lead`` (e.g. (M,) for M experts, () for one model)."""
    r = lambda *shape, std: torch.randn(*lead, *shape, generator=gen) * std  # noqa: E731
    z = lambda *shape: torch.zeros(*lead, *shape)  # noqa: E731
    P = {"E": r(p, D, std=p ** -0.5), "bE": z(D), "pos": r(L, D, std=0.02),
         "W1": r(D, hidden, std=D ** -0.5), "b1": z(hidden), "W2": r(hidden, D, std=hidden ** -0.5), "b2": z(D),
         "Wh": r(D, C, std=D ** -0.5), "bh": z(C)}
    if attention:
        P.update(Wq=r(D, D, std=sigma_qk), Wk=r(D, D, std=sigma_qk), Wv=r(D, D, std=D ** -0.5),
                 Wo=r(D, D, std=D ** -0.5))
    return P


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the token axis (-2) of x (..., L, k), over real tokens only when a mask (..., L) is given."""
    if mask is None:
        return x.mean(-2)
    m = mask.to(x.dtype)[..., None]
    return (x * m).sum(-2) / m.sum(-2).clamp_min(1.0)


def vit_forward(P: dict, x: torch.Tensor, mask: torch.Tensor | None, heads: int) -> torch.Tensor:
    """Class logits (G, B, C) of G one-layer ViTs (parameters with leading dim G) on x (G, B, L, p).

    Attention is used when P holds ``Wq``; without it this is the attention-free expert."""
    G, B, L, _ = x.shape
    h = torch.einsum("gblp,gpd->gbld", x, P["E"]) + P["bE"][:, None, None] + P["pos"][:, None]
    D = h.shape[-1]
    if "Wq" in P:
        a = F.layer_norm(h, (D,))
        dh = D // heads
        q = torch.einsum("gbld,gde->gble", a, P["Wq"]).reshape(G, B, L, heads, dh)
        k = torch.einsum("gbld,gde->gble", a, P["Wk"]).reshape(G, B, L, heads, dh)
        v = torch.einsum("gbld,gde->gble", a, P["Wv"]).reshape(G, B, L, heads, dh)
        s = torch.einsum("gbqhe,gbkhe->gbhqk", q, k) * dh ** -0.5
        if mask is not None:
            s = s.masked_fill(~mask[:, :, None, None, :], float("-inf"))
        w = torch.softmax(s, -1)
        o = torch.einsum("gbhqk,gbkhe->gbqhe", w, v).reshape(G, B, L, D)
        h = h + torch.einsum("gbld,gde->gble", o, P["Wo"])
    m = F.layer_norm(h, (D,))
    u = F.gelu(torch.einsum("gbld,gdk->gblk", m, P["W1"]) + P["b1"][:, None, None])
    h = h + torch.einsum("gblk,gkd->gbld", u, P["W2"]) + P["b2"][:, None, None]
    pooled = _masked_mean(F.layer_norm(h, (D,)), mask)
    return torch.einsum("gbd,gdc->gbc", pooled, P["Wh"]) + P["bh"][:, None]


def gate_input(x: torch.Tensor, mask: torch.Tensor | None, flat: bool) -> torch.Tensor:
    """What the gate sees of x (S, B, L, p): the mean token (S, B, p), or with ``flat`` all tokens
    concatenated (S, B, L p), i.e. a mean over tokens of position-specific embeddings."""
    if flat:
        xm = x if mask is None else x * mask[..., None].to(x.dtype)
        return xm.reshape(*x.shape[:2], -1)
    return _masked_mean(x, mask)


def gate_scores(theta: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """h (S, B, M) = Theta^T g(X) for x (S, B, L, p): theta (S, p, M) reads the mean token, theta
    (S, L p, M) all tokens (see ``gate_input``)."""
    flat = theta.shape[1] != x.shape[-1]
    return torch.einsum("sbp,spm->sbm", gate_input(x, mask, flat), theta)


def route(h: torch.Tensor, r: torch.Tensor | None = None):
    """Top-1 choice (S, B) of argmax(h + r) and the gate probability pi (S, B) of the chosen expert."""
    choice = (h if r is None else h + r).argmax(-1)
    pi = torch.softmax(h, -1).gather(-1, choice[..., None])[..., 0]
    return choice, pi


def mot_forward(experts: dict, theta: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None, heads: int,
                r: torch.Tensor | None = None):
    """MoT logits (S, B, C) and the routing choice (S, B).

    Samples are grouped by (seed, routed expert) into S*M buckets padded to the largest bucket; one
    batched einsum then runs every expert of every seed on its bucket with the expert's own weights
    (no per-sample weight copies).  Padding rows are computed and discarded: the cost is at most that
    of running every expert on every sample, and close to one expert per sample when routing is balanced.
    """
    S, B, L, p = x.shape
    M = theta.shape[-1]
    choice, pi = route(gate_scores(theta, x, mask), r)
    key = (torch.arange(S, device=x.device)[:, None] * M + choice).reshape(-1)      # (S*B,)
    order = torch.argsort(key, stable=True)
    counts = torch.bincount(key, minlength=S * M)
    starts = torch.cumsum(counts, 0) - counts
    ks = key[order]
    pos = torch.arange(S * B, device=x.device) - starts[ks]                          # slot within its bucket
    cap = int(counts.max())
    slot = torch.zeros(S * M, cap, dtype=torch.long, device=x.device)               # padding rows read sample 0
    slot[ks, pos] = order
    xb = x.reshape(S * B, L, p)[slot]                                                # (S*M, cap, L, p)
    mb = None if mask is None else mask.reshape(S * B, L)[slot]
    Pe = {k: v.reshape(S * M, *v.shape[2:]) for k, v in experts.items()}
    fb = vit_forward(Pe, xb, mb, heads)                                              # (S*M, cap, C)
    f = torch.empty(S * B, fb.shape[-1], dtype=fb.dtype, device=x.device)
    f = f.index_copy(0, order, fb[ks, pos])
    return pi[..., None] * f.reshape(S, B, -1), choice


def mot_forward_loop(experts: dict, theta: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None, heads: int,
                     r: torch.Tensor | None = None):
    """The same as ``mot_forward`` with a Python loop over seeds and experts (each expert runs on the
    samples routed to it): the reference the batched version is tested and timed against."""
    S, B, L, p = x.shape
    M = theta.shape[-1]
    choice, pi = route(gate_scores(theta, x, mask), r)
    out = []
    for s in range(S):
        f = None
        for m in range(M):
            sel = (choice[s] == m).nonzero()[:, 0]
            if sel.numel() == 0:
                continue
            Pm = {k: v[s, m][None] for k, v in experts.items()}
            fm = vit_forward(Pm, x[s, sel][None], None if mask is None else mask[s, sel][None], heads)[0]
            if f is None:
                f = fm.new_zeros(B, fm.shape[-1])
            f = f.index_copy(0, sel, fm)
        out.append(f)
    return pi[..., None] * torch.stack(out), choice


# ============================================================================ sizing
def model_sizes(p: int, L: int, C: int, cfg: ModelConfig) -> dict:
    """Widths and parameter counts (per seed) of every model; the baselines sized to the MoT's total."""
    D, hid, M = cfg.width, cfg.mlp_ratio * cfg.width, cfg.M
    g = p * L if cfg.gate == "flat" else p
    mot_total = M * vit_param_count(p, L, D, hid, C) + g * M
    H = cfg.heads_single
    cands = range(H, 64 * D + 1, H)
    Ds = min(cands, key=lambda w: abs(vit_param_count(p, L, w, cfg.mlp_ratio * w, C) - mot_total))
    base = vit_param_count(p, L, D, 0, C, attention=False)  # an expert without MLP hidden units
    per = 2 * D + 1                                          # parameters per MLP hidden unit
    hid_moe = max(1, int(round(((mot_total - g * M) / M - base) / per)))
    return {
        "MoT": dict(width=D, hidden=hid, heads=cfg.heads_expert, M=M, params=mot_total),
        "MoT (joint)": dict(width=D, hidden=hid, heads=cfg.heads_expert, M=M, params=mot_total),
        "single ViT": dict(width=Ds, hidden=cfg.mlp_ratio * Ds, heads=H, M=1,
                           params=vit_param_count(p, L, Ds, cfg.mlp_ratio * Ds, C)),
        "attention-free MoE": dict(width=D, hidden=hid_moe, heads=0, M=M,
                                   params=M * vit_param_count(p, L, D, hid_moe, C, attention=False) + g * M),
    }

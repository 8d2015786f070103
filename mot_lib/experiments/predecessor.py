"""The predecessor MoE experiment's model family (Chen, Deng, Wu, Gu, Li, NeurIPS 2022), batched over seeds.

Used by notebooks/10_predecessor (via ``mot_lib.predecessor_table``) and ``python -m mot_lib predecessor``.

The predecessor's data are the book's sampler with options (``Setting``: per-sample amplitude ranges,
isotropic noise, ``scale``); its models are the book's MoE with options (``PredecessorConfig``):

* expert m: 2J neurons with biases, ``f_m(X) = sum_j s_j sum_p a_p sigma(<w_mj, x_p> + b_mj)``,
  s_j = -1 for the first J neurons (the logit of y = -1) and +1 for the last J (the logit of y = +1),
  a_p = 1 (the predecessor's expert) or the attention weight patch p receives, summed over queries,
  from the expert's own key-query matrix (the MoT expert; a_p = 1 exactly when W_KQ = 0);
* router ``h_m(X) = sum_p <theta_m, x_p>``, route to m* = argmax_m (h_m + r_m), r ~ U[0, lam) redrawn every
  step; output ``F(X) = (h_m* + r_m*) f_m*(X)``: the noisy gate *value* multiplies the output (the book's
  MoT multiplies by softmax(h)_m* instead);
* the single CNN: one expert, no router, ``F = f``.

Why a training loop of its own and not more branches of ``training.train_mot``: the predecessor's
experts have 2J neurons with biases (the book's have one vector), its loss, gate, optimisers (a per-expert
normalized step over two parameter tensors, Adam for the single CNN) and per-seed early stopping all differ,
and at its size (n = 16,000, d = 50, 2J = 16) the per-sample gather of the routed expert's weights that
``train_mot`` uses would hold S x n x 2J x d numbers; here the samples are grouped by routed expert and each
group meets its expert's weights in one matmul.  The loop follows ``train_mot``'s conventions: seeds are the
leading dimension (their losses are summed, so gradients never mix), one ``seed_streams`` per seed, a
``Run`` with the tidy history (one row per step, seed, quantity).
"""
from __future__ import annotations

import math

import torch

from ..engine import metrics as mt
from ..engine.config import PredecessorConfig, Setting
from ..engine.data import Dataset, seed_streams
from ..engine.models import row_softmax, router_scores
from ..engine.training import Run, _check_finite, _progress, _Recorder, prepare

#: log(1 + e^-1): the floor of the double-softmax cross-entropy (the softmax outputs lie in [0, 1]).
LOSS_FLOOR = math.log1p(math.exp(-1.0))


def activation(name: str):
    """sigma: cubic or linear (the predecessor's nonlinear and linear experts)."""
    if name == "cubic":
        return lambda z: z * z * z
    if name == "linear":
        return lambda z: z
    raise ValueError(f"activation={name!r} is not allowed; choose one of ['cubic', 'linear']")


def loss_fn(margin: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample loss of the margin m = y F.

    double_softmax: the public code's ``CrossEntropyLoss(softmax(z))`` on the two gate-weighted logits z:
    the softmax gives p_y = sigmoid(m), and the cross-entropy of the two numbers (p_y, 1 - p_y) is
    log(1 + exp(1 - 2 p_y)) >= log(1 + e^-1).  logistic: log(1 + exp(-m)), a single softmax.
    """
    if kind == "double_softmax":
        return torch.nn.functional.softplus(1.0 - 2.0 * torch.sigmoid(margin))
    if kind == "logistic":
        return torch.nn.functional.softplus(-margin)
    raise ValueError(f"loss={kind!r} is not allowed; choose one of ['double_softmax', 'logistic']")


def signs(J: int, dtype) -> torch.Tensor:
    """s_j: -1 for the first J neurons (logit of y = -1, class 0), +1 for the last J (y = +1, class 1)."""
    return torch.cat([-torch.ones(J, dtype=dtype), torch.ones(J, dtype=dtype)])


def conv_init(S: int, K: int, J: int, d: int, scale: float, gens, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """W (S,K,2J,d), b (S,K,2J): PyTorch's default Conv1d initialisation (fan-in d: U(-1/sqrt(d), 1/sqrt(d))
    for weights and biases) times ``scale``, drawn per seed (weights first, then biases)."""
    bound = 1.0 / math.sqrt(d)
    W, b = [], []
    for g in gens:
        W.append((torch.rand(K, 2 * J, d, generator=g, dtype=torch.float64) * 2 - 1) * bound)
        b.append((torch.rand(K, 2 * J, generator=g, dtype=torch.float64) * 2 - 1) * bound)
    return (torch.stack(W) * scale).to(dtype), (torch.stack(b) * scale).to(dtype)


class Groups:
    """Samples of all seeds grouped by routed expert: sample i of seed s goes to group s*K + idx[s, i].

    ``split(t)`` returns the non-empty groups' rows of t (S,n,...) in group order; ``merge(parts)`` puts
    per-group results back in sample order (S,n,...).  Gradients flow through both.
    """

    def __init__(self, idx: torch.Tensor, K: int):
        S, n = idx.shape
        self.S, self.n = S, n
        if K == 1:                      # one expert per seed (the single CNN): the groups are the seeds, no copy
            self.order = None
            self.keys, self.sizes = list(range(S)), [n] * S
            return
        gid = (idx + K * torch.arange(S)[:, None]).reshape(-1)
        self.order = torch.argsort(gid, stable=True)
        self.inv = torch.empty_like(self.order)
        self.inv[self.order] = torch.arange(S * n)
        counts = torch.bincount(gid, minlength=S * K)
        self.keys = torch.nonzero(counts).ravel().tolist()
        self.sizes = counts[self.keys].tolist()

    def split(self, t: torch.Tensor) -> list[torch.Tensor]:
        if self.order is None:
            return list(t.unbind(0))
        flat = t.reshape(self.S * self.n, *t.shape[2:]).index_select(0, self.order)
        return list(flat.split(self.sizes))

    def merge(self, parts: list[torch.Tensor]) -> torch.Tensor:
        if self.order is None:
            return torch.stack(parts)
        out = torch.cat(parts).index_select(0, self.inv)
        return out.view(self.S, self.n, *out.shape[1:])


def routed_token_weights(X: torch.Tensor, WKQ: torch.Tensor, groups: Groups) -> torch.Tensor:
    """a (S,n,L): the attention weight each patch receives from the routed expert, summed over queries,
    ``a_k = sum_q softmax_k(x_q^T W_KQ x_k)`` (1 for every patch when W_KQ = 0)."""
    Wk = WKQ.reshape(-1, *WKQ.shape[2:]).unbind(0)
    parts = []
    for key, Xg in zip(groups.keys, groups.split(X)):
        scores = torch.matmul(torch.matmul(Xg, Wk[key]), Xg.transpose(-1, -2))
        parts.append(row_softmax(scores).sum(-2))
    return groups.merge(parts)


class _SignedCubeSum(torch.autograd.Function):
    """f (c,) = sum_p a_p sum_j s_j z_pj^3 from pre-activations z (c,L,2J), signs s (2J,), weights a (c,L) or None.

    Written out because the cube and its derivative over the (c, L, 2J) pre-activations are memory-bound: autograd's
    z*z*z and its backward pass over them about ten times; this passes over them four times (profiled on the single
    CNN's 16,000 x 4 x 80 pre-activations: the elementwise work was half of the step)."""

    @staticmethod
    def forward(ctx, z, s, a):
        z2 = z * z
        ys = torch.matmul(z2 * z, s)                       # (c,L): sum_j s_j z_pj^3
        ctx.save_for_backward(z2, s, a, ys)
        return (ys if a is None else ys * a).sum(-1)

    @staticmethod
    def backward(ctx, g):
        z2, s, a, ys = ctx.saved_tensors
        coef = 3.0 * g[:, None] if a is None else 3.0 * g[:, None] * a       # (c,L)
        gz = z2 * s
        gz *= coef[..., None]
        ga = None if a is None else g[:, None] * ys
        return gz, None, ga


def routed_scores(X: torch.Tensor, Xsum: torch.Tensor, W: torch.Tensor, b: torch.Tensor, groups: Groups,
                  sigma_name: str, a: torch.Tensor | None = None) -> torch.Tensor:
    """f (S,n) = sum_j s_j sum_p a_p sigma(<w_j, x_p> + b_j) for each sample's routed expert.

    A linear expert without attention is evaluated on the patch sum (sum_p (<w, x_p> + b) = <w, sum_p x_p> + L b,
    the same number up to rounding, four times cheaper).
    """
    S, n, L, d = X.shape
    J2 = W.shape[2]
    s = signs(J2 // 2, X.dtype)
    Wk, bk = W.reshape(-1, J2, d).unbind(0), b.reshape(-1, J2).unbind(0)
    sigma = activation(sigma_name)
    parts = []
    if sigma_name == "linear" and a is None:
        for key, Xg in zip(groups.keys, groups.split(Xsum)):
            parts.append((torch.matmul(Xg, Wk[key].T) + L * bk[key]) @ s)
    else:
        a_parts = groups.split(a) if a is not None else [None] * len(groups.keys)
        for key, Xg, ag in zip(groups.keys, groups.split(X), a_parts):
            c = Xg.shape[0]
            z = torch.addmm(bk[key], Xg.reshape(c * L, d), Wk[key].T).view(c, L, J2)   # (c,L,2J), bias in the gemm
            if sigma_name == "cubic":
                parts.append(_SignedCubeSum.apply(z, s, ag))
            else:
                z = sigma(z) if ag is None else sigma(z) * ag[..., None]
                parts.append(z.sum(1) @ s)
    return groups.merge(parts)


def gate(Xsum: torch.Tensor, theta: torch.Tensor, lam: float, gens) -> tuple[torch.Tensor, torch.Tensor]:
    """(gate value h_m* + r_m*, routed expert m*), both (S,n); r ~ U[0, lam) per seed stream, none if gens is None."""
    h = router_scores(Xsum, theta)
    if gens is not None and lam > 0:
        S, n, M = h.shape
        h = h + torch.stack([torch.rand(n, M, generator=g, dtype=torch.float64) for g in gens]).to(h.dtype) * lam
    g, idx = h.max(-1)
    return g, idx


def forward(p: dict, X, Xsum, cfg: PredecessorConfig, gens, a_cache=None) -> tuple:
    """F (S,n), routed expert idx (S,n) (zeros for the single CNN) and token weights a (or None).

    ``a_cache`` (S,M,n,L) holds every expert's token weights while W_KQ is frozen (Stages I and III).
    """
    S, n = X.shape[:2]
    if cfg.model == "single":
        idx = torch.zeros(S, n, dtype=torch.int64)
        groups = Groups(idx, 1)
        return routed_scores(X, Xsum, p["W"], p["b"], groups, cfg.activation), idx, None
    g, idx = gate(Xsum, p["theta"], cfg.lam, gens)
    groups = Groups(idx, cfg.M)
    a = None
    if cfg.attention:
        if a_cache is not None:
            S_, M, n_, L = a_cache.shape
            rows = ((torch.arange(S)[:, None] * M + idx) * n + torch.arange(n)).reshape(-1)
            a = a_cache.reshape(-1, L).index_select(0, rows).view(S, n, L)
        elif torch.count_nonzero(p["WKQ"]) > 0 or p["WKQ"].requires_grad:
            a = routed_token_weights(X, p["WKQ"], groups)
    f = routed_scores(X, Xsum, p["W"], p["b"], groups, cfg.activation, a)
    return g * f, idx, a


@torch.no_grad()
def all_token_weights(X: torch.Tensor, WKQ: torch.Tensor) -> torch.Tensor:
    """a (S,M,n,L) for every expert (a loop over experts bounds memory); used while W_KQ is frozen."""
    S, n, L, d = X.shape
    Xt = X.transpose(-1, -2)
    out = []
    for m in range(WKQ.shape[1]):
        XW = torch.bmm(X.reshape(S, n * L, d), WKQ[:, m]).view(S, n, L, d)
        out.append(row_softmax(torch.matmul(XW, Xt)).sum(-2))
    return torch.stack(out, dim=1)


def _ngd(grads: list, params: list, eta: float, active: torch.Tensor):
    """Per-expert normalized step: every parameter tensor of expert (s, m) moves by eta times its gradient
    divided by the sum of that expert's parameter-gradient norms (the public code's NormalizedGD); an
    expert without gradient (no sample routed to it) does not move; a stopped seed does not move."""
    norm = sum(g.reshape(g.shape[0], g.shape[1], -1).norm(dim=-1) for g in grads)       # (S,K)
    scale = torch.where(norm > 0, eta / norm.clamp_min(1e-300), torch.zeros_like(norm)) * active[:, None]
    for x, g in zip(params, grads):
        x -= scale.reshape(scale.shape + (1,) * (g.dim() - 2)) * g


class _Adam:
    """torch.optim.Adam (betas 0.9, 0.999, eps 1e-8, L2 weight decay added to the gradient), elementwise,
    so batching seeds changes nothing; a stopped seed keeps its parameters and moments."""

    def __init__(self, params: list, lr: float, weight_decay: float):
        self.lr, self.wd, self.t = lr, weight_decay, 0
        self.m = [torch.zeros_like(x) for x in params]
        self.v = [torch.zeros_like(x) for x in params]

    def step(self, params: list, grads: list, active: torch.Tensor):
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        bc1, bc2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for x, g, m, v in zip(params, grads, self.m, self.v):
            keep = active.reshape((-1,) + (1,) * (x.dim() - 1))
            g = g + self.wd * x
            m.copy_(torch.where(keep, b1 * m + (1 - b1) * g, m))
            v.copy_(torch.where(keep, b2 * v + (1 - b2) * g * g, v))
            upd = (self.lr / bc1) * m / (v.sqrt() / math.sqrt(bc2) + eps)
            x.copy_(torch.where(keep, x - upd, x))


def _evaluate(p: dict, split, cfg: PredecessorConfig, gens, N: int, dt) -> dict:
    """Loss, accuracy and routing on a split (router noise from ``gens``, or none)."""
    X, Xsum, y = split.X.to(dt), split.xsum.to(dt), split.y.to(dt)
    F, idx, a = forward(p, X, Xsum, cfg, gens)        # with W_KQ != 0: the routed experts' weights only
    m = y * F
    out = {"loss": loss_fn(m, cfg.loss).mean(-1), "acc": (torch.where(F > 0, 1.0, -1.0) == y).to(torch.float64).mean(-1)}
    if cfg.model == "moe":
        out["entropy"] = mt.expert_cluster_entropy(idx, split.cls, N, cfg.M)
        out["dispatch_entropy"] = mt.dispatch_entropy(mt.dispatch_matrix(idx, split.cls, N, cfg.M))
        out["experts_used"] = mt.experts_used(idx, cfg.M)
        if a is not None:
            out["label_weight"] = torch.gather(a, 2, split.label_pos[..., None])[..., 0].mean(-1) / X.shape[2]
        else:
            out["label_weight"] = torch.full((X.shape[0],), 1.0 / X.shape[2], dtype=torch.float64)
    return out


def train_predecessor(setting: Setting, cfg: PredecessorConfig, seeds, data: Dataset | None = None,
                      progress: bool | None = None) -> Run:
    """Train the predecessor's MoE (or single CNN, or MoE with MoT experts, per ``cfg``) for every seed at once.

    The loop is the public code's: at step t (0-based epoch) a forward pass on the whole training set with
    fresh router noise gives the loss; the early-stop rule is checked on it (before any update); then one
    update.  History quantities (per seed): ``train_loss`` (every step until the seed stops, NaN after), ``entropy`` (the predecessor's
    dispatch entropy of that forward pass: the load-weighted entropy of the clusters each expert receives),
    and every ``record_every`` steps the noise-free test ``test_loss``, ``test_acc``, ``test_entropy``,
    ``dispatch_entropy`` (the book's), ``experts_used``, ``label_weight``.  At the end, at step = the number
    of updates of the longest-running seed: ``final_test_acc`` and ``final_test_loss`` (with router noise
    if ``eval_noise``, as published), ``final_test_acc_clean``, ``final_entropy`` (the entropy of the last
    forward pass, as published), ``updates`` (the seed's number of updates before it stopped).
    """
    seeds, data = prepare(setting, cfg, PredecessorConfig, "train_predecessor", seeds, data)
    dt = torch.float32 if cfg.dtype == "float32" else torch.float64
    streams = [seed_streams(s, 5) for s in seeds]          # data, init, router noise, test noise, final noise
    S, d, N = len(seeds), setting.d, setting.N
    K = cfg.M if cfg.model == "moe" else 1
    W, b = conv_init(S, K, cfg.J, d, cfg.init_scale, [g[1] for g in streams], dt)
    p = {"W": W, "b": b}
    if cfg.model == "moe":
        p["theta"] = torch.zeros(S, cfg.M, d, dtype=dt)
        if cfg.attention:
            p["WKQ"] = torch.zeros(S, cfg.M, d, d, dtype=dt)
    noise = [g[2] for g in streams] if cfg.model == "moe" else None
    X, Xsum, y = data.train.X.to(dt), data.train.xsum.to(dt), data.train.y.to(dt)
    adam = _Adam([p["W"], p["b"]], cfg.eta, cfg.weight_decay) if cfg.opt == "adam" else None
    rec = _Recorder(seeds)
    active = torch.ones(S, dtype=torch.bool)
    best = torch.full((S,), float("inf"), dtype=torch.float64)
    last_entropy = torch.full((S,), float("nan"), dtype=torch.float64)
    updates = torch.zeros(S, dtype=torch.float64)
    a_cache, cached_stage = None, None
    bar = _progress(cfg.T, "predecessor " + cfg.model, progress)
    t_done = 0
    for e in range(cfg.T):
        stage = cfg.stage(e + 1)
        train_W = stage in ("I", "III")
        train_KQ = cfg.attention and stage == "II"
        if cfg.attention and train_W and cached_stage != stage:
            a_cache = all_token_weights(X, p["WKQ"]) if torch.count_nonzero(p["WKQ"]) > 0 else None
            cached_stage = stage
        for k in p:
            p[k].requires_grad_((k in ("W", "b") and train_W) or (k == "WKQ" and train_KQ)
                                or (k == "theta" and cfg.eta_router > 0))
        F, idx, _ = forward(p, X, Xsum, cfg, noise, a_cache if train_W else None)
        per_seed = loss_fn(y * F, cfg.loss).mean(-1)
        L = per_seed.detach().to(torch.float64)
        _check_finite(e, f"predecessor {cfg.model}, stage {stage}", L, seeds, {})
        ent = mt.expert_cluster_entropy(idx, data.train.cls, N, cfg.M) if cfg.model == "moe" else None
        ran = active.clone()            # the seeds that were still training when this step began
        if cfg.early_stop:
            new_min = L <= best
            stop = active & ~new_min & (((e > cfg.stop_after) & (L > best + cfg.stop_rise)) | (L <= cfg.stop_floor))
            best = torch.where(active & new_min, L, best)
            if ent is not None:
                last_entropy = torch.where(active, ent, last_entropy)
            active = active & ~stop
        elif ent is not None:
            last_entropy = ent
        # a stopped seed's later forward passes (frozen weights, fresh router noise) are not its history: NaN
        rec.add(e, stage, "train_loss", torch.where(ran, L, torch.full_like(L, float("nan"))))
        if ent is not None:
            rec.add(e, stage, "entropy", torch.where(ran, ent, torch.full_like(ent, float("nan"))))
        if e % cfg.record_every == 0:
            _record_test(rec, e, stage, p, data, cfg, N, dt)
        if not bool(active.any()):
            break
        wrt = [k for k in p if p[k].requires_grad]
        grads = dict(zip(wrt, torch.autograd.grad(per_seed.sum(), [p[k] for k in wrt])))
        with torch.no_grad():
            for k in wrt:
                p[k].requires_grad_(False)
            if train_W:
                if adam is not None:
                    adam.step([p["W"], p["b"]], [grads["W"], grads["b"]], active)
                else:
                    _ngd([grads["W"], grads["b"]], [p["W"], p["b"]], cfg.eta, active.to(dt))
            if train_KQ:
                _ngd([grads["WKQ"]], [p["WKQ"]], cfg.eta_kq, active.to(dt))
            if "theta" in grads:
                p["theta"] -= cfg.eta_router * grads["theta"] * active.to(dt)[:, None, None]
        updates += active.to(torch.float64)
        t_done = e + 1
        _check_finite(e + 1, f"predecessor {cfg.model}, stage {stage}", L, seeds, p)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    for k in p:
        p[k].requires_grad_(False)
    stage = cfg.stage(max(t_done, 1))
    if t_done % cfg.record_every != 0 or t_done == 0:
        _record_test(rec, t_done, stage, p, data, cfg, N, dt)
    with torch.no_grad():
        fin = _evaluate(p, data.test, cfg, [g[4] for g in streams] if (cfg.eval_noise and cfg.model == "moe")
                        else None, N, dt)
        clean = _evaluate(p, data.test, cfg, None, N, dt)
    rec.add(t_done, stage, "final_test_acc", fin["acc"])
    rec.add(t_done, stage, "final_test_loss", fin["loss"])
    rec.add(t_done, stage, "final_test_acc_clean", clean["acc"])
    rec.add(t_done, stage, "updates", updates)
    if cfg.model == "moe":
        rec.add(t_done, stage, "final_entropy", last_entropy)
    return Run(setting, cfg, seeds, data, p, rec.frame(), "predecessor-" + cfg.model)


def _record_test(rec: _Recorder, step: int, stage: str, p: dict, data: Dataset, cfg: PredecessorConfig, N: int, dt):
    with torch.no_grad():
        ev = _evaluate(p, data.test, cfg, None, N, dt)
    rec.add(step, stage, "test_loss", ev["loss"])
    rec.add(step, stage, "test_acc", ev["acc"])
    for q in ("entropy", "dispatch_entropy", "experts_used", "label_weight"):
        if q in ev:
            rec.add(step, stage, "test_entropy" if q == "entropy" else q, ev[q])

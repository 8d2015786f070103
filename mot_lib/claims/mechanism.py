"""The mechanism behind Theorem 1: gradient conflict and curvature.  Used by notebooks/06_mechanism.

The paper explains the MoT's linear rate by specialization: once each class is
routed to its specialists, an expert no longer has to serve classes that pull
its FFN vector in conflicting directions, so its Stage III subproblem is
strongly convex; a single model facing all classes has conflicting per-class
gradients.  This module measures both halves on the same data and seeds:

* gradient conflict, from per-class gradients g_n = grad_W (mean loss of the
  class-n samples) (``mot.metrics.class_gradients``) and their cosines
  (``cosines``, safe for gradients of any scale):
  - the *shared expert*: the MoT with M = 1 (same data, same three stages), in
    which every class goes through one expert.  Its update is sum_n g_n / N, so a
    negative cosine between two classes' gradients is a conflict that the update
    actually carries;
  - the *specialists* of the MoT (M experts): for each used expert, its own
    update u = the gradient of its loss on the samples the router sends to it,
    (i) against itself on random halves of those samples ("within-specialist"
    cosine: what agreement looks like when no class competes, sampling noise
    included), and (ii) against g_n for every class n other than its specialty,
    computed at the expert's weights as if class n were routed to it ("what the
    other classes would pull it towards"), plus the share of its routed samples
    that belong to its specialty (how much of that pull reaches it);
  - the single transformer: per-class gradients of its FFN weights.
  Gate probability and token weights enter exactly: the expert's output on a
  sample is pi_m(X) f_m(X) = sum_k pi_m(X) a_k sigma(<W, x_k>), so
  ``class_gradients`` is called with token weights pi_m(X) a_k(X).
* curvature: the smallest Hessian eigenvalue of each used expert's Stage III
  loss (``mot.metrics.expert_hessian_min_eig``, on span{c_n, v_n} and on R^d),
  of the shared expert's, and of the single transformer's loss in its FFN
  weights (``mot.metrics.single_hessian_min_eig``), at the end of training.
  Because the loss is near zero there, every curvature is tiny in absolute
  terms; ``expert_hessian_spectrum`` also gives the largest eigenvalue, so the
  smallest can be read relative to it, and the eigenvector of the smallest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..engine import metrics as mt
from .. import stats
from ..book.registry import ChapterParams, register
from ..engine.config import Setting, SingleConfig, TrainConfig, _check
from ..engine.data import make_dataset, seed_streams
from ..engine.models import (activation, init_mot, logistic_loss, router_scores, row_softmax, single_forward, token_weights_all,
                     uniform_weights)
from ..engine.models import eval_routing
from ..engine.training import Run, single_evaluation, train_mot, train_single
from . import comparator


# ----------------------------------------------------------------------------- parameters
@register("06_mechanism")
@dataclass(frozen=True)
class MechanismParams(ChapterParams):
    """Parameters of notebooks/06_mechanism.ipynb."""
    seeds: tuple = tuple(range(40))  # a batch dimension
    M: int = 16                 # experts of the MoT (the shared expert is the same model with M = 1)
    T1: int = 200               # end of Stage I
    T2: int = 300               # end of Stage II
    T: int = 500                # end of Stage III
    H: int = 4                  # heads of the single transformer
    J: int = 2                  # FFN neurons per head of the single transformer
    single_T: int = 500         # at most this many steps of the single transformer (it stops once every seed is read)
    single_seeds: int = 40      # the first this many seeds (at most all) train the single transformer
    single_eta: object = "tuned"  # its step: the fair comparison's tuned one (``comparator``), or a number
    n_train: int = 500          # training samples per seed (full batch; the Hessians are over all of them)
    min_share: float = 0.01     # an expert is "used" if it receives at least this share of training samples
    conflict_margin: float = 0.1   # shared-expert conflict: mean off-diagonal cosine interval below -margin
    clear_gap: float = 0.5      # "clearly below": within-specialist minus shared cosine at least this
    rel_tol: float = 1e-3       # a smallest eigenvalue counts as positive if > rel_tol * largest
    seed_share: float = 0.5     # a per-seed property holds for the population if more than this share of seeds pass (Wilson)
    early_step: int = 50        # an early checkpoint inside Stage I (besides 0, T1 and T)
    record_every: int = 50      # history cadence (this chapter reads final weights, not curves)

    def __post_init__(self):
        super().__post_init__()
        _check("min_share", self.min_share, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        _check("conflict_margin", self.conflict_margin, lo=0.0, hi=1.0)
        _check("clear_gap", self.clear_gap, lo=0.0, hi=2.0, lo_open=True)
        _check("rel_tol", self.rel_tol, lo=0.0, hi=1.0)
        _check("seed_share", self.seed_share, lo=0.0, hi=1.0, lo_open=True)
        _check("T1", self.T1, kind=int, lo=1, hi=100_000)
        _check("T2", self.T2, kind=int, lo=self.T1, hi=100_000)
        _check("T", self.T, kind=int, lo=self.T2 + 1, hi=100_000)
        _check("single_T", self.single_T, kind=int, lo=1, hi=100_000)
        _check("single_seeds", self.single_seeds, kind=int, lo=2, hi=10_000)
        comparator.check_eta("single_eta", self.single_eta)
        _check("n_train", self.n_train, kind=int, lo=50, hi=1_000_000)
        _check("M", self.M, kind=int, lo=2, hi=512)
        _check("early_step", self.early_step, kind=int, lo=1, hi=self.T1)
        self.config()
        self.single_config(resolve=False)
        self.setting()

    def setting(self) -> Setting:
        """The book's default setting; quick=True draws fewer samples."""
        return Setting(n_train=200, n_test=200) if self.quick else Setting(n_train=self.n_train, n_test=1000)

    def config(self, **changes) -> TrainConfig:
        """The MoT's three-stage schedule; quick=True halves every stage."""
        k = 2 if self.quick else 1
        base = dict(M=self.M, T1=self.T1 // k, T2=self.T2 // k, T=self.T // k, record_every=self.record_every)
        base.update(changes)
        return TrainConfig(**base)

    def steps(self) -> list[int]:
        """Checkpoints at which gradient conflict is measured: 0, early_step, T1, T (quick: halved)."""
        cfg = self.config()
        k = 2 if self.quick else 1
        return sorted({0, max(1, self.early_step // k), cfg.T1, cfg.T})

    def single_config(self, resolve: bool = True) -> SingleConfig:
        """The comparator at ``single_eta`` (``comparator``); ``resolve=False``: the same shape at the base step."""
        k = 2 if self.quick else 1
        shape = dict(T=max(1, self.single_T // k), record_every=self.record_every)
        if not resolve:
            return SingleConfig(H=self.H, J=self.J, **shape)
        return comparator.single_config(self.single_eta, self.H, self.J, self.setting(), **shape)[0]

    def single_step_note(self) -> str:
        """Where the comparator's step comes from, in words."""
        return comparator.resolve(self.single_eta, self.H, self.J, self.setting())[1]


# ----------------------------------------------------------------------------- runs
def init_params(run_like_cfg: TrainConfig, setting: Setting, seeds) -> dict:
    """The MoT's initial weights exactly as ``train_mot`` draws them (same seed streams)."""
    gens = [seed_streams(s)[1] for s in seeds]
    p = init_mot(len(seeds), run_like_cfg.M, setting.d, run_like_cfg.sigma0, gens)
    if not run_like_cfg.attention:
        p["WKQ"].zero_()
    return p


def checkpoints(setting: Setting, cfg: TrainConfig, seeds, data, steps) -> dict:
    """Weights after each step count in ``steps`` (0 = init), as Run objects.

    One run to the last checkpoint keeps a copy of its weights at the earlier ones
    (``train_mot(snapshot_at=...)``); training is deterministic, so these equal a
    run cut at t (T = t, stages clipped), which ``tests/test_mechanism.py`` checks.
    The longest run is returned with its whole history.
    """
    out = {}
    steps = sorted(set(steps))
    if 0 in steps:
        out[0] = Run(setting, cfg, list(seeds), data, init_params(cfg, setting, seeds), pd.DataFrame(), "mot")
    later = [t for t in steps if t > 0]
    if not later:
        return out
    T = later[-1]
    full = train_mot(setting, cfg.replace(T=T, T1=min(cfg.T1, T), T2=min(cfg.T2, T)), list(seeds), data=data,
                     snapshot_at=later[:-1])
    for t in later[:-1]:     # one run, its weights kept at each earlier checkpoint
        c = cfg.replace(T=t, T1=min(cfg.T1, t), T2=min(cfg.T2, t))
        out[t] = Run(setting, c, list(seeds), data, full.snapshots[t], full.history[full.history.step <= t], "mot")
    out[T] = full
    return out


# ----------------------------------------------------------------------------- gradient conflict
def _expert_inputs(run: Run, split: str, s: int, m: int):
    """X, y, cls of seed index s, and the weights pi_m(X) a^(m)_k(X) of expert m on every sample."""
    sp = run.data.train if split == "train" else run.data.test
    X, y, cls = sp.X[s], sp.y[s], sp.cls[s]
    p = run.params
    if run.cfg.attention:
        a = token_weights_all(X[None], p["WKQ"][s:s + 1, m:m + 1], run.cfg.query_pool)[0, 0]
    else:
        a = uniform_weights(X[None], run.cfg.query_pool)[0]
    pi = torch.softmax(router_scores(sp.xsum[s:s + 1], p["theta"][s:s + 1])[0], dim=-1)[:, m]
    return X, y, cls, pi[:, None] * a


def expert_class_gradients(run: Run, s: int, m: int, split: str = "train") -> torch.Tensor:
    """(N,d): gradient of expert m's loss on all class-n samples, as if they were routed to it (seed index s)."""
    X, y, cls, w = _expert_inputs(run, split, s, m)
    return mt.class_gradients(run.params["W"][s, m], X, y, cls, run.setting.N, a=w, act=run.cfg.activation)


def _grad_on(run: Run, X, y, w, W) -> torch.Tensor:
    """Gradient of the mean logistic loss of the samples (X, y, token weights w) wrt one expert's W."""
    sigma = activation(run.cfg.activation)
    Wg = W.detach().clone().requires_grad_(True)
    loss = logistic_loss(y * (w * sigma(X @ Wg)).sum(-1)).mean()
    return torch.autograd.grad(loss, Wg)[0]


def _unit(G: torch.Tensor) -> torch.Tensor:
    """The rows of G scaled to unit length, NaN where a row is zero.  Each row is first divided by its largest
    entry: late in training a gradient's entries are near 1e-170, whose squares underflow to 0 in float64, and
    dividing by the clamped norm then blew the "cosines" up to 1e87."""
    top = G.abs().amax(dim=-1, keepdim=True)
    G = G / torch.where(top > 0, top, torch.nan)
    return G / G.norm(dim=-1, keepdim=True)


def cosines(G: torch.Tensor) -> torch.Tensor:
    """Pairwise cosines of the rows of G (``metrics.cosine_matrix``, safe for rows of any scale)."""
    U = _unit(G)
    return U @ U.T


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(_unit(torch.stack([a, b])).prod(dim=0).sum())


def offdiag_mean(C) -> float:
    """Mean of the off-diagonal entries of a square matrix."""
    C = np.asarray(C, float)
    n = C.shape[0]
    return float((C.sum() - np.trace(C)) / (n * (n - 1)))


def class_vs_rest(G: torch.Tensor) -> np.ndarray:
    """(N,): cos(g_n, sum_{n' != n} g_n'), each class's gradient against the pull of all the others.

    Unlike the mean off-diagonal cosine, this does not average a conflict away:
    with one class opposed to N-1 mutually aligned ones (cosines -1 and +1) the
    mean off-diagonal cosine is 0 at N = 4, while every class-vs-rest cosine is -1.
    """
    tot = G.sum(0)
    return np.array([_cos(G[n], tot - G[n]) for n in range(G.shape[0])])


def shared_conflict(run: Run, split: str = "train") -> tuple[pd.DataFrame, np.ndarray]:
    """Per seed, class-gradient cosines of a one-expert model (M = 1), where every class shares the expert.

    Columns: ``offdiag_cos`` (mean off-diagonal cosine), ``vs_rest_cos`` (mean over
    classes of ``class_vs_rest``), ``min_cos`` (most negative pair).  Also the (S,N,N) cosines.
    """
    if run.cfg.M != 1:
        raise ValueError(f"shared_conflict needs an M = 1 run; got M={run.cfg.M}")
    mats, rows = [], []
    for s, seed in enumerate(run.seeds):
        G = expert_class_gradients(run, s, 0, split)
        C = cosines(G).numpy()
        mats.append(C)
        rows.append({"seed": seed, "offdiag_cos": offdiag_mean(C), "vs_rest_cos": float(class_vs_rest(G).mean()),
                     "min_cos": float(C.min())})
    return pd.DataFrame(rows), np.stack(mats)


def specialist_conflict(run: Run, split: str = "train", min_share: float = 0.01, halves_seed: int = 0):
    """One row per (seed, used expert) of the MoT, and the class-gradient cosine matrices.

    Columns: specialty n*, share of training samples routed to the expert,
    ``purity`` (share of its routed samples of class n*), ``within_cos`` (cosine
    between the gradients of two random halves of its routed samples),
    ``own_vs_other`` (mean over n != n* of cos(u, g_n), u its actual update, g_n
    class n's gradient at its weights as if routed to it), ``offdiag_cos`` (mean
    off-diagonal of its N x N class-gradient cosine matrix, same counterfactual).
    """
    sp = run.data.train if split == "train" else run.data.test
    idx, _, _ = eval_routing(run, sp)
    spec = mt.specialty(run.params["W"], run.data.V)
    gen = torch.Generator().manual_seed(halves_seed)
    rows, mats = [], {}
    for s, seed in enumerate(run.seeds):
        for m in range(run.cfg.M):
            mask = idx[s] == m
            share = float(mask.to(torch.float64).mean())
            if share < min_share:
                continue
            X, y, cls, w = _expert_inputs(run, split, s, m)
            W = run.params["W"][s, m]
            n_star = int(spec[s, m])
            u = _grad_on(run, X[mask], y[mask], w[mask], W)
            sel = torch.nonzero(mask).ravel()
            sel = sel[torch.randperm(sel.numel(), generator=gen)]
            h1, h2 = sel[: sel.numel() // 2], sel[sel.numel() // 2:]
            within = _cos(_grad_on(run, X[h1], y[h1], w[h1], W), _grad_on(run, X[h2], y[h2], w[h2], W))
            G = mt.class_gradients(W, X, y, cls, run.setting.N, a=w, act=run.cfg.activation)
            C = cosines(G).numpy()
            mats[(seed, m)] = C
            others = [n for n in range(run.setting.N) if n != n_star]
            rows.append({"seed": seed, "expert": m, "specialty": n_star, "share": share,
                         "purity": float((cls[mask] == n_star).to(torch.float64).mean()),
                         "within_cos": within,
                         "own_vs_other": float(np.mean([_cos(u, G[n]) for n in others])),
                         "offdiag_cos": offdiag_mean(C)})
    return pd.DataFrame(rows), mats


def single_class_gradients(run: Run, s: int, split: str = "train") -> torch.Tensor:
    """(N, H*J*d): per-class gradients of the single transformer's loss wrt all its FFN vectors (seed index s)."""
    if run.cfg.signed_heads:
        raise ValueError("the mechanism's measures cover the single transformer whose heads all add (signed_heads=False)")
    sp = run.data.train if split == "train" else run.data.test
    sigma = activation(run.cfg.activation)
    W = run.params["W"][s:s + 1].detach().clone().requires_grad_(True)
    F = single_forward({"W": W, "WKQ": run.params["WKQ"][s:s + 1]}, sp.X[s:s + 1], sigma)[0]
    losses = logistic_loss(sp.y[s] * F)
    grads = []
    for n in range(run.setting.N):
        mask = sp.cls[s] == n
        grads.append(torch.autograd.grad(losses[mask].mean(), W, retain_graph=True)[0].reshape(-1))
    return torch.stack(grads)


def single_conflict(run: Run, split: str = "train") -> tuple[pd.DataFrame, np.ndarray]:
    """Per seed, the mean off-diagonal class-gradient cosine of the single transformer's FFN weights."""
    mats, rows = [], []
    for s, seed in enumerate(run.seeds):
        C = cosines(single_class_gradients(run, s, split)).numpy()
        mats.append(C)
        rows.append({"seed": seed, "offdiag_cos": offdiag_mean(C)})
    return pd.DataFrame(rows), np.stack(mats)


# ----------------------------------------------------------------------------- curvature
def expert_hessian_spectrum(run: Run, split: str = "train", subspace: str = "signals", min_share: float = 0.0):
    """Eigen-decomposition of each used expert's Stage III Hessian (same loss as ``expert_hessian_min_eig``).

    Returns a DataFrame (seed, expert, lam_min, lam_max, and the squared weight of
    the smallest eigenvalue's eigenvector on the expert's own v_{n*}, on the other
    v_n, and on the c_n), with experts receiving less than ``min_share`` skipped.
    ``subspace``: "signals" (span of every c_n, v_n), "full" (R^d) or "own" (span{c_n*, v_n*} of the expert's
    specialty n*; lam_min and lam_max only).
    """
    data = run.data
    sp = data.train if split == "train" else data.test
    p = run.params
    sigma = activation(run.cfg.activation)
    idx, pi, a = eval_routing(run, sp)
    spec = mt.specialty(p["W"], data.V)
    N = run.setting.N
    rows = []
    for s, seed in enumerate(run.seeds):
        B = torch.linalg.qr(data.signals[s].T).Q
        for m in range(run.cfg.M):
            mask = idx[s] == m
            if mask.sum() == 0 or float(mask.to(torch.float64).mean()) < min_share:
                continue
            X, y, pim, am = sp.X[s][mask], sp.y[s][mask], pi[s][mask], a[s][mask]

            def loss(w):
                return logistic_loss(y * pim * (am * sigma(X @ w)).sum(-1)).mean()

            H = torch.func.hessian(loss)(p["W"][s, m])
            n_star = int(spec[s, m])
            if subspace == "own":      # span{c_n*, v_n*}: the directions of the expert's own class's problem
                Bo = torch.linalg.qr(data.signals[s][[n_star, N + n_star]].T).Q
                ev = torch.linalg.eigvalsh(Bo.T @ H @ Bo)
                v = data.signals[s][N + n_star]
                rows.append({"seed": seed, "expert": m, "lam_min": float(ev[0]), "lam_max": float(ev[-1]),
                             "curv_own_v": float(v @ H @ v), "curv_own_c": float(data.signals[s][n_star] @ H @ data.signals[s][n_star])})
                continue
            if subspace == "signals":
                H = B.T @ H @ B
            ev, vec = torch.linalg.eigh(H)
            v = vec[:, 0] if subspace == "signals" else B.T @ vec[:, 0]
            proj = (v @ B.T @ data.signals[s].T) if subspace == "signals" else (data.signals[s] @ vec[:, 0])
            proj = proj ** 2
            rows.append({"seed": seed, "expert": m, "lam_min": float(ev[0]), "lam_max": float(ev[-1]),
                         "on_own_v": float(proj[N + n_star]),
                         "on_other_v": float(proj[N:].sum() - proj[N + n_star]),
                         "on_c": float(proj[:N].sum())})
    return pd.DataFrame(rows)


def single_ffn_hessian(run: Run, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``mot.metrics.single_ffn_hessian`` in closed form (the same Hessian to rounding, about 50x faster:
    no autograd through the attention for each of the H*J*d directions).  With the attention A held,
    F_i = sum_{h,q,j} sigma(<W_hj, u_ihq>), u_ihq = sum_k A_ihqk x_ik, and for L = mean_i l(y_i F_i):
    d2L/dW_hj dW_h'j' = mean_i [ l''(m_i) g_ihj g_ih'j'^T + l'(m_i) y_i [hj = h'j'] sum_q sigma''(z_ihqj) u_ihq u_ihq^T ],
    g_ihj = y_i sum_q sigma'(z_ihqj) u_ihq (sigma' and sigma'' by forward-mode differentiation, so any
    activation works).  Returns (H (HJd, HJd), B (HJd, HJ*2N)) as the reference does."""
    data, p = run.data, run.params
    sigma = activation(run.cfg.activation)
    _, H, J, d = p["W"].shape
    X, y = data.train.X[s], data.train.y[s]
    W, WKQ = p["W"][s], p["WKQ"][s]
    n = X.shape[0]
    A = row_softmax(torch.einsum("nqd,hde,nke->nhqk", X, WKQ, X))
    U = torch.einsum("nhqk,nkd->nhqd", A, X)
    z = torch.einsum("nhqd,hjd->nhqj", U, W)
    s1 = torch.func.jvp(sigma, (z,), (torch.ones_like(z),))[1]
    s2 = torch.func.jvp(lambda t: torch.func.jvp(sigma, (t,), (torch.ones_like(t),))[1], (z,), (torch.ones_like(z),))[1]
    m = y * sigma(z).sum(dim=(1, 2, 3))
    l1, l2 = -torch.sigmoid(-m), torch.sigmoid(m) * torch.sigmoid(-m)     # l'(m), l''(m) of log(1 + e^-m)
    G = torch.einsum("nhqj,nhqd->nhjd", s1, U).reshape(n, H * J * d) * y[:, None]
    D = torch.einsum("n,nhqj,nhqd,nhqe->hjde", l1 * y, s2, U, U) / n
    Hm = torch.einsum("n,na,nb->ab", l2, G, G) / n + torch.block_diag(*D.reshape(H * J, d, d))
    return Hm, torch.block_diag(*([torch.linalg.qr(data.signals[s].T).Q] * (H * J)))


def single_hessian_spectrum(run: Run) -> pd.DataFrame:
    """Smallest and largest Hessian eigenvalue of the single transformer's loss in its FFN weights, per seed.

    The same loss and restriction as ``mot.metrics.single_hessian_min_eig`` (attention
    held at its trained value; "signals": each FFN vector restricted to span{c_n, v_n}),
    from one Hessian per seed for both subspaces.  Columns: seed, subspace, lam_min, lam_max.
    """
    rows = []
    for s in range(len(run.seeds)):
        Hm, B = single_ffn_hessian(run, s)
        for sub, Hs in (("full", Hm), ("signals", B.T @ Hm @ B)):
            ev = torch.linalg.eigvalsh(Hs)
            rows.append({"seed": run.seeds[s], "subspace": sub, "lam_min": float(ev[0]), "lam_max": float(ev[-1])})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the chapter's experiment
def _mot_and_single(P: MechanismParams) -> dict:
    """The MoT (M experts) at the checkpoints and at T2, then the single transformer read at the MoT's final
    training loss (it needs that loss)."""
    setting, seeds, cfg = P.setting(), list(P.seeds), P.config()
    data = make_dataset(setting, seeds)
    steps = P.steps()
    mot = checkpoints(setting, cfg, seeds, data, [t for t in steps if t > 0] + [cfg.T2])
    at_T2 = mot[cfg.T2] if cfg.T2 in steps else mot.pop(cfg.T2)     # the start of Stage III (curvature there)
    side = seeds[:P.single_seeds]          # the single transformer on the first single_seeds seeds
    target = mot[max(mot)].final("train_loss")
    # read at the MoT's final training loss: its training stops once every seed has reached it (the same weights
    # as a run to single_T; a seed that never reaches it is read at single_T)
    single = at_matched_loss(train_single(setting, P.single_config(), side,
                                          data=data if side == seeds else make_dataset(setting, side),
                                          snapshot_at=range(P.single_config().T + 1),
                                          until_loss=target.loc[side].to_numpy()),
                             target)
    return {"mot": mot, "single": single, "mot_T2": at_T2}


def _shared(P: MechanismParams) -> dict:
    """The shared expert: the same model and schedule with one expert, at the checkpoints."""
    setting, seeds, cfg = P.setting(), list(P.seeds), P.config()
    return checkpoints(setting, cfg.replace(M=1), seeds, make_dataset(setting, seeds), P.steps())


def run_all(P: MechanismParams, jobs: int | None = None) -> dict:
    """Train everything the chapter measures, on one dataset per seed.

    Returns {"mot": {step: Run}, "shared": {step: Run}, "single": Run, "mot_T2": Run}: the MoT (M
    experts) and the shared expert (same model, M = 1) at the checkpoints
    ``P.steps()``, the single transformer at the MoT's final training loss, and the MoT at T2 (where Stage III
    starts).  The two independent groups (the MoT then the single transformer; the shared expert) go to ``jobs``
    worker processes (``executor.chapter_jobs()`` when None); the numbers do not depend on where they ran.
    """
    from ..experiments.executor import chapter_executor
    with chapter_executor(jobs) as ex:
        first, shared = ex.submit(_mot_and_single, P), ex.submit(_shared, P)
        out = first.result()
        out["shared"] = shared.result()
    return {"mot": out["mot"], "shared": out["shared"], "single": out["single"], "mot_T2": out["mot_T2"]}


def at_matched_loss(run: Run, target: pd.Series) -> Run:
    """The single transformer ``run`` (trained with a snapshot at every step) with each seed's weights taken at the
    first step at which its training loss is at or below ``target`` (per seed: the MoT's final training loss on
    the same data), or at the end if it never is: its curvature and conflict are then compared with the MoT's at
    the same loss, not at a float64 floor the tuned comparator reaches within its first hundred steps.  The
    steps are in ``run.matched_steps`` (per seed)."""
    trace = run.snapshots["train_loss"]                       # (T, S): row t - 1 is the loss after t - 1 steps
    T = trace.shape[0]
    steps = []
    for k, seed in enumerate(run.seeds):
        hit = torch.nonzero(trace[:, k] <= float(target.loc[seed]))
        steps.append(int(hit[0]) if len(hit) else T)
    params = {name: torch.stack([run.snapshots[t][name][k] for k, t in enumerate(steps)])
              for name in run.params}
    out = Run(run.setting, run.cfg, run.seeds, run.data, params, run.history, "single")
    out.matched_steps = dict(zip(run.seeds, steps))
    return out


def read_losses(run: Run) -> pd.DataFrame:
    """Training and test loss and test accuracy of the single transformer at the weights it is read at (an
    ``at_matched_loss`` run: each seed at its own step), per seed."""
    ev = single_evaluation(run.params, run.data, run.cfg)
    return pd.DataFrame({q: ev[q].numpy() for q in ("train_loss", "test_loss", "test_acc")},
                        index=pd.Index(run.seeds, name="seed"))


def conflict_table(runs: dict, min_share: float) -> tuple[pd.DataFrame, dict]:
    """Per (model, step, seed): the conflict measures; and the cosine matrices for the heatmaps.

    shared expert: ``vs_rest_cos`` and ``offdiag_cos`` over its N classes;
    specialists (median over the used experts of a seed): ``within_cos`` (its
    update on two halves of its own routed samples), ``own_vs_other`` (its update
    against the other classes' pull), ``purity``; single transformer at its end.
    """
    rows, mats = [], {}
    for t, r in runs["shared"].items():
        df, C = shared_conflict(r)
        mats[("shared", t)] = C
        for _, x in df.iterrows():
            rows.append({"model": "shared expert (M=1)", "step": t, "seed": int(x.seed),
                         "vs_rest_cos": x.vs_rest_cos, "offdiag_cos": x.offdiag_cos})
    for t, r in runs["mot"].items():
        df, C = specialist_conflict(r, min_share=min_share)
        mats[("specialists", t)] = (df, C)
        for seed, g in df.groupby("seed"):
            rows.append({"model": "MoT specialists", "step": t, "seed": int(seed),
                         "within_cos": g.within_cos.median(), "own_vs_other": g.own_vs_other.median(),
                         "purity": g.purity.min(), "offdiag_cos": g.offdiag_cos.median()})
    df, C = single_conflict(runs["single"])
    mats[("single", runs["single"].cfg.T)] = C
    for _, x in df.iterrows():
        rows.append({"model": "single transformer", "step": runs["single"].cfg.T, "seed": int(x.seed),
                     "offdiag_cos": x.offdiag_cos})
    return pd.DataFrame(rows), mats


def curvature_table(runs: dict, min_share: float) -> pd.DataFrame:
    """One row per (model, subspace, seed, expert): lam_min (the engine's), lam_max, and lam_min / lam_max.

    MoT specialists and the shared expert at the end of training (each used
    expert), and the single transformer.  lam_min comes from
    ``mot.metrics.expert_hessian_min_eig`` for the experts (lam_min_check: this module's
    decomposition of the same Hessian); lam_max and the eigenvector of lam_min from
    ``expert_hessian_spectrum``; the single transformer's from ``single_hessian_spectrum``.
    """
    rows = []
    for model, r in (("MoT specialists", runs["mot"][max(runs["mot"])]),
                     ("shared expert (M=1)", runs["shared"][max(runs["shared"])])):
        for sub in ("signals", "full"):
            lam_min = mt.expert_hessian_min_eig(r, "train", sub).numpy()
            spec = expert_hessian_spectrum(r, "train", sub, min_share=min_share)
            for _, x in spec.iterrows():
                s = r.seeds.index(int(x.seed))
                rows.append({"model": model, "subspace": sub, "seed": int(x.seed), "expert": int(x.expert),
                             "lam_min": float(lam_min[s, int(x.expert)]), "lam_max": x.lam_max,
                             "lam_min_check": x.lam_min, "min_vec_on_own_v": x.on_own_v,
                             "min_vec_on_other_v": x.on_other_v, "min_vec_on_c": x.on_c})
    # the single transformer's Hessian (128 x 128 at default sizes, over all training samples), in closed
    # form, once for both subspaces by ``single_hessian_spectrum``; its lam_min equals
    # ``mot.metrics.single_hessian_min_eig`` (autograd; tests/test_mechanism.py checks it)
    sg = runs["single"]
    for _, x in single_hessian_spectrum(sg).iterrows():
        rows.append({"model": "single transformer", "subspace": x.subspace, "seed": int(x.seed), "expert": -1,
                     "lam_min": x.lam_min, "lam_max": x.lam_max, "lam_min_check": x.lam_min})
    df = pd.DataFrame(rows)
    df["rel_min"] = df.lam_min / df.lam_max
    return df


def per_seed_curvature(curv: pd.DataFrame) -> pd.DataFrame:
    """Per (model, subspace, seed): the worst (smallest) lam_min / lam_max over the model's used experts."""
    return curv.groupby(["model", "subspace", "seed"], as_index=False).rel_min.min()


def stage3_start_curvature(run: Run, min_share: float) -> pd.DataFrame:
    """At the start of Stage III (``run`` cut at T2), per seed: the worst, over the used experts, of the curvature
    of the expert's Stage III loss along its own label signal v_n* relative to its Hessian's largest eigenvalue
    on R^d (``label``), and of lambda_min / lambda_max on span{c_n*, v_n*} (``own``)."""
    own = expert_hessian_spectrum(run, "train", "own", min_share=min_share)
    full = expert_hessian_spectrum(run, "train", "full", min_share=min_share).set_index(["seed", "expert"]).lam_max
    own = own.join(full.rename("lam_max_full"), on=["seed", "expert"])
    own["label"] = own.curv_own_v / own.lam_max_full
    own["own"] = own.lam_min / own.lam_max
    own["class_token"] = own.curv_own_c / own.lam_max_full
    return own.groupby("seed", as_index=False)[["label", "own", "class_token"]].min()


def stage3_start_rows(t2: pd.DataFrame, rel_tol: float, seed_share: float = 0.5) -> list[dict]:
    """Verdict rows on the curvature at the start of Stage III (``stage3_start_curvature``)."""
    most = f"a share above {seed_share:g}"
    return [
        stats.population_row(
            "at the start of Stage III each used expert's loss is strongly curved along its own label signal $v_{n^*}$",
            rf"seeds whose every used expert has $v_{{n^*}}^\top \nabla^2 L\, v_{{n^*}} \ge {rel_tol:g}\,\lambda_{{\max}}$: {most}",
            stats.share((t2.label.to_numpy() >= rel_tol).astype(float)), stats.above(seed_share, 1.0), SHARE_TEST,
            len(t2), id="mechanism.convex_label_T2"),
        stats.population_row(
            r"at the start of Stage III each used expert's loss is strongly convex on $\mathrm{span}\{c_{n^*}, v_{n^*}\}$",
            rf"seeds whose worst used expert has $\lambda_{{\min}}/\lambda_{{\max}} \ge {rel_tol:g}$ there: {most}",
            stats.share((t2.own.to_numpy() >= rel_tol).astype(float)), stats.above(seed_share, 1.0), SHARE_TEST,
            len(t2), id="mechanism.convex_own_T2"),
    ]


# ----------------------------------------------------------------------------- verdicts
MEAN_TEST = "mean over seeds of the per-seed {}, Student t 95%"
SHARE_TEST = "share of seeds passing, Wilson 95%"


def conflict_rows(conf: pd.DataFrame, T: int, margin: float, clear_gap: float, seed_share: float = 0.5,
                  purity_min: float = 0.95) -> list[dict]:
    """Verdict rows on gradient conflict at the end of training (step T), as population statements."""
    sh = conf[(conf.model == "shared expert (M=1)") & (conf.step == T)].set_index("seed").vs_rest_cos
    sp = conf[(conf.model == "MoT specialists") & (conf.step == T)].set_index("seed")
    gap = (sp.within_cos - sh).dropna()
    pure = (sp.purity >= purity_min).astype(float)
    return [
        stats.population_row("shared expert: per-class gradients conflict (class against the other classes' pull)",
                             f"mean $\\cos(g_n, \\sum_{{m \\ne n}} g_m)$ at most $-{margin:g}$",
                             stats.mean_t(sh.to_numpy()), (-np.inf, -margin), MEAN_TEST.format("cosine"), len(sh),
                             id="mechanism.shared_conflict"),
        stats.population_row("specialists: the gradient of the samples routed to them agrees with itself, "
                             "clearly more than the shared expert's classes agree",
                             f"within-specialist cosine minus shared cosine at least {clear_gap:g}",
                             stats.mean_t(gap.to_numpy()), (clear_gap, np.inf), MEAN_TEST.format("difference"), len(gap),
                             id="mechanism.specialists_agree"),
        stats.population_row("specialists: routing keeps the other classes' pull out",
                             f"seeds whose worst used expert gets at least {purity_min:g} of its samples from its own "
                             f"class: a share above {seed_share:g}",
                             stats.share(pure.to_numpy()), stats.above(seed_share, 1.0), SHARE_TEST, len(pure),
                             id="mechanism.routing_pure"),
    ]


def curvature_rows(seedwise: pd.DataFrame, rel_tol: float, seed_share: float = 0.5) -> list[dict]:
    """Verdict rows on the smallest Hessian eigenvalue (relative to the largest), as population statements."""
    rows = []
    for sub, name, id in (("signals", "$\\mathrm{span}\\{c_n, v_n\\}$", "mechanism.convex_signals"),
                          ("full", "$\\mathbb{R}^d$", "mechanism.convex_full")):
        e = seedwise[(seedwise.model == "MoT specialists") & (seedwise.subspace == sub)].rel_min.to_numpy()
        rows.append(stats.population_row(
            f"each used expert's Stage III loss is strongly convex on {name}",
            f"seeds whose worst used expert has $\\lambda_{{\\min}}/\\lambda_{{\\max}} \\ge {rel_tol:g}$: "
            f"a share above {seed_share:g}",
            stats.share((e >= rel_tol).astype(float)), stats.above(seed_share, 1.0), SHARE_TEST, len(e), id=id))
    e = seedwise[(seedwise.model == "MoT specialists") & (seedwise.subspace == "signals")].set_index("seed").rel_min
    s = seedwise[(seedwise.model == "single transformer") & (seedwise.subspace == "signals")].set_index("seed").rel_min
    # a per-seed comparison (the single transformer against the same seed's experts): the differences are
    # heavy-tailed (1e-5 to 1e-2), so a mean's t interval can cross 0 when every seed is below; the share of
    # seeds below is the population statement
    d = (s - e).dropna().to_numpy()
    rows.append(stats.population_row(
        "single transformer's smallest eigenvalue is below the experts' (signal span)",
        "seeds whose single $\\lambda_{\\min}/\\lambda_{\\max}$ is below their experts' worst: "
        f"a share above {seed_share:g}",
        stats.share((d < 0).astype(float)), stats.above(seed_share, 1.0), SHARE_TEST, len(d),
        id="mechanism.single_flatter"))
    return rows

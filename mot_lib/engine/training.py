"""Training loops: the MoT's three-stage algorithm, its ablations, and the single transformer.

One call trains every seed at once (seeds are the leading tensor dimension; the
loss is summed over seeds, so their gradients never mix).  The history is a tidy
DataFrame: one row per (step, seed, quantity[, expert, i, j]).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from . import metrics as mt
from .config import Setting, SingleConfig, TrainConfig, check_seeds
from .data import Dataset, make_dataset, seed_streams
from . import fused
from .grads import mot_step, single_step
from .models import (activation, attention_scores, effective_W, head_signs, init_mot, init_single, logistic_loss, mot_forward,
                     route, router_scores, single_forward, token_weights_all, uniform_weights, _weights)

HISTORY_COLUMNS = ["step", "seed", "stage", "quantity", "expert", "i", "j", "value"]


class DivergenceError(FloatingPointError):
    """A run produced NaN/inf: stop with a message instead of plotting NaN.  ``seeds``: the seeds that diverged, when
    known (the others had not, up to that step)."""

    def __init__(self, message: str, seeds=None):
        super().__init__(message)
        self.seeds = None if seeds is None else list(seeds)


@dataclass
class Run:
    """A finished run: what went in (setting, cfg, seeds, data) and what came out."""
    setting: Setting
    cfg: TrainConfig | SingleConfig
    seeds: list
    data: Dataset
    params: dict
    history: pd.DataFrame
    model: str  # "mot" | "single"
    snapshots: dict = field(default_factory=dict)  # step -> weights kept during training (train_mot snapshot_at)
    streams: dict = field(default_factory=dict)    # step -> the exploration streams' states there (``resume_point``)
    stopped_at: int | None = None  # steps taken when training stopped before cfg.T (train_single until_loss)
    diverged: list = field(default_factory=list)  # seeds left out because their training diverged (train_surviving)

    def resume_point(self, step: int, seeds=None) -> tuple:
        """(step, weights, exploration states) at a snapshot step: ``train_mot(..., start=...)`` continues from there
        exactly as this run did, so runs that differ only after ``step`` (a Stage III step size) share what comes
        before it.  ``seeds``: the point of these seeds of the run only (every seed's numbers are its own)."""
        if step not in self.snapshots or step not in self.streams:
            raise ValueError(f"step {step} was not kept (snapshot_at); kept: {sorted(self.snapshots)}")
        point = (step, self.snapshots[step], self.streams[step])
        if seeds is None:
            return point
        missing = [s for s in seeds if s not in self.seeds]
        if missing:
            raise ValueError(f"seeds {missing} are not seeds of this run ({self.seeds})")
        return slice_point(point, [self.seeds.index(s) for s in seeds])

    def rows(self, quantity: str) -> pd.DataFrame:
        """The history's rows of one quantity (the history is split by quantity once, on first use:
        comparing a million-row string column per call cost more than the training)."""
        if getattr(self, "_by_quantity", None) is None:
            self._by_quantity = dict(tuple(self.history.groupby("quantity", sort=False)))
        return self._by_quantity.get(quantity, self.history.iloc[:0])

    def at(self, quantity: str, step: int | None = None, seed: int | None = None) -> pd.DataFrame:
        """The rows of one quantity, at one recorded step and/or for one seed."""
        r = self.rows(quantity)
        if step is not None:
            r = r[r.step.to_numpy() == step]
        if seed is not None:
            r = r[r.seed.to_numpy() == seed]
        return r

    def scalar(self, quantity: str) -> pd.DataFrame:
        """A per-seed scalar quantity as a wide table: index step, one column per seed."""
        h = self.rows(quantity)
        h = h[(h.expert < 0) & (h.i < 0)]
        if h.empty:
            raise KeyError(f"quantity {quantity!r} was not recorded; recorded: {sorted(self.history.quantity.unique())}")
        return h.pivot(index="step", columns="seed", values="value")

    def final(self, quantity: str) -> pd.Series:
        """Last recorded value of a scalar quantity, per seed."""
        return self.scalar(quantity).iloc[-1]


def slice_point(point: tuple, positions: list) -> tuple:
    """A resume point (``Run.resume_point``) restricted to the seeds at ``positions`` of its run, in that order."""
    step, weights, states = point
    pos = torch.as_tensor(positions, dtype=torch.long)
    return step, {k: v.index_select(0, pos) for k, v in weights.items()}, [states[i] for i in positions]


def join_runs(runs: list) -> Run:
    """One Run of several runs of the same model, setting and config on disjoint seeds (every seed's numbers are
    its own): their seeds in order, weights and histories stacked, the seeds each left out (``Run.diverged``)."""
    first = runs[0]
    if any(r.setting != first.setting or r.cfg != first.cfg or r.model != first.model for r in runs):
        raise ValueError("join_runs: the runs differ in setting, config or model")
    seeds = [s for r in runs for s in r.seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"join_runs: the runs share seeds ({seeds})")
    return Run(first.setting, first.cfg, seeds, make_dataset(first.setting, seeds),
               {k: torch.cat([r.params[k] for r in runs]) for k in first.params},
               pd.concat([r.history for r in runs], ignore_index=True), first.model,
               diverged=[s for r in runs for s in r.diverged])


class _Recorder:
    """Collects recorded tensors as numpy arrays; the tidy DataFrame is built once, in ``frame``
    (building a small DataFrame per quantity and step cost more than the step itself)."""

    def __init__(self, seeds):
        self.seeds = np.asarray(seeds)
        self.parts = []

    def add(self, step: int, stage: str, quantity: str, values: torch.Tensor, dims: tuple = ()):
        """values has shape (S, *sizes); dims names the trailing axes among expert, i, j."""
        self.parts.append((step, stage, quantity, values.detach().to(torch.float64).numpy().copy(), dims))

    def frame(self) -> pd.DataFrame:
        cols = {c: [] for c in HISTORY_COLUMNS}
        for step, stage, quantity, v, dims in self.parts:
            k = v.size
            grids = np.meshgrid(np.arange(v.shape[0]), *[np.arange(n) for n in v.shape[1:]], indexing="ij")
            cols["step"].append(np.full(k, step))
            cols["seed"].append(self.seeds[grids[0].ravel()])
            cols["stage"].append(np.full(k, stage, dtype=object))
            cols["quantity"].append(np.full(k, quantity, dtype=object))
            for name in ("expert", "i", "j"):
                cols[name].append(grids[1 + dims.index(name)].ravel() if name in dims else np.full(k, -1))
            cols["value"].append(v.ravel())
        # columns already in HISTORY_COLUMNS order; copy=False keeps pandas from consolidating a million rows
        return pd.DataFrame({c: np.concatenate(x) for c, x in cols.items()}, copy=False)


def prepare(setting: Setting, cfg, cfg_type: type, who: str, seeds, data: Dataset | None):
    """The checks every training entry point makes before any training: (seeds, data), the data drawn
    here when not given.  A bad argument raises a ValueError naming it."""
    seeds = check_seeds(seeds)
    if not isinstance(setting, Setting) or not isinstance(cfg, cfg_type):
        raise ValueError(f"{who} needs a Setting and a {cfg_type.__name__}")
    data = data if data is not None else make_dataset(setting, seeds)
    if data.seeds != seeds or data.setting != setting:
        raise ValueError("data was drawn for another setting or other seeds")
    return seeds, data


def _progress(total: int, desc: str, progress):
    """A tqdm bar unless disabled (progress=False, or MOT_PROGRESS=0 in the environment)."""
    if progress is None:
        progress = os.environ.get("MOT_PROGRESS", "1") != "0"
    if not progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False, mininterval=0.5)


def _check_finite(step: int, stage: str, loss: torch.Tensor, seeds, params: dict):
    """Stop with a message naming the seeds whose ``loss`` (S,), or outputs (S,n), or weights are not finite."""
    if loss.dtype == torch.float64 and fused.all_finite(loss, *params.values()):
        return
    bad = ~torch.isfinite(loss.reshape(loss.shape[0], -1)).all(-1)
    for name, p in params.items():
        bad = bad | ~torch.isfinite(p.reshape(p.shape[0], -1)).all(-1)
    if bad.any():
        which = [seeds[i] for i in torch.nonzero(bad).ravel().tolist()]
        raise DivergenceError(
            f"training diverged at step {step} ({stage}): loss or weights became NaN/inf for seed(s) {which}; "
            f"lower the step sizes (eta1, eta2, eta3, eta_router or eta) or sigma0", seeds=which)


def stage_of(t: int, cfg: TrainConfig) -> str:
    """Stage label of update t (1-based): "I", "II", "III", or "joint" (W and W_KQ trained together)."""
    if cfg.schedule == "joint":
        return "joint"
    if cfg.schedule == "I_joint":
        return "I" if t <= cfg.T1 else "joint"
    if cfg.schedule == "joint_III":
        return "joint" if t <= cfg.T2 else "III"
    return "I" if t <= cfg.T1 else ("II" if t <= cfg.T2 else "III")


def stage_ends(cfg: TrainConfig) -> tuple:
    """The steps after which the schedule changes stage (recorded whatever ``record_every`` is)."""
    return {"three_stage": (cfg.T1, cfg.T2), "I_joint": (cfg.T1,), "joint_III": (cfg.T2,)}.get(cfg.schedule, ())


def _step(p: torch.Tensor, g: torch.Tensor, eta: float, opt: str):
    """In-place update. ngd: per-expert (per leading two dims) normalized gradient step."""
    if opt == "gd":
        p -= eta * g
    else:
        norm = g.reshape(g.shape[0], g.shape[1], -1).norm(dim=-1)
        norm = norm.reshape(norm.shape + (1,) * (g.dim() - 2))
        p -= eta * torch.where(norm > 0, g / norm.clamp_min(1e-300), torch.zeros_like(g))


def _mot_losses(rec: _Recorder, step: int, stage: str, cfg: TrainConfig, p: dict, data: Dataset, sigma, caches: dict,
                accuracy: bool, splits=("train", "test"), fwd=None):
    """Record the loss (and, ``accuracy``, the accuracy) on each of ``splits`` at the current weights, each split
    routed by the gate's own choice (no exploration); returns the last split's routing and token weights.
    ``fwd``: the split's name -> (F, idx, a) through the fused kernels (None: through ``models``)."""
    for name in splits:
        sp = getattr(data, name)
        if fwd is not None:
            F, idx, a = fwd(name)
        else:
            idx = route(router_scores(sp.xsum, p["theta"]))
            a = _weights(cfg, sp.X, p["WKQ"], idx, caches.get(name))
            F, _, _ = mot_forward(p, sp.X, sp.xsum, idx, a, sigma)
        rec.add(step, stage, f"{name}_loss", logistic_loss(sp.y * F).mean(-1))
        if accuracy:
            rec.add(step, stage, f"{name}_acc", (torch.sign(F) == sp.y).to(torch.float64).mean(-1))
    return idx, a


def _mot_record(rec: _Recorder, step: int, stage: str, cfg: TrainConfig, p: dict, data: Dataset, sigma,
                caches: dict, detail: bool = True, fwd=None):
    N, M = data.setting.N, cfg.M
    W = effective_W(p["W"])      # one vector per expert (J-neuron experts: sum_j s_j W^(m,j))
    with torch.no_grad():
        idx, a = _mot_losses(rec, step, stage, cfg, p, data, sigma, caches, accuracy=True, fwd=fwd)
        sp = data.test
        # routing and attention measured on the fresh test sample (no exploration)
        spec = mt.specialty(W, data.V)
        D = mt.dispatch_matrix(idx, sp.cls, N, M)
        rec.add(step, stage, "routing_acc", mt.routing_accuracy(idx, sp.cls, spec))
        rec.add(step, stage, "experts_used", mt.experts_used(idx, M))
        rec.add(step, stage, "dispatch_entropy", mt.dispatch_entropy(D))
        rec.add(step, stage, "classes_covered",
                torch.stack([torch.unique(spec[s]).numel() * torch.ones((), dtype=torch.float64)
                             for s in range(spec.shape[0])]))
        rec.add(step, stage, "label_weight",  # attention weight the label token receives, mean over samples
                torch.gather(a, 2, sp.label_pos[..., None])[..., 0].mean(-1))
        if not detail:
            return
        rec.add(step, stage, "dispatch", D, ("i", "expert"))
        rec.add(step, stage, "align", mt.alignments(W, data.V), ("expert", "i"))
        rec.add(step, stage, "gap", mt.specialization_gap(W, data.V), ("expert",))
        rec.add(step, stage, "specialty", spec, ("expert",))
        rec.add(step, stage, "attn", attention_scores(p["WKQ"], data.signals), ("expert", "i", "j"))


#: how the training loops compute gradients: "fused" (the default: the MoT's step through ``fused``'s compiled
#: kernels where they cover the model, one-neuron experts with their own W_KQ, else as "closed"; the single
#: transformer through ``fused.single_step``), "closed" (``grads``: the passes written out in torch ops) or
#: "autograd" (the graph through ``models``; kept as the reference the tests and ``make bench`` compare with)
GRADIENTS = ("fused", "closed", "autograd")


def _check_gradients(gradients: str):
    if gradients not in GRADIENTS:
        raise ValueError(f"gradients={gradients!r} is not allowed; choose one of {list(GRADIENTS)}")


def _autograd_mot_step(cfg, p, X, xsum, y, idx, cache, sigma, wrt):
    """The MoT's loss and gradients through autograd (the reference for ``grads.mot_step``)."""
    q = {k: v.detach().requires_grad_(k in wrt) for k, v in p.items()}
    a = _weights(cfg, X, q["WKQ"], idx, cache)
    F, _, _ = mot_forward(q, X, xsum, idx, a, sigma)
    per_seed = logistic_loss(y * F).mean(-1)
    grads = dict(zip(wrt, torch.autograd.grad(per_seed.sum(), [q[k] for k in wrt]))) if wrt else {}
    return per_seed.detach(), grads


def train_mot(setting: Setting, cfg: TrainConfig, seeds, data: Dataset | None = None,
              progress: bool | None = None, snapshot_at=(), gradients: str = "fused", start: tuple | None = None,
              loss_every: int | None = None, detail: bool = True) -> Run:
    """Train the MoT (or its attention-free / joint ablations, per ``cfg``) for every seed at once.

    ``snapshot_at``: steps after which a copy of the weights is kept in ``run.snapshots[t]`` (one run
    gives the state at several checkpoints; training is deterministic, so a run cut at t would give
    the same weights), and the exploration streams' states in ``run.streams[t]``.  ``start``: a run's
    ``resume_point(t)``; training continues from step t + 1 with those weights and streams, and gives the
    numbers the run would have given past t under ``cfg`` (which may differ from the first run's after t only);
    the history then starts at t.  ``loss_every``: in Stage III, the training and test loss are recorded at every
    ``loss_every``-th step too, between the full records (a finer loss curve at the cost of two forward passes
    per such step; None: at the records only).  ``detail``: False records, at each record, the losses, accuracies and
    the scalar routing measures only, not the per-expert and per-class tables (dispatch, align, gap, specialty,
    attn): the same numbers, and a history a small fraction of the size (a twentieth for chapter 05's Stage III
    runs) for a run that reads only its losses."""
    _check_gradients(gradients)
    _check_loss_every(loss_every)
    seeds, data = prepare(setting, cfg, TrainConfig, "train_mot", seeds, data)
    streams = [seed_streams(s) for s in seeds]
    S, d = len(seeds), setting.d
    p = init_mot(S, cfg.M, d, cfg.sigma0, [g[1] for g in streams], cfg.J, cfg.shared_attention)
    if not cfg.attention:
        p["WKQ"].zero_()
    explore = [g[2] for g in streams]
    t0 = 0
    if start is not None:
        t0, weights, states = start
        if not 0 <= t0 < cfg.T or len(states) != S or set(weights) != set(p) or any(
                weights[k].shape != p[k].shape for k in p):
            raise ValueError(f"start: a resume point at step {t0} of a run with other seeds, model or shapes, or "
                             f"not before T={cfg.T}; give run.resume_point(t) of a run of the same model and seeds")
        p = {k: v.detach().clone() for k, v in weights.items()}
        for g, st in zip(explore, states):
            g.set_state(st)
    stream_states: dict = {}
    sigma = activation(cfg.activation)
    X, y = data.train.X, data.train.y
    rec = _Recorder(seeds)
    caches: dict = {}
    snapshots: dict = {}
    # the fused kernels (``fused``) where they cover the model, with the splits as they read them (made once)
    fuse = gradients == "fused" and fused.supported(p["W"], cfg.activation, cfg.shared_attention)
    splits = fused.Splits(data, cfg.M) if fuse else None
    uniform: dict = {}

    def a_cache(name):
        """The token weights the kernels take on split ``name``: every expert's when cached (attention frozen),
        uniform (S,1,n,L) for the attention-free MoE; None: attention computed live."""
        if cfg.attention:
            return caches.get(name)
        if name not in uniform:
            uniform[name] = uniform_weights(getattr(data, name).X, cfg.query_pool)[:, None]
        return uniform[name]

    def fwd(name):
        """A split's outputs, routing and token weights at the current weights, through the kernels."""
        return fused.forward(p, splits[name], a_cache(name), activation=cfg.activation, query_pool=cfg.query_pool)

    def all_weights(name):
        if fuse:
            return fused.token_weights_all(splits[name], p["WKQ"], cfg.query_pool)
        return token_weights_all(getattr(data, name).X, p["WKQ"], cfg.query_pool)

    def refresh_caches(stage, t):
        caches.clear()
        frozen = stage in ("I", "III")
        if cfg.attention and frozen:
            caches["train"] = all_weights("train")
            # the test split is read only at record time: cache all experts' weights when the stage records
            # more often than there are experts (cheaper than gathering per-sample W_KQ at every record)
            end = {"I": cfg.T1, "III": cfg.T}[stage]
            every = min(cfg.record_every, loss_every) if stage == "III" and loss_every else cfg.record_every
            if (end - t) // every > cfg.M:
                caches["test"] = all_weights("test")

    # the Stage III steps whose losses only the loss track records (loss_every); the training loss there comes
    # from the next step when Stage III routes without exploration (lam3 = 0, or lam = 0)
    lam_III = cfg.lam3 if cfg.lam3 is not None else cfg.lam
    free_train_loss = bool(loss_every) and lam_III == 0
    tracked = set()
    if loss_every:
        tracked = {t for t in range(t0 + 1, cfg.T + 1) if stage_of(t, cfg) == "III" and t % loss_every == 0}
    stage = stage_of(t0 + 1, cfg)
    refresh_caches(stage, t0)
    _mot_record(rec, t0, stage, cfg, p, data, sigma, caches, detail, fwd if fuse else None)
    bar = _progress(cfg.T - t0, "MoT" if cfg.attention else "attention-free MoE", progress)
    for t in range(t0 + 1, cfg.T + 1):
        new_stage = stage_of(t, cfg)
        if new_stage != stage:
            stage = new_stage
            refresh_caches(stage, t)
        train_W = stage in ("I", "III", "joint")
        train_KQ = cfg.attention and stage in ("II", "joint")
        lam = cfg.lam3 if stage == "III" and cfg.lam3 is not None else cfg.lam
        wrt = tuple(k for k, on in (("W", train_W), ("WKQ", train_KQ), ("theta", cfg.eta_router > 0)) if on)
        if fuse:
            # the outputs; the loss only where the loss track records it (a finite output is a finite loss)
            F, grads, idx, h = fused.step(p, splits["train"], lam, explore, None if train_KQ else a_cache("train"),
                                          activation=cfg.activation, query_pool=cfg.query_pool, wrt=wrt)
            per_seed = logistic_loss(y * F).mean(-1) if free_train_loss and (t - 1) in tracked else F
        else:
            h = router_scores(data.train.xsum, p["theta"]).detach()
            idx = route(h, lam, explore)
            if gradients == "autograd":
                per_seed, grads = _autograd_mot_step(cfg, p, X, data.train.xsum, y, idx, caches.get("train"), sigma,
                                                     wrt)
            else:
                a = None if train_KQ else _weights(cfg, X, p["WKQ"], idx, caches.get("train"))
                per_seed, grads = mot_step(p, X, data.train.xsum, y, idx, h, a, activation=cfg.activation,
                                           query_pool=cfg.query_pool, shared=cfg.shared_attention, wrt=wrt)
        _check_finite(t, f"stage {stage}", per_seed, seeds, {})
        if free_train_loss and (t - 1) in tracked:
            rec.add(t - 1, stage, "train_loss", per_seed.detach())
        with torch.no_grad():
            if "W" in grads:
                opt, eta = ((cfg.stage3_opt, cfg.eta3) if stage == "III" else (cfg.stage1_opt, cfg.eta1))
                _step(p["W"], grads["W"], eta, opt)
            if "WKQ" in grads:
                _step(p["WKQ"], grads["WKQ"], cfg.eta2, cfg.stage2_opt)
            if "theta" in grads:
                _step(p["theta"], grads["theta"], cfg.eta_router, "gd")
        _check_finite(t, f"stage {stage}", per_seed.detach(), seeds, p)
        if t in snapshot_at:
            snapshots[t] = {k: v.detach().clone() for k, v in p.items()}
            stream_states[t] = [g.get_state() for g in explore]
        if t % cfg.record_every == 0 or t == cfg.T or t in stage_ends(cfg):
            tracked.discard(t)
            _mot_record(rec, t, stage, cfg, p, data, sigma, caches, detail, fwd if fuse else None)
            # the share of this step's training samples whose explored choice is the gate's own top choice
            rec.add(t, stage, "explore_agree", (idx == h.argmax(-1)).to(torch.float64).mean(-1))
        elif t in tracked:
            # the training loss at these weights is the next step's own loss when Stage III does not explore (its
            # routing is then the gate's own choice, as at a record): it is recorded there, at no cost
            with torch.no_grad():
                _mot_losses(rec, t, stage, cfg, p, data, sigma, caches, accuracy=False,
                            splits=("test",) if free_train_loss else ("train", "test"), fwd=fwd if fuse else None)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return Run(setting, cfg, seeds, data, p, rec.frame(), "mot", snapshots, stream_states)


def _check_loss_every(loss_every):
    if loss_every is not None and (isinstance(loss_every, bool) or not isinstance(loss_every, int) or loss_every < 1):
        raise ValueError(f"loss_every={loss_every!r} is not allowed; give a whole number >= 1 (steps between loss "
                         "records in Stage III) or None")


def train_surviving(setting: Setting, cfg: TrainConfig, seeds: list, data: Dataset | None = None,
                    start: tuple | None = None, loss_every: int | None = None,
                    progress: bool | None = None, detail: bool = True) -> tuple[Run, list]:
    """``train_mot`` on every seed at once, leaving out the seeds that diverge (plain GD at a large step can, on a
    seed that the tuning or the default seeds did not foresee): the seeds a ``DivergenceError`` names leave, and the
    others train again together from the start (a seed's data, initialisation and exploration are its own, so its
    numbers do not depend on its batch, up to the last bit of a recorded loss in a batch of one), until none
    diverges.  ``start``, ``loss_every`` and ``detail`` as in ``train_mot`` (the resume point of these seeds).  Returns (the run
    of the seeds that did not diverge, with ``run.diverged`` naming the others; the diverged seeds); raises
    DivergenceError when every seed diverges, and re-raises one that names no seed."""
    seeds, data = prepare(setting, cfg, TrainConfig, "train_surviving", seeds, data)
    left, diverged = list(range(len(seeds))), []
    while left:
        batch = [seeds[i] for i in left]
        try:
            run = train_mot(setting, cfg, batch, data=data if len(batch) == len(seeds) else None,
                            start=None if start is None else slice_point(start, left), loss_every=loss_every,
                            progress=progress, detail=detail)
        except DivergenceError as e:
            if not e.seeds or not set(e.seeds) <= set(batch):
                raise
            diverged += [s for s in batch if s in e.seeds]
            left = [i for i in left if seeds[i] not in e.seeds]
            continue
        run.diverged = list(diverged)
        return run, list(diverged)
    raise DivergenceError(f"every seed diverged (seeds {seeds}); lower the step sizes (eta1, eta2, eta3, eta_router) "
                          "or sigma0", seeds=seeds)


def single_evaluation(p: dict, data: Dataset, cfg: SingleConfig, gradients: str = "fused",
                      splits: fused.Splits | None = None) -> dict:
    """The single transformer's per-seed (S,) ``train_loss``, ``train_acc``, ``test_loss`` and ``test_acc`` at
    weights ``p`` (what its history records), through the engine its run trained with (``gradients``: "fused", the
    kernel, on ``splits`` (made here when None); otherwise ``grads.single_step``'s torch ops)."""
    out = {}
    signs = head_signs(cfg.H, cfg.signed_heads)
    if gradients == "fused" and splits is None:
        splits = fused.Splits(data, 1)
    with torch.no_grad():
        for name, sp in (("train", data.train), ("test", data.test)):
            if gradients == "fused":
                F = fused.single_step(p, splits[name], activation=cfg.activation, grads=False, signs=signs)[2]
            else:
                F = single_step(p, sp.X, sp.y, activation=cfg.activation, grads=False, signs=signs)[2]
            out[f"{name}_loss"] = logistic_loss(sp.y * F).mean(-1)
            out[f"{name}_acc"] = (torch.sign(F) == sp.y).to(torch.float64).mean(-1)
    return out


def _single_record(rec, step, p, data, cfg, gradients, splits):
    for quantity, v in single_evaluation(p, data, cfg, gradients, splits).items():
        rec.add(step, "single", quantity, v)
    rec.add(step, "single", "attn", attention_scores(p["WKQ"], data.signals), ("expert", "i", "j"))


def train_single(setting: Setting, cfg: SingleConfig, seeds, data: Dataset | None = None,
                 progress: bool | None = None, gradients: str = "fused", snapshot_at=(),
                 until_loss=None) -> Run:
    """Train the single multi-head transformer by (normalized) GD, every seed at once: on all parameters, or
    stage-wise (``cfg.T1``, ``cfg.T2``: the neurons, then attention, then both).  ``snapshot_at``: steps (0: the
    initialisation) after which a copy of the weights is kept in ``run.snapshots[t]``, and with them the training
    loss of every step, ``run.snapshots["train_loss"]`` (T, S): row t - 1 is the loss of the weights after t - 1
    steps, the one step t descends.

    ``until_loss``: one training loss per seed (in the order of ``seeds``; needs ``snapshot_at``); training stops
    before the first step at which every seed's loss has been at or below its own at some step so far, and
    ``run.stopped_at`` is the number of steps taken (``cfg.T`` when it never stops early).  Every step taken is
    the one the full run takes, so the weights and losses up to there are the full run's."""
    _check_gradients(gradients)
    seeds, data = prepare(setting, cfg, SingleConfig, "train_single", seeds, data)
    target = None
    if until_loss is not None:
        target = torch.as_tensor(np.asarray(until_loss, dtype=np.float64))
        if target.shape != (len(seeds),) or not bool(torch.isfinite(target).all()):
            raise ValueError(f"until_loss: one finite training loss per seed is needed ({len(seeds)}), "
                             f"got shape {tuple(target.shape)}")
        if not snapshot_at:
            raise ValueError("until_loss needs snapshot_at: a run stopped early is read from its snapshots")
    streams = [seed_streams(s) for s in seeds]
    p = init_single(len(seeds), cfg.H, cfg.J, setting.d, cfg.sigma0, [g[1] for g in streams])
    sigma = activation(cfg.activation)
    X, y = data.train.X, data.train.y
    rec = _Recorder(seeds)
    splits = fused.Splits(data, 1) if gradients == "fused" else None
    _single_record(rec, 0, p, data, cfg, gradients, splits)
    bar = _progress(cfg.T, "single transformer", progress)
    signs = head_signs(cfg.H, cfg.signed_heads)
    snapshots, trace = {}, []
    if 0 in snapshot_at:
        snapshots[0] = {k: v.detach().clone() for k, v in p.items()}
    reached = torch.zeros(len(seeds), dtype=torch.bool)
    stopped_at = cfg.T
    for t in range(1, cfg.T + 1):
        if gradients != "autograd":     # the kernel ("fused") or its closed form in torch ops ("closed")
            per_seed, g, _ = (fused.single_step(p, splits["train"], activation=cfg.activation, signs=signs)
                              if gradients == "fused" else single_step(p, X, y, activation=cfg.activation, signs=signs))
            gW, gKQ = g["W"], g["WKQ"]
        else:
            q = {k: v.detach().requires_grad_(True) for k, v in p.items()}
            per_seed = logistic_loss(y * single_forward(q, X, sigma, signs)).mean(-1)
            gW, gKQ = torch.autograd.grad(per_seed.sum(), [q["W"], q["WKQ"]])
        _check_finite(t, "single transformer", per_seed.detach(), seeds, {})
        if target is not None:
            reached |= per_seed.detach() <= target
            if bool(reached.all()):        # the weights after t - 1 steps are the last any seed is read at
                trace.append(per_seed.detach().clone())
                stopped_at = t - 1
                if (t - 1) % cfg.record_every and t - 1 not in (cfg.T1, cfg.T2):   # not recorded yet
                    _single_record(rec, t - 1, p, data, cfg, gradients, splits)
                break
        with torch.no_grad():
            if not cfg.T1 < t <= cfg.T2:          # stage II of the stage-wise algorithm trains attention only
                _step(p["W"], gW, cfg.eta, cfg.opt)
            if t > cfg.T1:                        # stage I trains the neurons only
                _step(p["WKQ"], gKQ, cfg.eta, cfg.opt)
        _check_finite(t, "single transformer", per_seed.detach(), seeds, p)
        if snapshot_at:
            trace.append(per_seed.detach().clone())
            if t in snapshot_at:
                snapshots[t] = {k: v.detach().clone() for k, v in p.items()}
        if t % cfg.record_every == 0 or t == cfg.T or t in (cfg.T1, cfg.T2):    # and at its stages' ends
            _single_record(rec, t, p, data, cfg, gradients, splits)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if snapshot_at:
        snapshots["train_loss"] = torch.stack(trace)
    return Run(setting, cfg, seeds, data, p, rec.frame(), "single", snapshots, stopped_at=stopped_at)

"""Training on real data: the three stages (or joint), minibatch Adam, evaluation, and the chapter's summaries
and verdict rules (``07_real_data``'s parameters)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ... import stats
from ...book.registry import ChapterParams, register
from ...engine.config import _check, _check_list
from ...engine.training import DivergenceError
from .loaders import DATASETS, PRESETS, RealData, prepare, trivial_error
from .models import ATTN, ModelConfig, init_vit, model_sizes, mot_forward, vit_forward


DEVICES = ("auto", "cpu", "cuda")
MODELS = ("MoT", "MoT (joint)", "single ViT", "attention-free MoE")
#: The chapter's rule for a model that learned nothing, fixed before looking: its median final test error over
#: seeds is not below the trivial error (the lower of chance, 1 - 1/classes, and always answering the training
#: split's most frequent class) by at least this much; the verdict rows that compare it are then inconclusive.
CHANCE_MARGIN = 0.05


# ============================================================================ device
def resolve_device(device: str = "auto") -> torch.device:
    """"auto": CUDA when ``torch.cuda.is_available()``, else CPU; "cuda" without a GPU raises."""
    _check("device", device, choices=DEVICES)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch.cuda.is_available() is False (no GPU, or a CPU-only torch); "
                         "use device='auto' or device='cpu'")
    return torch.device(device)


def compute_dtype(device: torch.device) -> torch.dtype:
    """float64 on the CPU: the book's numerics, whose pinned kernels (``engine.numerics``) give the same numbers on
    every x86-64 CPU (float32 training did not: the digits chapter's errors moved in the third digit between an AMD
    and an Intel CPU under the same pins); float32 on a GPU, where the real-data runs are speed-bound."""
    return torch.float64 if torch.device(device).type == "cpu" else torch.float32


_MODEL_CODE = {"MoT": 1, "MoT (joint)": 1, "single ViT": 2, "attention-free MoE": 3}


@dataclass
class RealRun:
    """One model trained on every seed: a tidy history (model, seed, epoch, stage, train_loss,
    test_loss, test_acc), the final test-set routing (seed x class x expert counts) for the MoEs."""
    model: str
    seeds: list
    history: pd.DataFrame
    params: int
    size: dict
    dispatch: np.ndarray | None = None
    trivial_error: float = math.nan   # the test error of learning nothing on its data (``trivial_error``)

    def wide(self, quantity: str) -> pd.DataFrame:
        """index epoch, one column per seed."""
        return self.history.pivot(index="epoch", columns="seed", values=quantity)

    def final(self, quantity: str) -> pd.Series:
        return self.wide(quantity).iloc[-1]


def init_model(model: str, seed: int, data: RealData, size: dict, cfg: ModelConfig) -> dict:
    """One seed's parameters (CPU, float32), drawn from a generator seeded by (seed, model), so a seed's
    run does not depend on which other seeds share the batch."""
    gen = torch.Generator().manual_seed(1_000_003 * seed + _MODEL_CODE[model])
    p, L, C = data.p, data.L, data.n_classes
    if model == "single ViT":
        return init_vit(gen, (), p, L, size["width"], size["hidden"], C, True, cfg.sigma_qk)
    att = model != "attention-free MoE"
    P = init_vit(gen, (size["M"],), p, L, size["width"], size["hidden"], C, att, cfg.sigma_qk)
    P["theta"] = torch.zeros(p * L if cfg.gate == "flat" else p, size["M"])
    return P


def stage_of(epoch: int, cfg: ModelConfig, schedule: str) -> str:
    if schedule == "joint":
        return "joint"
    return "I" if epoch <= cfg.T1 else ("II" if epoch <= cfg.T2 else "III")


def _forward(model: str, P: dict, size: dict, x, mask, r=None):
    """Logits (S, B, C) and routing choice (S, B) or None."""
    if model == "single ViT":
        return vit_forward(P, x, mask, size["heads"]), None
    experts = {k: v for k, v in P.items() if k != "theta"}
    return mot_forward(experts, P["theta"], x, mask, max(size["heads"], 1), r)


def _batch(X, mask, idx):
    return X[idx], (None if mask is None else mask[idx])


@torch.no_grad()
def evaluate(model: str, P: dict, size: dict, data: RealData, S: int, chunk: int):
    """Test loss and accuracy per seed (S,), and the routing choice (S, n_test) (None for the single ViT)."""
    n = data.y_test.shape[0]
    loss = torch.zeros(S, device=data.X_test.device, dtype=data.X_test.dtype)
    correct = torch.zeros(S, device=data.X_test.device, dtype=data.X_test.dtype)
    choices = []
    step = max(1, chunk // S)
    for a in range(0, n, step):
        x = data.X_test[a:a + step]
        x = x[None].expand(S, *x.shape)
        m = None if data.mask_test is None else data.mask_test[a:a + step][None].expand(S, -1, -1)
        y = data.y_test[a:a + step]
        logits, choice = _forward(model, P, size, x, m)
        loss += F.cross_entropy(logits.transpose(1, 2), y[None].expand(S, -1), reduction="none").sum(1)
        correct += (logits.argmax(-1) == y).sum(1)
        if choice is not None:
            choices.append(choice)
    ch = torch.cat(choices, 1).cpu().numpy() if choices else None
    return (loss / n).cpu().numpy(), (correct / n).cpu().numpy(), ch


def train(model: str, data: RealData, seeds, cfg: ModelConfig, device="cpu", schedule: str | None = None) -> RealRun:
    """Train ``model`` (one of MODELS) on ``data`` for every seed at once with minibatch Adam.

    Returns the per-epoch history; raises DivergenceError if a loss turns NaN/inf."""
    if model not in MODELS:
        raise ValueError(f"model={model!r} is not allowed; choose one of {list(MODELS)}")
    device = resolve_device(device) if isinstance(device, str) else device
    schedule = schedule or ("three_stage" if model == "MoT" else "joint")
    seeds = list(seeds)
    S = len(seeds)
    size = model_sizes(data.p, data.L, data.n_classes, cfg)[model]
    per = [init_model(model, s, data, size, cfg) for s in seeds]
    dtype = compute_dtype(device)
    P = {k: torch.stack([q[k] for q in per]).to(device, dtype).requires_grad_(True) for k in per[0]}
    gate = [P["theta"]] if "theta" in P else []
    opt = torch.optim.Adam([{"params": [v for k, v in P.items() if k != "theta"], "lr": cfg.lr}]
                           + ([{"params": gate, "lr": cfg.lr_gate}] if gate else []))
    data = data.to(device, dtype)
    n = data.y_train.shape[0]
    rngs = [np.random.default_rng([seed, 7]) for seed in seeds]
    gens = [torch.Generator().manual_seed(1_000_003 * seed + 11) for seed in seeds]
    rows = []
    for epoch in range(1, cfg.epochs + 1):
        stage = stage_of(epoch, cfg, schedule)
        frozen = set(ATTN) if stage in ("I", "III") else (set(P) - set(ATTN) - {"theta"} if stage == "II" else set())
        perms = torch.from_numpy(np.stack([g.permutation(n) for g in rngs])).to(device)
        tot = torch.zeros(S, device=device, dtype=dtype)
        for a in range(0, n, cfg.batch_size):
            idx = perms[:, a:a + cfg.batch_size]
            x, m = _batch(data.X_train, data.mask_train, idx)
            y = data.y_train[idx]
            r = None
            if gate:
                r = torch.stack([torch.rand(idx.shape[1], size["M"], generator=g) for g in gens]).to(device, dtype) * cfg.lam
            logits, _ = _forward(model, P, size, x, m, r)
            ls = F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1)
            loss = ls.sum()
            if not torch.isfinite(loss):
                raise DivergenceError(f"{model}: the training loss is {loss.item()} at epoch {epoch}; "
                                      f"lower lr={cfg.lr:g} or lr_gate={cfg.lr_gate:g}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for k in frozen:
                P[k].grad = None
            opt.step()
            tot += ls.detach() * idx.shape[1]
        tl, acc, choice = evaluate(model, P, size, data, S, cfg.eval_chunk)
        if not np.all(np.isfinite(tl)):
            raise DivergenceError(f"{model}: the test loss is not finite at epoch {epoch}")
        train_loss = (tot / n).cpu().numpy()
        for i, seed in enumerate(seeds):
            rows.append(dict(model=model, seed=seed, epoch=epoch, stage=stage, train_loss=float(train_loss[i]),
                             test_loss=float(tl[i]), test_acc=float(acc[i])))
    dispatch = None
    if choice is not None:
        y = data.y_test.cpu().numpy()
        dispatch = np.zeros((S, data.n_classes, size["M"]), np.int64)
        for i in range(S):
            np.add.at(dispatch[i], (y, choice[i]), 1)
    return RealRun(model, seeds, pd.DataFrame(rows), size["params"], size, dispatch,
                   trivial_error(data.y_train.cpu().numpy(), data.y_test.cpu().numpy(), data.n_classes))


def train_all(data: RealData, seeds, cfg: ModelConfig, device="cpu", models=MODELS) -> dict[str, RealRun]:
    """Every model in ``models`` on the same data and seeds ("MoT (joint)" is the MoT trained jointly)."""
    return {m: train(m, data, seeds, cfg, device, schedule="joint" if m == "MoT (joint)" else None) for m in models}


# ============================================================================ measurements
def epochs_to_target(run: RealRun, target: float) -> pd.Series:
    """Per seed: the first epoch whose test accuracy reaches ``target`` (NaN if none does)."""
    w = run.wide("test_acc")
    hit = w >= target
    return pd.Series([float(w.index[hit[c].to_numpy()][0]) if hit[c].any() else float("nan") for c in w.columns],
                     index=w.columns)


def experts_used(dispatch: np.ndarray, used_share: float) -> np.ndarray:
    """Per seed: experts that receive at least ``used_share / M`` of the test samples (used_share=0.5:
    at least half an even share)."""
    counts = dispatch.sum(1)  # (S, M)
    M = counts.shape[1]
    frac = counts / counts.sum(1, keepdims=True)
    return (frac >= used_share / M).sum(1)


def summary_table(runs: dict[str, RealRun], target: float) -> pd.DataFrame:
    """Per model: parameters, width, final test error and loss (median over seeds), epochs to target."""
    out = []
    for name, run in runs.items():
        e = epochs_to_target(run, target)
        out.append({"model": name, "parameters": run.params, "width": run.size["width"],
                    "MLP hidden": run.size["hidden"], "experts": run.size["M"],
                    "final test error": float(np.median(1 - run.final("test_acc"))),
                    "final test loss": float(np.median(run.final("test_loss"))),
                    f"epochs to {target:g} (median)": float(np.nanmedian(e)) if e.notna().any() else float("nan"),
                    "seeds reaching it": int(e.notna().sum())})
    return pd.DataFrame(out).set_index("model")


def learned_nothing(run: RealRun, margin: float = CHANCE_MARGIN) -> str:
    """Why ``run`` learned nothing (its median final test error over seeds is not below its data's trivial
    error by ``margin``), or "" if it learned something or its trivial error is unknown."""
    if not np.isfinite(run.trivial_error):
        return ""
    err = float(np.median(1 - run.final("test_acc")))
    if err > run.trivial_error - margin:
        return (f"the {run.model} learned nothing: its median final test error {err:.3g} is not below the trivial "
                f"error {run.trivial_error:.3g} (chance or the most frequent class) by chance_margin={margin:g}")
    return ""


def verdict_rows(runs: dict[str, RealRun], target: float, share_pass: float, label: str = "",
                 chance_margin: float = CHANCE_MARGIN) -> list[dict]:
    """The chapter's population verdicts (see the chapter for the rules):

    1-2. MoT's final test error below the single ViT's / the attention-free MoE's: mean over seeds of the
         paired difference (baseline error - MoT error), Student-t 95%; holds if the interval lies above 0
         (0 itself excluded: a tie is not a win).
    3.   MoT reaches ``target`` test accuracy in fewer epochs than the single ViT: share of seeds where it
         does (a seed where the MoT never reaches it fails), Wilson 95%; holds if the interval lies above
         ``share_pass`` (excluded; 1 included), does not hold if below.
    A row is inconclusive, with the reason in its note, when a model it compares learned nothing
    (``learned_nothing`` with ``chance_margin``, a rule fixed before looking: 0.05, five points of error).
    """
    tag = f" ({label})" if label else ""
    ds = {"": "digits", "cifar10+cifar100": "cifar"}.get(label, label)   # the registry's ids: experiments.<ds>.<row>
    err = {k: (1 - r.final("test_acc")).to_numpy() for k, r in runs.items()}
    n = len(err["MoT"])
    rows = []

    def add(row, models):
        why = [w for w in (learned_nothing(runs[m], chance_margin) for m in models) if w]
        if why:
            row.update(verdict="inconclusive", note="; ".join(why + ([row["note"]] if row.get("note") else [])))
        rows.append(row)

    for base in ("single ViT", "attention-free MoE"):
        if base not in err:
            continue
        d = err[base] - err["MoT"]
        add(stats.population_row(
            f"MoT's final test error is below the {base}'s{tag}", "mean paired difference > 0",
            stats.mean_t(d), stats.above(0.0), "mean over seeds of (baseline error - MoT error), Student t 95%", n,
            id=f"experiments.{ds}.error_vs_{'single' if base == 'single ViT' else 'moe'}"),
            ("MoT", base))
    if "single ViT" in runs:
        em, es = epochs_to_target(runs["MoT"], target), epochs_to_target(runs["single ViT"], target)
        passed = [bool(np.isfinite(a) and (not np.isfinite(b) or a < b)) for a, b in zip(em, es)]
        add(stats.population_row(
            f"MoT reaches test accuracy {target:g} in fewer epochs than the single ViT{tag}",
            f"share of seeds > {share_pass:g}", stats.share(passed), stats.above(share_pass, 1.0),
            "share of seeds where it does, Wilson 95%", n, id=f"experiments.{ds}.epochs_vs_single"), ("MoT", "single ViT"))
    return rows


def used_verdict_row(used10: np.ndarray, used100: np.ndarray) -> dict:
    """The gate uses more experts on CIFAR-100 than on CIFAR-10: mean paired (by seed) difference in
    experts used, Student-t 95%; holds if the interval lies above 0 (0 excluded: the same count is not more)."""
    d = np.asarray(used100, float) - np.asarray(used10, float)
    return stats.population_row("the gate uses more experts on CIFAR-100 than on CIFAR-10",
                                "mean paired difference > 0", stats.mean_t(d), stats.above(0.0),
                                "mean over seeds of (experts used on CIFAR-100 - on CIFAR-10), Student t 95%", len(d),
                                id="experiments.cifar.used_experts")


# ============================================================================ the chapter
@register("07_real_data")
@dataclass(frozen=True)
class RealDataParams(ChapterParams):
    """Parameters of notebooks/07_real_data.ipynb (None: the data set's preset, see PRESETS)."""
    seeds: tuple = tuple(range(10))
    dataset: str = "digits"          # digits | cifar10 | cifar100 | cifar10+cifar100 | text
    data_dir: str | None = None      # CIFAR: the folder of python pickles (or its parent)
    text_csv: str | None = None      # text: CSV with header label,text
    text_test_csv: str | None = None  # text: optional test CSV (else a seeded 80/20 split)
    device: str = "auto"             # auto | cpu | cuda
    M: int | None = None             # experts (preset: 5; CIFAR-100: 12)
    patch: int | None = None         # patch side in pixels (preset: digits 4, CIFAR 4)
    width: int | None = None         # experts' token width D (preset: digits 16, CIFAR 64, text 32)
    mlp_ratio: int = 2
    heads_single: int = 4
    gate: str = "mean"               # the gate reads the mean token (mean) or all tokens (flat)
    epochs: int | None = None        # preset: digits 15, CIFAR 20, text 20
    T1: int | None = None            # end of Stage I in epochs (None: epochs // 3)
    T2: int | None = None            # end of Stage II in epochs (None: 2 * epochs // 3)
    batch_size: int = 64
    lr: float = 0.01
    lr_gate: float = 0.01
    lam: float = 1.0
    noise_share: float = 0.25        # the main runs' share of replaced patches
    noise_shares: tuple = (0.0, 0.25, 0.5)  # the sweep (the main runs' share is reused, not rerun)
    sweep_seeds: int | None = 5      # the noise sweep (a figure, no verdict) runs on the first sweep_seeds seeds (None: all of them)
    target_acc: float | None = None  # preset: digits 0.75, CIFAR-10 0.5, CIFAR-100 0.2, text 0.7
    used_share: float = 0.5          # an expert is used if it gets >= used_share / M of the test samples
    share_pass: float = 0.5          # the share of seeds a per-seed property must exceed
    data_seed: int = 0               # the split and the noise pattern (fixed across seeds)
    seq_len: int = 64
    max_vocab: int = 5000
    text_dim: int = 32
    max_train: int | None = None     # keep only the first max_train training samples
    eval_chunk: int = 4096

    def __post_init__(self):
        super().__post_init__()
        _check("dataset", self.dataset, choices=DATASETS)
        _check("device", self.device, choices=DEVICES)
        for name in ("data_dir", "text_csv", "text_test_csv"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"{name}={v!r} must be a path (a string) or None")
        if self.dataset.startswith("cifar"):
            if self.data_dir is None:
                raise ValueError(f"dataset={self.dataset!r} needs data_dir, a folder in the official CIFAR "
                                 "python pickle format")
            if not Path(self.data_dir).is_dir():
                raise ValueError(f"data_dir={self.data_dir!r}: no such folder")
        if self.dataset == "text":
            if self.text_csv is None:
                raise ValueError("dataset='text' needs text_csv, a CSV file with the header 'label,text'")
            for name in ("text_csv", "text_test_csv"):
                v = getattr(self, name)
                if v is not None and not Path(v).is_file():
                    raise ValueError(f"{name}={v!r}: no such file")
        for name, lo, hi in (("M", 1, 256), ("patch", 1, 32), ("width", 2, 4096), ("epochs", 1, 10_000),
                             ("T1", 0, 10_000), ("T2", 0, 10_000), ("max_train", 1, 10_000_000)):
            if getattr(self, name) is not None:
                _check(name, getattr(self, name), kind=int, lo=lo, hi=hi)
        _check("noise_share", self.noise_share, lo=0.0, hi=1.0)
        v = _check_list("noise_shares", self.noise_shares)
        object.__setattr__(self, "noise_shares", v)
        if not v:
            raise ValueError("noise_shares=() needs at least one value")
        for x in v:
            _check("noise_shares", x, lo=0.0, hi=1.0)
        if self.sweep_seeds is not None:
            _check("sweep_seeds", self.sweep_seeds, kind=int, lo=1, hi=10_000)
        if self.target_acc is not None:
            _check("target_acc", self.target_acc, lo=0.0, hi=1.0, lo_open=True)
        _check("used_share", self.used_share, lo=0.0, hi=1.0, lo_open=True)
        _check("share_pass", self.share_pass, lo=0.0, hi=1.0, hi_open=True)
        _check("data_seed", self.data_seed, kind=int, lo=0, hi=2**31 - 1)
        _check("seq_len", self.seq_len, kind=int, lo=1, hi=100_000)
        _check("max_vocab", self.max_vocab, kind=int, lo=3, hi=10_000_000)
        _check("text_dim", self.text_dim, kind=int, lo=1, hi=4096)
        for ds in self.datasets():
            self.model_config(ds)   # validates sizes and stage boundaries per data set

    def datasets(self) -> list[str]:
        return ["cifar10", "cifar100"] if self.dataset == "cifar10+cifar100" else [self.dataset]

    def preset(self, ds: str, name: str):
        v = getattr(self, name)
        if v is not None:
            return v
        return PRESETS[ds][name]

    def model_config(self, ds: str) -> ModelConfig:
        """The models' sizes and schedule on data set ``ds`` (quick=True: half the epochs)."""
        epochs = self.preset(ds, "epochs")
        T1 = epochs // 3 if self.T1 is None else self.T1
        T2 = max(T1, 2 * epochs // 3) if self.T2 is None else self.T2
        if self.quick:
            epochs, T1, T2 = max(2, epochs // 2), T1 // 2, T2 // 2
        return ModelConfig(M=self.preset(ds, "M"), width=self.preset(ds, "width"), mlp_ratio=self.mlp_ratio,
                           heads_single=self.heads_single, epochs=epochs, T1=T1, T2=T2, batch_size=self.batch_size,
                           lr=self.lr, lr_gate=self.lr_gate, lam=self.lam, gate=self.gate, eval_chunk=self.eval_chunk)

    def run_seeds(self) -> list[int]:
        return list(self.seeds[:4]) if self.quick else list(self.seeds)

    def sweep_run_seeds(self) -> list[int]:
        """The noise sweep's seeds: the first ``sweep_seeds`` of ``run_seeds`` (all of them when None)."""
        seeds = self.run_seeds()
        return seeds if self.sweep_seeds is None else seeds[:self.sweep_seeds]

    def data(self, ds: str, noise_share: float) -> RealData:
        return prepare(ds, noise_share=noise_share, patch=self.preset(ds, "patch"), data_seed=self.data_seed,
                       data_dir=self.data_dir, text_csv=self.text_csv, text_test_csv=self.text_test_csv,
                       seq_len=self.seq_len, max_vocab=self.max_vocab, text_dim=self.text_dim,
                       max_train=self.max_train)


def _train_job(P: RealDataParams, ds: str, share: float, model: str, seeds: list, cfg: ModelConfig, device) -> RealRun:
    """One model at one noise share, in a worker process: it loads its data itself (the parent checked it)."""
    return train(model, P.data(ds, share), seeds, cfg, device, schedule="joint" if model == "MoT (joint)" else None)


def run_dataset(P: RealDataParams, ds: str, device="cpu", sweep_models=("MoT", "single ViT", "attention-free MoE"),
                jobs: int | None = None):
    """Everything the chapter shows for one data set: the main runs (every model, ``P.noise_share``), and
    the noise sweep (``sweep_models`` at every other share in ``P.noise_shares``, on ``P.sweep_run_seeds()``; at the
    main share the main runs of those seeds are reused).  All data sets are loaded and checked before anything is
    trained.  Each (share, model) run goes to ``jobs`` worker processes (None: ``executor.chapter_jobs()`` on a CPU,
    1 on a GPU; 1 trains them in this process, one after the other); every model and seed draws its own streams, so
    the numbers do not depend on where they ran."""
    from ...experiments.executor import chapter_jobs, executor
    cfg = P.model_config(ds)
    seeds = P.run_seeds()
    sweep_seeds = P.sweep_run_seeds()
    shares = [s for s in P.noise_shares if s != P.noise_share]
    data = {P.noise_share: P.data(ds, P.noise_share)}
    for s in shares:
        data[s] = P.data(ds, s)
    dev = resolve_device(device) if isinstance(device, str) else device
    jobs = (chapter_jobs() if dev.type == "cpu" else 1) if jobs is None else jobs
    plan = [(P.noise_share, m, seeds) for m in MODELS] + [(s, m, sweep_seeds) for s in shares for m in sweep_models]
    with executor(jobs=jobs) as ex:
        if jobs == 1:       # in this process, on the data loaded above
            futures = {(s, m): ex.submit(train, m, data[s], sd, cfg, dev, "joint" if m == "MoT (joint)" else None)
                       for s, m, sd in plan}
        else:
            futures = {(s, m): ex.submit(_train_job, P, ds, s, m, sd, cfg, dev) for s, m, sd in plan}
        done = {k: f.result() for k, f in futures.items()}
    runs = {m: done[P.noise_share, m] for m in MODELS}
    sweep = []
    for s in sorted(set(P.noise_shares) | {P.noise_share}):
        rs = runs if s == P.noise_share else {m: done[s, m] for m in sweep_models}
        for name, run in rs.items():
            if name not in sweep_models:
                continue
            err = 1 - run.final("test_acc")
            for seed, e in err.items():
                if seed not in sweep_seeds:
                    continue
                sweep.append(dict(noise_share=s, model=name, seed=seed, final_test_error=float(e),
                                  final_test_loss=float(run.final("test_loss")[seed])))
    return dict(dataset=ds, cfg=cfg, data=data[P.noise_share], runs=runs, sweep=pd.DataFrame(sweep),
                target=P.preset(ds, "target_acc"))

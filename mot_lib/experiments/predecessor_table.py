"""The predecessor MoE experiment reproduced, then given attention.  Used by notebooks/10_predecessor and
``python -m mot_lib predecessor`` (which writes the folder data/predecessor_table: rows.csv and manifest.json).

Chen, Deng, Wu, Gu, Li, "Towards Understanding the Mixture-of-Experts Layer in Deep Learning", NeurIPS 2022;
public code github.com/uclaml/MoE (``synthetic_data_s{1..4}.ipynb`` draw the data, ``synthetic_demo_s1.ipynb``
trains the models, ``entropy_change_s1.ipynb`` tracks the entropy).  What this module takes from the code:
N = 4 clusters, M = 8 experts, 4 patches of d = 50, per-sample amplitudes alpha ~ U(0.5, 2), beta ~ U(1, 2),
gamma ~ U(0.5, 3) (settings 1, 2) or U(0.5, 2) (settings 3, 4), an isotropic noise patch N(0, sigma_p^2/d I)
with sigma_p = 1 (settings 1, 3) or 2 (settings 2, 4), data times 10, 16,000 training and 16,000 test samples;
experts ``ConvNet(200, 8)`` (J = 8 filters per class, init times 0.001), ``NormalizedGD(lr=0.001)`` on the experts,
``SGD(lr=0.1)`` on the zero-initialised router, 501 epochs with early stopping, the double softmax; single CNNs
``ConvNet(200, 40, small=False)`` (40 filters per class) trained by Adam (3e-3 linear, 1e-2 cubic, weight decay
5e-4) for 801 epochs, stopping only after epoch 500 on a rise of 0.02.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..book import datafiles
from .. import stats
from ..engine.config import PredecessorConfig, Setting, check_seeds
from ..engine.data import make_dataset
from .predecessor import LOSS_FLOOR, train_predecessor
from ..engine.training import Run

#: Published values (inputs from the paper, never computed here): Chen, Deng, Wu, Gu, Li (NeurIPS 2022), Table 1
#: (test accuracy in %, dispatch entropy; mean and sd over 10 runs for the MoEs), as restated in this book's
#: issue 8, and the outputs printed in the public notebook ``synthetic_demo_s1.ipynb`` (uclaml/MoE) where the
#: table gives no sd.  The single CNNs' values are single runs (one printed run each, setting 1 only here).
PUBLISHED = {
    # (setting, model): {"acc": mean %, "acc_sd": sd %, "entropy": mean, "entropy_sd": sd, "runs": runs, "source": ...}
    (1, "cubic MoE"): {"acc": 99.46, "acc_sd": 0.55, "entropy": 0.098, "entropy_sd": 0.088, "runs": 10, "source": "Table 1"},
    (1, "linear MoE"): {"acc": 93.0, "acc_sd": 2.11, "entropy": 1.300, "entropy_sd": 0.044, "runs": 10,
                        "source": "Table 1 (mean); sd and entropy printed by synthetic_demo_s1.ipynb"},
    (1, "single linear CNN"): {"acc": 68.3, "runs": 1, "source": "Table 1 (one run)"},
    (1, "single cubic CNN"): {"acc": 79.6, "runs": 1, "source": "Table 1 (one run)"},
    (2, "cubic MoE"): {"acc": 98.1, "entropy": 0.183, "runs": 10, "source": "Table 1"},
    (2, "linear MoE"): {"acc": 89.5, "runs": 10, "source": "Table 1"},
    (3, "cubic MoE"): {"acc": 99.99, "entropy": 0.008, "runs": 10, "source": "Table 1"},
    (3, "linear MoE"): {"acc": 95.9, "runs": 10, "source": "Table 1"},
    (4, "cubic MoE"): {"acc": 98.9, "entropy": 0.089, "runs": 10, "source": "Table 1"},
    (4, "linear MoE"): {"acc": 93.3, "runs": 10, "source": "Table 1"},
}

#: The four settings: (gamma range, sigma_p).
SETTINGS = {1: ((0.5, 3.0), 1.0), 2: ((0.5, 3.0), 2.0), 3: ((0.5, 2.0), 1.0), 4: ((0.5, 2.0), 2.0)}
BASELINES = ("cubic MoE", "linear MoE", "single linear CNN", "single cubic CNN")
ATTENTION_MODELS = ("MoT", "attention-free MoE")
LOSSES = {"predecessor's loss": "double_softmax", "logistic loss": "logistic"}
#: data/predecessor_table/rows.csv: one row per (setting, model, seed), beside its manifest.json; written by
#: ``python -m mot_lib predecessor``.
NAME = "predecessor_table"
TABLE_DIR = datafiles.DATA / NAME
TABLE_CSV = TABLE_DIR / "rows.csv"
TABLE_COLUMNS = ["setting", "model", "loss", "seed", "test_acc", "test_acc_clean", "entropy", "updates",
                 "final_train_loss", "steps_to_level", "label_weight"]  # final_train_loss: at the seed's stop


def setting(k: int, n_train: int = 16000, n_test: int = 16000) -> Setting:
    """The predecessor's setting k (1-4) as a ``Setting``."""
    if k not in SETTINGS:
        raise ValueError(f"setting={k!r} is not allowed; choose one of {sorted(SETTINGS)}")
    gamma, sigma_p = SETTINGS[k]
    return Setting(N=4, d=50, L=4, noise_orthogonal=False, sigma_xi=sigma_p, alpha_range=(0.5, 2.0),
                   beta_range=(1.0, 2.0), gamma_range=gamma, scale=10.0, n_train=n_train, n_test=n_test)


def baseline_config(model: str, **changes) -> PredecessorConfig:
    """The public code's configuration of one of BASELINES (float32, as its GPU runs were)."""
    common = dict(dtype="float32", record_every=50)
    if model == "cubic MoE":
        cfg = PredecessorConfig(activation="cubic", **common)
    elif model == "linear MoE":
        cfg = PredecessorConfig(activation="linear", **common)
    elif model in ("single linear CNN", "single cubic CNN"):
        cubic = model == "single cubic CNN"
        cfg = PredecessorConfig(model="single", activation="cubic" if cubic else "linear", J=40, init_scale=1.0,
                                loss="logistic", opt="adam", eta=1e-2 if cubic else 3e-3, weight_decay=5e-4,
                                T=801, stop_after=500, stop_floor=0.0, **common)
    else:
        raise ValueError(f"model={model!r} is not allowed; choose one of {list(BASELINES)}")
    return cfg.replace(**changes) if changes else cfg


def attention_config(attention: bool, loss: str, T1: int, T2: int, T: int, eta_kq: float,
                     **changes) -> PredecessorConfig:
    """The cubic MoE with MoT experts (attention=True) or without (its attention-free counterpart): the
    same three-stage schedule (Stage II trains only the router when attention=False), no early stop, so
    both run the same number of steps and the curves can be compared at every step."""
    cfg = PredecessorConfig(activation="cubic", loss=loss, attention=attention, T1=T1, T2=T2, T=T, eta_kq=eta_kq,
                            early_stop=False, dtype="float32", record_every=25)
    return cfg.replace(**changes) if changes else cfg


def level_for(loss: str, level_gap: float) -> float:
    """The loss level for 'iterations to a loss level': the loss's floor plus ``level_gap``
    (floor log(1 + e^-1) for the predecessor's loss, 0 for the logistic loss)."""
    return (LOSS_FLOOR if loss == "double_softmax" else 0.0) + level_gap


def loss_name(loss: str) -> str:
    """The table's name of a loss (``PredecessorConfig.loss``)."""
    return "predecessor's loss" if loss == "double_softmax" else "logistic loss"


def per_seed_rows(run: Run, setting_k: int, model: str, loss_name: str, level: float | None = None) -> pd.DataFrame:
    """One row per seed of the table (TABLE_COLUMNS) from a finished run; accuracies in %."""
    h = run.history
    seeds = run.seeds
    fin = lambda q: run.final(q).reindex(seeds).to_numpy() if q in set(h.quantity) else np.full(len(seeds), np.nan)  # noqa: E731
    tl = run.scalar("train_loss")
    steps = [stats.iterations_to_eps(tl.index, tl[s].to_numpy(), level) if level is not None else np.nan
             for s in seeds]
    lw = run.scalar("label_weight").iloc[-1].reindex(seeds).to_numpy() if "label_weight" in set(h.quantity) \
        else np.full(len(seeds), np.nan)
    return pd.DataFrame({
        "setting": setting_k, "model": model, "loss": loss_name, "seed": seeds,
        "test_acc": 100 * fin("final_test_acc"), "test_acc_clean": 100 * fin("final_test_acc_clean"),
        "entropy": fin("final_entropy"), "updates": fin("updates"),
        "final_train_loss": tl.ffill().iloc[-1].reindex(seeds).to_numpy(), "steps_to_level": steps, "label_weight": lw,
    })[TABLE_COLUMNS]


#: The modules the table is computed with.  Its manifest records the canaries of ``canaries`` (and the hash of
#: the modules that hold its rules, for information); the chapter flags the table as stale when a canary differs
#: now (``is_stale``); ``load_table`` checks its files and schema.
ENGINE_MODULES = ("engine.config", "engine.data", "engine.metrics", "engine.models", "experiments.predecessor",
                  "experiments.predecessor_table", "stats", "engine.training")
#: the table's measured columns
MEASURED = [c for c in TABLE_COLUMNS if c not in ("setting", "model", "loss", "seed")]


def canaries() -> dict:
    """Tiny float64 runs of every model family in the table (the four baselines, both attention models under
    both losses) on setting 1 at 200 samples, 2 seeds, 15 steps.  ``canary`` (the engine): test accuracies,
    final training losses and entropies, and the sum of the absolute final weights of each parameter tensor;
    ``canary_rules``: every measured column of the table's rows (``per_seed_rows``) at the table's loss level
    (``level_for`` with the gaps of ``Schedule``) and at a level the run reaches (its median training loss)."""
    st, seeds = setting(1, 200, 200), [0, 1]
    data = make_dataset(st, seeds)
    engine, rules = [], []
    cfgs = [(m, baseline_config(m, T=15, dtype="float64", record_every=5)) for m in BASELINES]
    cfgs += [(m, attention_config(m == "MoT", loss, 5, 10, 15, 1e-3, dtype="float64", record_every=5))
             for loss in LOSSES.values() for m in ATTENTION_MODELS]
    sch = Schedule()
    for model, cfg in cfgs:
        run = train_predecessor(st, cfg, seeds, data=data, progress=False)
        rows = per_seed_rows(run, 1, model, "")
        engine += [float(run.params[k].abs().sum()) for k in sorted(run.params)]
        engine += np.nan_to_num(rows[["test_acc", "final_train_loss", "entropy"]].to_numpy(float), nan=-1.0).ravel().tolist()
        gap = sch.gap_predecessor if cfg.loss == "double_softmax" else sch.gap_logistic
        for level in (level_for(cfg.loss, gap), float(np.nanmedian(run.scalar("train_loss").to_numpy()))):
            got = per_seed_rows(run, 1, model, loss_name(cfg.loss), level)[MEASURED]
            rules += np.nan_to_num(got.to_numpy(float), nan=-1.0).ravel().tolist()
    return {"canary": engine, "canary_rules": rules}


def canary() -> list[float]:
    """The engine's canary of the table (``canaries``)."""
    return canaries()["canary"]


def fingerprint() -> dict:
    """The manifest's staleness keys (``staleness.fingerprint``) for the code as it is now."""
    from ..book.staleness import fingerprint as fp
    return fp(ENGINE_MODULES, canaries)


def is_stale(meta: dict) -> str | None:
    """Why the table of manifest ``meta`` is stale now (its canaries differ: ``staleness.table_stale``), or None when
    it is current; its files and schema are checked by ``load_table``."""
    from ..book.staleness import table_stale
    return table_stale(meta, canaries)


@dataclass(frozen=True)
class Schedule:
    """The MoT comparison's schedule and the loss gaps for 'iterations to a loss level' (fixed before the
    full run, from one look at two seeds of setting 1: the experts have specialised and the training loss
    has flattened by step 150 under both losses, so Stage II starts there)."""
    T1: int = 150
    T2: int = 250
    T: int = 400
    eta_kq: float = 1e-3
    gap_predecessor: float = 0.02     # level = log(1 + e^-1) + 0.02 = 0.333 for the predecessor's loss
    gap_logistic: float = 1e-3        # level = 0.001 for the logistic loss


def compute_table(settings=(1, 2, 3, 4), seeds=tuple(range(10)), n: int = 16000, schedule: Schedule = Schedule(),
                  baselines=BASELINES, attention_settings=(1, 2, 3, 4), losses=tuple(LOSSES.values()),
                  progress: bool | None = None, log=None) -> pd.DataFrame:
    """``baselines`` on every setting, then the MoT comparison (both models, each loss in ``losses``) on
    ``attention_settings``; seeds batched, the same data for every model of a setting (each seed's data are
    drawn from its own stream, so a setting's data do not depend on which models run)."""
    seeds = check_seeds(list(seeds))
    frames = []
    jobs = [(k, model, None) for k in settings for model in baselines]
    jobs += [(k, model, loss) for k in attention_settings for loss in losses for model in ATTENTION_MODELS]
    data_k, data = None, None
    for k, model, loss in jobs:
        if k != data_k:
            st = setting(k, n, n)
            data, data_k = make_dataset(st, seeds), k
        t0 = time.time()
        if loss is None:
            cfg, level = baseline_config(model), None
        else:
            gap = schedule.gap_predecessor if loss == "double_softmax" else schedule.gap_logistic
            cfg = attention_config(model == "MoT", loss, schedule.T1, schedule.T2, schedule.T, schedule.eta_kq)
            level = level_for(loss, gap)
        run = train_predecessor(st, cfg, seeds, data=data, progress=progress)
        name = loss_name(cfg.loss)
        frames.append(per_seed_rows(run, k, model, name, level))
        if log is not None:
            log(f"setting {k}: {model} ({name}): {time.time() - t0:.0f} s")
    return pd.concat(frames, ignore_index=True)


#: Relative CPU cost of each model on one setting (seconds on one idle-ish core, 10 seeds, 16,000 samples),
#: used only to hand the heaviest jobs out first.
COST = {"single cubic CNN": 640, "cubic MoE": 90, "linear MoE": 50, "single linear CNN": 40, "attention": 100}


def jobs_for(settings, single_settings, attention_settings, seeds, n: int, threads: int = 0,
             chunk: int = 0) -> list[dict]:
    """The CLI's work as independent jobs (one setting and a few models each; the MoT comparison one job per
    setting and loss), heaviest first, so that worker processes finish at about the same time.  ``chunk`` > 0
    splits each job's seeds into groups of that many (every seed draws its data, initialisation and router
    noise from its own streams, so a seed's numbers do not depend on the group it runs in)."""
    seeds = check_seeds(list(seeds))
    if not isinstance(chunk, int) or chunk < 0:
        raise ValueError(f"chunk={chunk!r}: a number of seeds per job, 0 for all seeds in one job")
    groups = [tuple(seeds[i:i + chunk]) for i in range(0, len(seeds), chunk)] if chunk else [tuple(seeds)]
    jobs = []
    for k in settings:
        models = [m for m in BASELINES if not m.startswith("single") or k in single_settings]
        for m in models:
            jobs.append(dict(settings=(k,), baselines=(m,), attention_settings=(), cost=COST[m]))
        if k in attention_settings:
            for loss in LOSSES.values():
                jobs.append(dict(settings=(k,), baselines=(), attention_settings=(k,), losses=(loss,),
                                 cost=COST["attention"] * len(ATTENTION_MODELS)))
    jobs = [dict(j, seeds=g, cost=j["cost"] * len(g)) for j in jobs for g in groups]
    jobs.sort(key=lambda j: -j["cost"])
    for i, j in enumerate(jobs):
        j.update(n=n, threads=threads, job=i)
    return jobs


def compute_job(job: dict) -> pd.DataFrame:
    """``compute_table`` for one CLI job (a dict of its arguments, plus ``threads``), in a worker process."""
    import torch
    job = dict(job)
    job.pop("cost", None)
    job.pop("job", None)
    threads = job.pop("threads", 0)
    if threads:
        torch.set_num_threads(threads)
    return compute_table(**job, progress=False,
                         log=lambda m: print(m, flush=True))


def save_table(df: pd.DataFrame, folder=TABLE_DIR, meta: dict | None = None) -> Path:
    """Write the table set ``folder`` (rows.csv and manifest.json: the fingerprint, the run's parameters, the
    file's sha256 and rows), swapped in at once (``datafiles.write_set``); returns the folder."""
    info = {**fingerprint(), **(meta or {})}  # meta may pin the fingerprint (the code the run started with)
    return datafiles.write_set(folder, {"rows.csv": df[TABLE_COLUMNS].to_csv(index=False, float_format="%.6g")}, info)


def command(meta: dict) -> str:
    """The command line that computed the table of manifest ``meta``."""
    return (f"python -m mot_lib predecessor --jobs {meta.get('jobs')} --threads {meta.get('threads')} "
            f"--chunk {meta.get('chunk')} --attention-settings {' '.join(map(str, meta.get('attention_settings', [])))}")


def expected_rows(meta: dict) -> pd.DataFrame:
    """(setting, model, loss, seed) of every row the current code computes for the arguments the manifest
    records (``jobs_for``), with the run's T of each."""
    sch = Schedule(**meta.get("schedule", {}))
    jobs = jobs_for(meta["settings"], meta.get("single_settings", [1]), meta["attention_settings"], meta["seeds"],
                    meta["n_train"], chunk=meta.get("chunk") or 0)
    out = []
    for j in jobs:
        for k in j["settings"]:
            for m in j["baselines"]:
                cfg = baseline_config(m)
                out += [(k, m, loss_name(cfg.loss), s, cfg.T) for s in j["seeds"]]
        for k in j["attention_settings"]:
            for loss in j.get("losses", tuple(LOSSES.values())):
                out += [(k, m, loss_name(loss), s, sch.T) for m in ATTENTION_MODELS for s in j["seeds"]]
    return pd.DataFrame(out, columns=["setting", "model", "loss", "seed", "_T"])


KINDS = {"setting": "int", "model": "str", "loss": "str", "seed": "int", "test_acc": "num", "test_acc_clean": "num",
         "entropy": "num", "updates": "int", "final_train_loss": "num", "steps_to_level": "num", "label_weight": "num"}
RANGES = {"test_acc": datafiles.Range(0.0, 100.0, nan=False), "test_acc_clean": datafiles.Range(0.0, 100.0),
          "entropy": datafiles.Range(0.0), "updates": datafiles.Range(0.0, "_T", lo_open=True),
          "final_train_loss": datafiles.Range(0.0, nan=False), "steps_to_level": datafiles.Range(0.0, "_T", lo_open=True),
          "label_weight": datafiles.Range(0.0, 1.0)}


def load_table(path=TABLE_DIR) -> tuple[pd.DataFrame, dict]:
    """(table, manifest) of the committed full table (``path``: its folder, or the rows.csv in it).  A missing,
    changed, unreadable or malformed file (its sha256 or rows are not those its manifest records; a column, a
    type or a value out of range; not one row per setting, model, loss and seed of the current code's jobs for
    the manifest's arguments) raises a ValueError naming it and the command that recomputes it."""
    path = Path(path)
    folder = path.parent if path.suffix == ".csv" else path
    csv = folder / "rows.csv"
    meta = datafiles.read_manifest(folder, datafiles.redo_text("python -m mot_lib predecessor", folder))
    redo = datafiles.redo_text(command(meta), folder)
    df = datafiles.read_csv(csv, redo)
    need = ("seeds", "settings", "attention_settings", "n_train")
    if any(k not in meta for k in need):
        raise ValueError(f"{datafiles.rel(folder / datafiles.MANIFEST)}: expected the run's arguments {list(need)}; {redo}")
    datafiles.check_schema(df, csv, redo, KINDS, key=["setting", "model", "loss", "seed"], expected=expected_rows(meta),
                           source="the current code's jobs for the manifest's arguments (predecessor_table.jobs_for)",
                           ranges=RANGES)
    datafiles.check_files(folder, meta, redo)
    return df, meta

"""Is a committed table stale?  A hash of the modules that hold its rules, and a canary of numbers.

A table that takes too long for a chapter (the claims' replication, the predecessor table, the sweeps of
the part "Beyond the paper") is computed by a CLI command and committed under ``data/`` with a manifest.
The manifest records two things, and the table is stale when either differs now:

* ``library_hash``: the hash of the modules that hold the table's *rules* (its measurements, thresholds,
  verdict code, its own model family); any edit of those marks it stale;
* ``canary``: a few numbers from tiny runs of every model family the table holds, through the shared engine
  (``config``, ``models``, ``training``, which every table uses).  An edit of the shared engine that changes
  no number (a new model family, a new option whose default is the old behaviour, a faster kernel) leaves
  the canary as it was and the tables current; an edit that changes a number of any model the table holds
  changes the canary (its runs are short, but each number passes through the data, the initialisation, the
  routing, the forward pass, the gradients and the updates of every stage).

The canary is compared at a relative tolerance of ``RTOL`` (float64 runs of 10 to 30 steps: a change of the
arithmetic order moves them by about 1e-14, a change of the model by far more than 1e-7).
"""
from __future__ import annotations

import numpy as np

from .book import library_hash

#: relative tolerance of the canary comparison
RTOL = 1e-7
#: the engine every table shares; its numbers are checked by the canary, not by the hash
SHARED_ENGINE = ("config", "models", "training")


def rule_modules(modules) -> tuple:
    """``modules`` without the shared engine: the ones whose hash the manifest records."""
    return tuple(m for m in modules if m not in SHARED_ENGINE)


def fingerprint(modules, canary_fn) -> dict:
    """The manifest's staleness keys: the hash of ``rule_modules(modules)``, the modules, the canary's numbers."""
    rules = rule_modules(modules)
    return {"library_hash": library_hash(rules), "modules": list(rules), "canary": [float(x) for x in canary_fn()]}


def why_stale(meta: dict, modules, canary_fn) -> str | None:
    """Why the table of manifest ``meta`` is stale now (a sentence), or None when it is current."""
    rules = rule_modules(modules)
    if meta.get("library_hash") != library_hash(rules):
        return f"the modules that hold its rules ({', '.join(rules)}) changed since it was computed"
    old = np.asarray(meta.get("canary", []), float)
    new = np.asarray(canary_fn(), float)
    if old.shape != new.shape or not np.allclose(new, old, rtol=RTOL, atol=0.0):
        return "the engine's numbers changed since it was computed (its canary runs give other numbers now)"
    return None


def claims_canary() -> list[float]:
    """Tiny runs of the claim chapters' models: the MoT (three stages), its attention-free and joint
    ablations, the single transformer; 2 seeds, 200 samples.  Final test losses, training accuracies and the
    sum of the absolute final weights of each parameter tensor (which every update moves)."""
    from .config import Setting, SingleConfig, TrainConfig
    from .data import make_dataset
    from .training import train_mot, train_single
    st, seeds = Setting(n_train=200, n_test=200), [0, 1]
    data = make_dataset(st, seeds)
    base = TrainConfig(T=30, T1=10, T2=20, record_every=10)
    runs = [train_mot(st, base, seeds, data, progress=False),
            train_mot(st, base.replace(attention=False), seeds, data, progress=False),
            train_mot(st, base.replace(schedule="joint", T=15), seeds, data, progress=False),
            train_single(st, SingleConfig(T=10, record_every=5), seeds, data, progress=False)]
    out = []
    for r in runs:
        out += r.final("test_loss").tolist() + r.final("train_acc").tolist()
        out += [float(r.params[k].abs().sum()) for k in sorted(r.params)]
    return out

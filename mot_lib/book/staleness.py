"""Is a committed table stale?  Its files, its schema, and a canary of numbers; a hash of modules for verdicts.

A table that takes too long for a chapter (the predecessor table, the sweeps of the part "Beyond the paper",
the lever search) is computed by a CLI command and committed under ``data/`` with a manifest.  The table is
current when

* its files are those the manifest lists (``files``: the sha256 and the rows of each, ``datafiles.check_files``)
  and its schema holds (columns, types, ranges, one row per configuration and seed of the current job list;
  the table's loader checks both and raises, naming the file);
* ``canary``: a few numbers from tiny runs of every model family the table holds, through the shared engine
  (``config``, ``models``, ``training``), are those the manifest records;
* ``canary_rules``: the same tiny runs passed through the table's own per-seed rules (its summaries: iterations
  to a level, the routing and commitment steps, its losses and accuracies; the sizes and choices of its models),
  are those the manifest records.

An edit that changes no number (a module moved or reformatted, a new option whose default is the old
behaviour, an atomic write) leaves the canaries as they were and the table current; an edit that changes a
number of any model the table holds, or a rule that summarises it, changes a canary (the runs are short, but
each number passes through the data, the initialisation, the routing, the forward pass, the gradients and the
updates of every stage).  The manifest still records ``library_hash`` (the hash of the modules that hold the
table's rules) for information; it no longer decides (``table_stale``).

The replication's verdicts depend on the verdict rules themselves, so its staleness keeps the hash of the rule
modules beside the canary (``why_stale``); its files' content is checked on load.

The canaries are compared at a relative tolerance of ``RTOL`` (float64 runs of 10 to 30 steps: a change of the
arithmetic order moves them by about 1e-14, a change of the model by far more than 1e-7).
"""
from __future__ import annotations

import ast
import hashlib

import numpy as np

from .registry import REPO

#: The modules that compute the claim chapters' numbers (data, models, training, measurements, rules): the
#: replication's manifest records the hash of those that hold the rules and a canary of numbers through the
#: shared engine (``staleness.fingerprint``), so a change elsewhere (the book's plumbing, the CLI, other model
#: families) or a change of the shared engine that moves no number does not mark the replication as stale.
CLAIM_ENGINE = ("engine.config", "engine.data", "engine.models", "engine.training", "engine.metrics", "stats",
                "claims.setting", "claims.specialization", "claims.attention", "claims.floor", "claims.convergence",
                "claims.mechanism")


def library_hash(modules=None) -> str:
    """sha256 of what the chapters' numbers depend on besides their parameters, with requirements.txt.

    ``modules=None``: every file mot_lib/**/*.py with its path and bytes (the build's cache guard: any edit
    re-executes the book).  ``modules`` (names under mot_lib like "engine.data", "claims.floor", in a fixed
    order): the hash of what one committed table or the replication was computed with
    (``predecessor_table.ENGINE_MODULES``, ``replication.CLAIM_ENGINE``), by each module's source with its import
    statements removed (``_rules_source``), not by its path: a module moved or renamed, or an import line
    changed, with no other edit, keeps the hash."""
    h = hashlib.sha256()
    if modules is None:
        files = sorted((REPO / "mot_lib").rglob("*.py"))
        for f in files:
            h.update(f.relative_to(REPO).as_posix().encode())
            h.update(f.read_bytes())
    else:
        for m in modules:
            h.update(_rules_source(REPO / "mot_lib" / (m.replace(".", "/") + ".py")).encode())
    h.update(b"requirements.txt")
    h.update((REPO / "requirements.txt").read_bytes())
    return h.hexdigest()


def library_hash_at(commit: str, modules) -> str:
    """``library_hash(modules)`` as the code at git ``commit`` computes it (its modules and requirements.txt read from
    git); raises ``subprocess.CalledProcessError`` when a file is not there."""
    import subprocess

    def show(rel):
        return subprocess.run(["git", "show", f"{commit}:{rel}"], cwd=REPO, capture_output=True, check=True).stdout
    h = hashlib.sha256()
    for m in modules:
        h.update(_strip_imports(show("mot_lib/" + m.replace(".", "/") + ".py").decode()).encode())
    h.update(b"requirements.txt")
    h.update(show("requirements.txt"))
    return h.hexdigest()


def _rules_source(path) -> str:
    """A module's source without its import statements (every ``import``/``from ... import``, at any depth)."""
    return _strip_imports(path.read_text())


def _strip_imports(text: str) -> str:
    drop = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            drop.update(range(node.lineno, node.end_lineno + 1))
    return "\n".join(line for i, line in enumerate(text.splitlines(), 1) if i not in drop)

#: relative tolerance of the canary comparison
RTOL = 1e-7
#: the engine every table shares; its numbers are checked by the canary, not by the hash
SHARED_ENGINE = ("engine.config", "engine.models", "engine.training")


def rule_modules(modules) -> tuple:
    """``modules`` without the shared engine: the ones whose hash the manifest records."""
    return tuple(m for m in modules if m not in SHARED_ENGINE)


def canaries(out) -> dict:
    """A canary function's result as the manifest's keys: a list is ``canary``; a dict gives its keys
    (``canary`` and ``canary_rules``)."""
    out = out if isinstance(out, dict) else {"canary": out}
    return {k: [float(x) for x in v] for k, v in out.items()}


def fingerprint(modules, canary_fn) -> dict:
    """The manifest's staleness keys: the hash of ``rule_modules(modules)``, the modules, the canaries' numbers."""
    rules = rule_modules(modules)
    return {"library_hash": library_hash(rules), "modules": list(rules), **canaries(canary_fn())}


#: why a table is stale, per canary key
CHANGED = {"canary": "the engine's numbers changed since it was computed (its canary runs give other numbers now)",
           "canary_rules": "the rules that summarise its runs changed since it was computed (its canary runs, passed "
                           "through the table's own per-seed rules, give other numbers now)"}


def table_stale(meta: dict, canary_fn) -> str | None:
    """Why the canaries of manifest ``meta`` differ from those of the code now (a sentence), or None: the whole
    staleness rule of a committed table (its files and schema are checked by its loader, which raises)."""
    for key, new in canaries(canary_fn()).items():
        if key not in meta:
            return f"its manifest has no {key!r} to compare with (it was computed before {key} existed)"
        old, new = np.asarray(meta.get(key, []), float), np.asarray(new, float)
        if old.shape != new.shape or not np.allclose(new, old, rtol=RTOL, atol=0.0):
            return CHANGED.get(key, f"its {key} changed since it was computed")
    return None


def why_stale(meta: dict, modules, canary_fn) -> str | None:
    """Why the verdicts of manifest ``meta`` (the replication) are stale now: the hash of the modules that hold
    their rules, then the canary; None when they are current."""
    rules = rule_modules(modules)
    if meta.get("library_hash") != library_hash(rules):
        return f"the modules that hold its rules ({', '.join(rules)}) changed since it was computed"
    return table_stale(meta, canary_fn)


def claims_canary() -> list[float]:
    """Tiny runs of the claim chapters' models: the MoT (three stages), its attention-free and joint
    ablations, the single transformer; 2 seeds, 200 samples.  Final test losses, training accuracies and the
    sum of the absolute final weights of each parameter tensor (which every update moves)."""
    from ..engine.config import Setting, SingleConfig, TrainConfig
    from ..engine.data import make_dataset
    from ..engine.training import train_mot, train_single
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

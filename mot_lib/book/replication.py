"""The replication: the claim chapters' verdicts rerun on seed sets nobody tuned on, saved under data/replication
with a manifest (seeds, files, the staleness keys), loaded, checked and compared with the book's verdicts."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from ..engine.config import _check
from .registry import REPO, claim_chapters, load_chapters, params_for
from .staleness import CLAIM_ENGINE  # noqa: F401  (the modules of the claim chapters' numbers)
from .verdicts import BADGES, VERDICT_EXTRA, VERDICT_KEYS

#: Verdicts of the claim chapters rerun on seeds nobody tuned on (``python -m mot_lib replicate``).
REPLICATION = REPO / "data" / "replication"
#: The draw of the committed replication's seed sets (drawn after the claim registry froze the rules; earlier draws,
#: 2026, 1126 and 1130, met rules that were changed after them: the manifest's history keeps their figures).
COMMITTED_DRAW = 1210


def claim_fingerprint() -> dict:
    """The replication manifest's staleness keys for the code as it is now (``staleness.fingerprint``)."""
    from .staleness import claims_canary, fingerprint
    return fingerprint(CLAIM_ENGINE, claims_canary)


def replication_stale(manifest: dict) -> str | None:
    """Why the committed replication is stale now, or None when it is current: a verdict file that is missing,
    changed or malformed (``load_replication`` puts it in the manifest as ``problem``), else the hash of the
    claim chapters' rule modules or the canary (``staleness.why_stale``)."""
    if manifest.get("problem"):
        return manifest["problem"]
    from .claim_registry import registry_hash
    if manifest.get("registry_hash") != registry_hash():
        return ("the claim registry (its rows, kinds, rules or the chapters' default parameters) changed since it was "
                "computed" if manifest.get("registry_hash") else "it was computed before the claim registry froze "
                "the rules (its manifest has no registry_hash)")
    from .staleness import claims_canary, why_stale
    return why_stale(manifest, CLAIM_ENGINE, claims_canary)


def replication_sets(n_sets: int = 2, draw: int = COMMITTED_DRAW, size: int | None = None
                     ) -> dict[str, dict[str, list[int]]]:
    """Seed sets for a replication: ``n_sets`` sets, each giving every claim chapter as many seeds as it
    uses by default (``size`` overrides that), drawn at random from [1000, 10**6) with the generator
    seeded by ``draw`` (so they are not the integers after the defaults), disjoint from every chapter's
    default seeds and from each other.  Returns {"set 1": {chapter: seeds}, ...}."""
    import numpy as np
    _check("n_sets", n_sets, kind=int, lo=1, hi=100)
    _check("draw", draw, kind=int, lo=0)
    if size is not None:
        _check("size", size, kind=int, lo=1, hi=10_000)
    load_chapters()
    chapters = claim_chapters()
    k = {n: size or len(params_for(n).seeds) for n in chapters}
    taken = {s for n in chapters for s in params_for(n).seeds}
    rng = np.random.default_rng(draw)
    pool = [int(x) for x in rng.permutation(np.arange(1000, 10**6))[: n_sets * max(k.values()) + len(taken)]
            if int(x) not in taken]
    sets = {}
    for i in range(n_sets):
        block = pool[i * max(k.values()):(i + 1) * max(k.values())]
        sets[f"set {i + 1}"] = {n: sorted(block[:k[n]]) for n in chapters}
    return sets


def _slug(label: str) -> str:
    return label.replace(" ", "_")


def save_replication(run_dirs: dict[str, str | os.PathLike], sets: dict[str, dict[str, list[int]]],
                     dest: str | os.PathLike = REPLICATION, add: bool = False, draw: int | None = None,
                     defaults: str | os.PathLike | None = None) -> Path:
    """Write the replication ``dest``: each run's verdict files (``run_dirs[label]``/verdicts) as
    ``dest``/<label>/verdicts/<chapter>.json, and ``dest``/manifest.json with the seeds of every set and chapter,
    the fingerprint of the claim chapters' engine (``claim_fingerprint``) and the sha256 and rows of every
    verdict file.  ``add``: the committed sets (which must be intact) keep their other chapters' files.  The
    folder is written beside ``dest`` and swapped in at once (``datafiles.write_set``): a failure leaves the old
    replication as it was.

    The manifest also records the claim registry's hash (``registry_hash``: the rules frozen when the seeds were
    drawn), the ``draw``, and its ``history``: the earlier manifest's entries followed by this replication's,
    with its agreement with the default-seed verdicts in folder ``defaults`` (``<defaults>/verdicts``; None or
    no verdict files there: the agreement is left to ``python -m mot_lib agree``)."""
    from . import datafiles
    from .claim_registry import registry_hash
    dest = Path(dest)
    files = {}
    old = {}
    if (dest / datafiles.MANIFEST).is_file():
        try:
            old = json.loads((dest / datafiles.MANIFEST).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = {}
    if add:   # add chapters to the committed sets: same sets, the other chapters' files kept
        loaded = load_replication(dest, strict=True)
        if loaded is None:
            raise ValueError(f"{dest}: no replication to add chapters to; run `python -m mot_lib replicate` first")
        old_sets = loaded[1]["sets"]
        if set(old_sets) != set(sets):
            raise ValueError(f"{dest}: its sets {sorted(old_sets)} are not {sorted(sets)}")
        files = {name: (dest / name).read_bytes() for name in loaded[1]["files"]}
        sets = {label: {**old_sets[label], **seeds} for label, seeds in sets.items()}
    for label, seeds in sets.items():
        for name in seeds:
            src = Path(run_dirs[label]) / "verdicts" / f"{name}.json"
            if not add or src.exists():
                files[f"{_slug(label)}/verdicts/{name}.json"] = src.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        if add:   # the agreement of the replication as it will stand: the kept chapters' files and the added ones
            for rel, data in files.items():
                (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / rel).write_bytes(data)
            run_dirs = {label: Path(tmp) / _slug(label) for label in sets}
        entry = history_entry(run_dirs, sets, draw, defaults, add)
    if add and old.get("registry_hash") != entry["registry_hash"]:
        # the added chapter runs under rules that changed after the seeds were drawn: not a replication on frozen rules
        entry["frozen_before_draw"] = False
    history = [h for h in old.get("history", []) if isinstance(h, dict)] + [entry]
    meta = {"sets": sets, **claim_fingerprint(), "registry_hash": registry_hash(), "draw": draw, "history": history}
    return datafiles.write_set(dest, files, meta)


def history_entry(run_dirs: dict, sets: dict, draw, defaults, add: bool) -> dict:
    """One entry of the replication's history: when, at which commit, under which registry hash, and (where the
    default-seed verdicts are in ``defaults``) its agreement, on the claim rows and on every row."""
    import time
    from .claim_registry import registry_hash
    from .verdicts import read_verdicts
    commit = _commit()
    entry = {"draw": draw, "date": time.strftime("%Y-%m-%d"), "commit": commit, "registry_hash": registry_hash(),
             "frozen_before_draw": True, "sets": len(sets), "added_chapters": bool(add)}
    if defaults is not None and (Path(defaults) / "verdicts").is_dir():
        table = read_verdicts(defaults)
        chapters = sorted({n for s in sets.values() for n in s})
        table = table[table.chapter.isin(chapters)]
        table = table[_quick_mask(table).eq(False)]
        if len(table):
            reps = {label: read_verdicts(d) for label, d in run_dirs.items()}
            entry["agreement"] = agreement_numbers(table, reps)
    return entry


def _commit() -> str:
    """The short hash of the checkout's HEAD, with " + uncommitted mot_lib" when the library differs from it (the
    replication then ran code that HEAD does not hold); "unknown" outside git."""
    import subprocess
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "mot_lib"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} + uncommitted mot_lib" if dirty else head


def _quick_mask(table: pd.DataFrame) -> pd.Series:
    """Per verdict row: whether it comes from a quick run (a ``"quick"`` key in its verdict file)."""
    if "quick" not in table:
        return pd.Series(False, index=table.index)
    return pd.to_numeric(table["quick"], errors="coerce").fillna(0) > 0


def agreement_numbers(table: pd.DataFrame, reps: dict[str, pd.DataFrame]) -> dict:
    """The replication's agreement with the default-seed verdicts ``table``: for the claim rows (kind ``claim``)
    and for every row, how many rows, how many give the same verdict on every set (``identical``), per set how
    many give the default verdict, and how many claim rows are inconclusive on the defaults."""
    out = {}
    for name, part in (("claims", table[table.get("kind", pd.Series(index=table.index)).eq("claim")]),
                       ("all rows", table)):
        same = same_everywhere(part, reps) if len(part) else pd.Series(dtype=bool)
        out[name] = {"rows": int(len(part)), "identical": int(same.sum()),
                     "per set": {k: int(compare_verdicts(part, v)["same"].sum()) for k, v in reps.items()}}
    claims = table[table.get("kind", pd.Series(index=table.index)).eq("claim")]
    out["claims"]["inconclusive on the defaults"] = int((claims.verdict == "inconclusive").sum())
    return out


def _verdict_rows(path: Path, redo: str) -> list[dict]:
    """The verdict rows of one replication file, checked: a JSON list of rows with the keys of ``VERDICT_KEYS``
    (and possibly ``VERDICT_EXTRA``), a verdict of ``BADGES``, a number measured, an interval of two numbers."""
    from . import datafiles
    where = datafiles.rel(path)
    try:
        rows = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"verdict file {where} is not valid JSON ({e}); {redo}") from None
    if not isinstance(rows, list):
        raise ValueError(f"verdict file {where}: expected a list of verdict rows; {redo}")
    num = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)   # noqa: E731
    for i, r in enumerate(rows):
        bad = ("not an object" if not isinstance(r, dict) else
               f"keys {sorted(r)}, expected {sorted(VERDICT_KEYS)} and possibly {sorted(VERDICT_EXTRA)}"
               if not VERDICT_KEYS <= set(r) or not set(r) <= VERDICT_KEYS | VERDICT_EXTRA else
               f"verdict {r['verdict']!r} is not one of {list(BADGES)}" if r["verdict"] not in BADGES else
               "claim is not text" if not isinstance(r["claim"], str) else
               f"measured {r['measured']!r} is not a number" if not num(r["measured"]) else
               f"interval {r['interval']!r} is not two numbers"
               if not (isinstance(r["interval"], list) and len(r["interval"]) == 2 and all(map(num, r["interval"])))
               else None)
        if bad:
            raise ValueError(f"verdict file {where}: row {i + 1} is malformed ({bad}); {redo}")
    return rows


def load_replication(path: str | os.PathLike = REPLICATION, strict: bool = False
                     ) -> tuple[dict[str, pd.DataFrame], dict] | None:
    """({set label: verdict rows}, manifest) of the committed replication, or None if there is none.

    A malformed manifest raises naming the file.  Every verdict file of every set is checked against the
    manifest's sha256 and rows and for its schema (``_verdict_rows``): with ``strict``, a missing, changed or
    malformed one raises a ValueError naming it (``agree``); otherwise the replication comes back with no
    verdict rows and the reason in the manifest's ``problem``, which ``replication_stale`` reports first, so
    the scorecard shows the replication as not current and says why.
    """
    from . import datafiles
    path = Path(path)
    mf = path / "manifest.json"
    if not mf.exists():
        return None
    redo = "rerun `python -m mot_lib replicate`" + (f" --dest {path}" if path.resolve() != REPLICATION.resolve() else "")
    try:
        manifest = json.loads(mf.read_text())
        if not isinstance(manifest.get("sets"), dict) or not isinstance(manifest.get("library_hash"), str) \
                or not all(isinstance(v, dict) for v in manifest["sets"].values()):
            raise ValueError("needs the keys 'sets' (label -> chapter -> seeds) and 'library_hash'")
    except (json.JSONDecodeError, ValueError, AttributeError) as e:
        raise ValueError(f"{mf}: not a replication manifest ({e}); {redo}") from None
    redo += f" (or restore the committed one with `git checkout -- {datafiles.rel(path)}`)"
    try:
        reps = {}
        for label, chapters in manifest["sets"].items():
            frames = []
            for name in chapters:
                f = path / _slug(label) / "verdicts" / f"{name}.json"
                if not f.is_file():
                    raise datafiles.MissingFile(f"verdict file {datafiles.rel(f)} is missing ({label}, {name}, listed "
                                                f"in {datafiles.rel(mf)}); {redo}")
                frames.append(pd.DataFrame(_verdict_rows(f, redo)).assign(chapter=name))
            cols = ["chapter", "id", "kind", "statement", "claim", "bound", "measured", "interval", "verdict", "test",
                    "seeds", "note", "digits"]
            reps[label] = (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()).reindex(columns=cols)
        datafiles.check_files(path, manifest, redo, where=datafiles.rel(mf))
    except ValueError as e:
        if strict:
            raise
        return {}, {**manifest, "problem": str(e)}
    return reps, manifest


def compare_verdicts(table: pd.DataFrame, rep: pd.DataFrame) -> pd.DataFrame:
    """The book's verdict rows with the replication's verdict for the same row beside them: matched by the claim
    registry's ``id`` where both have one, else by (chapter, claim text).

    Adds ``replication`` (the verdict on the replication's seeds; empty where it has no such row)
    and ``same`` (whether the two verdicts agree; False where the replication lacks the row).
    """
    has_id = lambda df: "id" in df and df["id"].notna().all() and len(df)  # noqa: E731
    key = ["id"] if has_id(table) and has_id(rep) else ["chapter", "claim"]
    r = rep[key + ["verdict"]].rename(columns={"verdict": "replication"}).drop_duplicates(key)
    out = table.merge(r, on=key, how="left")
    out.index = table.index
    out["same"] = out["verdict"] == out["replication"]
    out["replication"] = out["replication"].fillna("")
    return out


def same_everywhere(table: pd.DataFrame, replications: dict[str, pd.DataFrame]) -> pd.Series:
    """Per verdict row of ``table``: whether every replication gives the same verdict for it."""
    same = pd.Series(True, index=table.index)
    for rep in replications.values():
        same &= compare_verdicts(table, rep)["same"].to_numpy()
    return same


def agreement_report(table: pd.DataFrame, replications: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per chapter and overall: rows, rows with the same verdict on the default seeds and every seed set
    (``identical``, ``share``), and, per set, the rows whose verdict is the default one; ``per set`` is the
    share of (row, set) pairs that give the default verdict (the measure of a reader rerunning a chapter
    on one seed set of their own).  A last line ``claim rows`` counts the claim registry's claim rows alone."""
    same = same_everywhere(table, replications)
    df = table.assign(same=same.to_numpy())
    labels = list(replications)
    for label in labels:
        df[label] = compare_verdicts(table, replications[label])["same"].to_numpy()
    agg = {"rows": ("same", "size"), "identical": ("same", "sum"), **{label: (label, "sum") for label in labels}}
    rep = df.groupby("chapter", sort=False).agg(**agg)
    rep.loc["all"] = [len(df), int(df.same.sum())] + [int(df[label].sum()) for label in labels]
    if "kind" in df:     # the rows the headlines count (the claim registry's kind "claim")
        c = df[df["kind"] == "claim"]
        rep.loc["claim rows"] = [len(c), int(c.same.sum())] + [int(c[label].sum()) for label in labels]
    rep["share"] = (rep.identical / rep.rows.where(rep.rows > 0)).round(3)
    if labels:
        rep["per set"] = (rep[labels].sum(axis=1) / (rep.rows.where(rep.rows > 0) * len(labels))).round(3)
    return rep


#: The replication's rule modules before mot_lib moved into sub-packages (flat ``mot_lib/<name>.py``), hashed then by
#: path and bytes: ``restamp_replication`` recomputes that hash from git to check the manifest was current there.
FLAT_CLAIM_RULES = ("data", "metrics", "rates", "experiments", "specialization", "attention", "floor", "convergence",
                    "mechanism")


def flat_library_hash(commit: str, modules=FLAT_CLAIM_RULES) -> str:
    """The replication's rule hash as the code at ``commit`` computed it (before the move into sub-packages): the
    sha256 of each ``mot_lib/<module>.py`` and of requirements.txt, each with its path, read from git."""
    import hashlib
    import subprocess
    h = hashlib.sha256()
    for rel in sorted(f"mot_lib/{m}.py" for m in modules) + ["requirements.txt"]:
        data = subprocess.run(["git", "show", f"{commit}:{rel}"], cwd=REPO, capture_output=True, check=True).stdout
        h.update(rel.encode())
        h.update(data)
    return h.hexdigest()


def rule_hashes_at(commit: str) -> set:
    """The replication's rule hash as the code at ``commit`` computed it: with the modules of ``CLAIM_ENGINE``
    (``staleness.library_hash_at``), or, before the move into sub-packages, the flat layout's
    (``flat_library_hash``); a layout whose files are not at ``commit`` gives nothing."""
    import subprocess
    from .staleness import library_hash_at, rule_modules
    out = set()
    for compute in (lambda: library_hash_at(commit, rule_modules(CLAIM_ENGINE)), lambda: flat_library_hash(commit)):
        try:
            out.add(compute())
        except subprocess.CalledProcessError:
            pass
    return out


def restamp_replication(before: str | os.PathLike, after: str | os.PathLike, reason: str, old_commit: str,
                        path: str | os.PathLike = REPLICATION) -> dict:
    """Re-stamp the replication's rule hash (``library_hash``, ``modules``) after a change that moved no rule,
    and record when and why in the manifest's ``rehashed`` list.  Refuses (ValueError) unless the manifest's hash
    is the one the code at ``old_commit`` computes (``rule_hashes_at``: the replication was current there),
    every chapter's default-seed verdict file in folder ``before`` (computed with the code at ``old_commit``) is
    byte-identical to the one in ``after`` (the code now), the replication's files are intact and its canary is
    current.  Returns the new manifest.  After the move into sub-packages:
    ``python -c "import mot_lib as m; m.book.restamp_replication('/tmp/verdicts_before', '_build/out/verdicts',
    'modules moved into sub-packages, no rule changed', old_commit='<main before the merge>')"``."""
    import time
    from . import datafiles
    from .staleness import claims_canary, table_stale
    before, after, path = Path(before), Path(after), Path(path)
    names = sorted(f.name for f in before.glob("*.json"))
    want = sorted(f"{n}.json" for n in verdict_names())
    if names != want or sorted(f.name for f in after.glob("*.json")) != want:
        raise ValueError(f"{before} and {after} must each hold the verdict files {want}")
    differ = [n for n in names if (before / n).read_bytes() != (after / n).read_bytes()]
    if differ:
        raise ValueError(f"verdict files differ between {before} and {after}: {differ}; a rule or a number moved, "
                         f"so rerun `python -m mot_lib replicate` instead of re-stamping")
    _, manifest = load_replication(path, strict=True)
    if manifest["library_hash"] not in rule_hashes_at(old_commit):
        raise ValueError(f"{path}: its rule hash is not the one the code at {old_commit} computes (it was not current "
                         f"there); rerun `python -m mot_lib replicate` instead of re-stamping")
    stale = table_stale(manifest, claims_canary)
    if stale:
        raise ValueError(f"{path}: {stale}; rerun `python -m mot_lib replicate` instead of re-stamping")
    commit = _commit()
    new = claim_fingerprint()
    note = {"at": commit, "date": time.strftime("%Y-%m-%d"), "reason": reason,
            "checked": f"its rule hash was current at {old_commit}; the default-seed verdict files ({len(names)}) "
                       f"are byte-identical there and at {commit}; the canary is unchanged",
            "old_library_hash": manifest["library_hash"]}
    manifest = {**manifest, "library_hash": new["library_hash"], "modules": new["modules"],
                "rehashed": manifest.get("rehashed", []) + [note]}
    datafiles.write_files({path / datafiles.MANIFEST: json.dumps(manifest, indent=2)})
    return manifest


def verdict_names() -> list[str]:
    """The chapters whose default-seed verdict files ``restamp_replication`` compares (every verdict chapter)."""
    from .registry import verdict_chapters
    return verdict_chapters()

"""The data the book stands on: every committed file is checked on load (sha256, rows, schema), a table's staleness
does not depend on the bytes of its modules, writes are atomic, and smoke runs never touch data/.

Every test works on copies in tmp_path; data/ is only read (and checked unchanged where a command could write it).
"""
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from mot_lib import book
from mot_lib.book import staleness as canary
from mot_lib.book import datafiles
from mot_lib.claims import floor
from mot_lib.experiments import schedule
from mot_lib.experiments import sweeps
from mot_lib.experiments import predecessor_table as pt
from mot_lib.cli import main

DATA = datafiles.DATA
REPO = datafiles.REPO


def _copy(kind: str, dst: Path) -> Path:
    """Copy the committed table set of ``kind`` into ``dst``; returns what its loader takes."""
    if kind in ("fair_comparison", "training_schedule", "predecessor_table", "replication"):
        shutil.copytree(DATA / kind, dst / kind)
        return dst / kind
    shutil.copy(DATA / "lemma1_levers.csv", dst / "lemma1_levers.csv")
    shutil.copy(DATA / "lemma1_levers.json", dst / "lemma1_levers.json")
    return dst / "lemma1_levers.csv"


def _load(kind: str, where: Path):
    """The loader of ``kind`` on a copy (the replication strictly, as `agree` loads it)."""
    if kind in ("fair_comparison", "training_schedule"):
        return sweeps.load(kind, where.parent)
    if kind == "predecessor_table":
        return pt.load_table(where)
    if kind == "replication":
        return book.load_replication(where, strict=True)
    return floor.load_levers(where)


def _manifest(kind: str) -> Path:
    return DATA / ("lemma1_levers.json" if kind == "lemma1_levers" else f"{kind}/manifest.json")


KINDS = ("fair_comparison", "training_schedule", "predecessor_table", "lemma1_levers", "replication")
LISTED = [(k, name) for k in KINDS for name in json.loads(_manifest(k).read_text())["files"]]


def _target(kind: str, where: Path, name: str) -> Path:
    return where.parent / name if kind == "lemma1_levers" else where / name


def _edit_value(p: Path):
    """Change one digit of one value in the middle of the file (a CSV line's last number, a verdict's measured)."""
    if p.suffix == ".json":
        rows = json.loads(p.read_text())
        rows[len(rows) // 2]["measured"] = rows[len(rows) // 2]["measured"] * 1.5 + 0.25
        p.write_text(json.dumps(rows, indent=2))
        return
    lines = p.read_text().split("\n")
    i = len(lines) // 2
    m = list(re.finditer(r"\d", lines[i]))[-2]
    lines[i] = lines[i][:m.start()] + str((int(m.group()) + 3) % 10) + lines[i][m.end():]
    p.write_text("\n".join(lines))


def _truncate(p: Path):
    """Cut the file in the middle of a line."""
    text = p.read_text()
    cut = text.index("\n", len(text) // 2) - 3
    p.write_text(text[:cut])


def _delete_row(p: Path):
    if p.suffix == ".json":
        rows = json.loads(p.read_text())
        del rows[len(rows) // 2]
        p.write_text(json.dumps(rows, indent=2))
        return
    lines = p.read_text().split("\n")
    del lines[len(lines) // 2]
    p.write_text("\n".join(lines))


CORRUPT = {"edit a value": _edit_value, "truncate mid-line": _truncate, "delete a row": _delete_row,
           "delete the file": Path.unlink}


@pytest.mark.parametrize("how", list(CORRUPT))
@pytest.mark.parametrize("kind,name", LISTED, ids=[f"{k}/{n}" for k, n in LISTED])
def test_every_listed_file_changed_is_named_by_its_loader(tmp_path, kind, name, how):
    where = _copy(kind, tmp_path)
    target = _target(kind, where, name)
    CORRUPT[how](target)
    with pytest.raises(ValueError) as e:
        _load(kind, where)
    msg = str(e.value)
    assert target.name in msg and "\n" not in msg, msg
    assert ("missing" in msg) == (how == "delete the file"), msg
    assert "python -m mot_lib" in msg, msg       # and how to recompute it


@pytest.mark.parametrize("kind", KINDS)
def test_the_committed_copies_load(tmp_path, kind):
    """The loaders accept the committed files (the check above is not one that always fails)."""
    assert _load(kind, _copy(kind, tmp_path)) is not None


# ---------------------------------------------------------------------- the cases
def _rehash(folder: Path, name: str, manifest: Path | None = None):
    """Record a file's new sha256 and rows in its manifest, as a buggy writer would: only the schema can object."""
    mf = manifest or folder / "manifest.json"
    meta = json.loads(mf.read_text())
    meta["files"][name] = datafiles.entry((folder / name).read_bytes(), name)
    mf.write_text(json.dumps(meta, indent=2))


def test_a_row_deleted_from_the_predecessor_table(tmp_path):
    where = _copy("predecessor_table", tmp_path)
    _delete_row(where / "rows.csv")
    with pytest.raises(ValueError, match=r"predecessor_table/rows.csv: no row for setting=\d, model=.*, seed=\d+"):
        pt.load_table(where)
    _rehash(where, "rows.csv")                    # even with a manifest that agrees, the job list does not
    with pytest.raises(ValueError, match="no row for .* which the current code's jobs"):
        pt.load_table(where)


def test_one_value_of_the_predecessor_table_changed(tmp_path):
    where = _copy("predecessor_table", tmp_path)
    text = (where / "rows.csv").read_text()
    assert text.count(",98.4437,") == 1
    (where / "rows.csv").write_text(text.replace(",98.4437,", ",9.4437,"))
    with pytest.raises(ValueError, match=r"predecessor_table/rows.csv changed since it was written: sha256 \w+, 520 "
                                         r"rows, where its manifest records \w+, 520 rows; recompute it with "
                                         r"`python -m mot_lib predecessor --jobs 16"):
        pt.load_table(where)


def test_a_row_deleted_from_the_fair_comparison(tmp_path):
    where = _copy("fair_comparison", tmp_path)
    lines = (where / "rows.csv").read_text().split("\n")
    verdict = [i for i, line in enumerate(lines) if line.startswith("verdict,")]
    del lines[verdict[len(verdict) // 2]]               # a verdict row (the middle line is a tuning row)
    (where / "rows.csv").write_text("\n".join(lines))
    with pytest.raises(ValueError, match="fair_comparison/rows.csv: no row for part=verdict"):
        sweeps.load("fair_comparison", tmp_path)
    _rehash(where, "rows.csv")
    with pytest.raises(ValueError, match="no row for part=verdict"):
        sweeps.load("fair_comparison", tmp_path)


def test_steps_beyond_the_runs_T(tmp_path):
    where = _copy("fair_comparison", tmp_path)
    rows = pd.read_csv(where / "rows.csv")
    i = rows.index[(rows.part == "verdict") & rows["steps_to_0.001"].notna()][0]
    text = (where / "rows.csv").read_text().split("\n")
    cells = text[i + 1].split(",")
    col = list(rows.columns).index("steps_to_0.001")
    cells[col] = "2300"
    text[i + 1] = ",".join(cells)
    (where / "rows.csv").write_text("\n".join(text))
    _rehash(where, "rows.csv")
    with pytest.raises(ValueError, match=rf"fair_comparison/rows.csv: steps_to_0.001 = 2300.0 on line {i + 2} "
                                         r"\(part=verdict, .*\) is beyond the run's T = 500"):
        sweeps.load("fair_comparison", tmp_path)


@pytest.mark.parametrize("kind", ["fair_comparison", "training_schedule"])
def test_a_table_cut_mid_line_is_not_a_key_error(tmp_path, kind):
    where = _copy(kind, tmp_path)
    _truncate(where / "rows.csv")
    with pytest.raises(ValueError, match=f"{kind}/rows.csv"):
        sweeps.load(kind, tmp_path)


def _verdict_out(tmp_path, claims=None) -> Path:
    """A default run's verdict folder with the committed replication's first set as its verdicts."""
    out = tmp_path / "out"
    (out / "verdicts").mkdir(parents=True)
    for f in (DATA / "replication" / "set_1" / "verdicts").glob("*.json"):
        if claims is None or f.stem in claims:
            shutil.copy(f, out / "verdicts" / f.name)
    return out


def test_a_deleted_verdict_file_is_missing_not_a_disagreement(tmp_path, capsys):
    where = _copy("replication", tmp_path)
    (where / "set_1" / "verdicts" / "04_lemma1.json").unlink()
    out = _verdict_out(tmp_path)
    assert main(["agree", str(where), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "set_1/verdicts/04_lemma1.json is missing" in err, err
    reps, manifest = book.load_replication(where)          # the scorecard's load: not current, and why
    assert reps == {} and "04_lemma1.json is missing" in book.replication_stale(manifest)


def test_a_malformed_verdict_row_is_a_schema_error(tmp_path, capsys):
    where = _copy("replication", tmp_path)
    f = where / "set_2" / "verdicts" / "05_theorem1.json"
    rows = json.loads(f.read_text())
    rows[1]["verdict"] = "probably"
    del rows[2]["interval"]
    f.write_text(json.dumps(rows))
    _rehash(where, "set_2/verdicts/05_theorem1.json")
    out = _verdict_out(tmp_path)
    assert main(["agree", str(where), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "verdict file" in err and "set_2/verdicts/05_theorem1.json: row 2 is malformed (verdict 'probably'" in err, err
    assert "malformed" in book.replication_stale(book.load_replication(where)[1])


def test_agree_compares_an_intact_replication(tmp_path, capsys):
    out = _verdict_out(tmp_path)
    assert main(["agree", str(DATA / "replication"), "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert re.search(r"\nall +\d+ +\d+ ", report), report


def test_agree_before_any_default_run_says_what_to_run(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MOT_OUT_DIR", raising=False)
    monkeypatch.setattr(book, "REPO", tmp_path)             # the default folder would be tmp_path/_build/out
    monkeypatch.setattr(book.registry, "REPO", tmp_path)
    assert main(["agree", str(DATA / "replication")]) == 2
    err = capsys.readouterr().err
    assert "no verdicts of a default run" in err and "python -m mot_lib run all --out" in err and "make book" in err
    assert not (tmp_path / "_build").exists()
    assert main(["agree", str(DATA / "replication"), "--out", str(tmp_path / "nowhere")]) == 2
    assert not (tmp_path / "nowhere").exists()


# ---------------------------------------------------------------------- staleness without module bytes
def test_a_tables_staleness_ignores_the_module_hash_and_follows_its_rules():
    meta = json.loads((DATA / "predecessor_table" / "manifest.json").read_text())
    assert pt.is_stale({**meta, "library_hash": "ab" * 32}) is None     # an edit of its modules' bytes alone
    now = pt.canaries()
    moved = [x * (1 + 1e-6) if i == 5 else x for i, x in enumerate(meta["canary_rules"])]
    assert "rules that summarise its runs changed" in canary.table_stale({**meta, "canary_rules": moved}, lambda: now)
    old = {k: v for k, v in meta.items() if k != "canary_rules"}
    assert "no 'canary_rules'" in canary.table_stale(old, lambda: now)
    assert "modules that hold its rules" in canary.why_stale({**meta, "library_hash": "ab" * 32}, pt.ENGINE_MODULES,
                                                             lambda: now)    # the replication's rule keeps the hash


def test_the_rules_canary_passes_through_the_summarizing_rules(monkeypatch):
    """A change of a sweep's per-seed rule (here: iterations to a level counted one record later) moves the
    rules' canary and marks the table stale, though the engine's numbers and every module's bytes are the same."""
    meta = json.loads((DATA / "training_schedule" / "manifest.json").read_text())
    assert sweeps.why_stale(meta, ("schedule",)) is None
    real = sweeps.stats.iterations_to_eps
    monkeypatch.setattr(sweeps.stats, "iterations_to_eps", lambda s, v, e: real(s, v, e) + 1)
    assert "rules that summarise its runs changed" in sweeps.why_stale(meta, ("schedule",))


def test_the_lever_search_is_current():
    meta = json.loads((DATA / "lemma1_levers.json").read_text())
    assert floor.levers_stale(meta) is None


# ---------------------------------------------------------------------- atomic writes
def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} | {
        p.relative_to(folder).as_posix() + "/": b"" for p in sorted(folder.rglob("*")) if p.is_dir()}


def _restore(folder: Path, snap: dict) -> None:
    """Put back the files and folders of ``_snapshot(folder)``, as they were."""
    shutil.rmtree(folder)
    for rel, data in snap.items():
        p = folder / rel
        if rel.endswith("/"):
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)


ORIGINAL_WRITE, RENAME, REPLACE = datafiles._write_bytes, datafiles.os.rename, datafiles.os.replace


def _failing(k: int, calls: list, real):
    """``real``, raising at its k-th call (1-based; never for k = 0); ``calls`` counts the calls."""
    def f(*a):
        calls.append(a)
        if len(calls) == k:
            raise OSError(28, "No space left on device (simulated)")
        return real(*a)
    return f


def _fail_writes_at(monkeypatch, k: int) -> list:
    calls = []
    monkeypatch.setattr(datafiles, "_write_bytes", _failing(k, calls, ORIGINAL_WRITE))
    return calls


def _fail_renames_at(monkeypatch, k: int) -> list:
    calls = []
    monkeypatch.setattr(datafiles.os, "rename", _failing(k, calls, RENAME))
    monkeypatch.setattr(datafiles.os, "replace", _failing(k, calls, REPLACE))
    return calls


def _tiny_sweep(seed_shift=0):
    rows = pd.DataFrame({"part": "x", "seed": [0, 1], "final_test_loss": [0.1 + seed_shift, 0.2]})
    curves = pd.DataFrame({"part": "x", "step": [0, 10], "seed": [0, 0], "value": [0.5, 0.1 + seed_shift],
                           "quantity": "test_loss"})
    return rows, curves


WRITERS = {
    "sweep": lambda folder, v: sweeps.save("t", *_tiny_sweep(v), {"command": "c", "v": v}, folder),
    "predecessor": lambda folder, v: pt.save_table(
        pd.DataFrame({c: [v] for c in pt.TABLE_COLUMNS}), folder / "predecessor_table", {"canary": [], "v": v}),
    "replication": lambda folder, v: book.save_replication(
        {"set 1": folder.parent / "run", "set 2": folder.parent / "run"},
        {"set 1": {"02_x": [v]}, "set 2": {"02_x": [v + 1]}}, folder / "replication"),
    "levers": lambda folder, v: floor.save_levers(
        pd.DataFrame({c: [v] for c in floor.LEVER_COLUMNS}), folder / "lemma1_levers.csv", {"v": v}),
}


@pytest.fixture
def fast_fingerprints(monkeypatch):
    """The writers' fingerprints without their canary runs (what is written does not matter here)."""
    fp = {"library_hash": "h", "modules": [], "canary": [1.0]}
    monkeypatch.setattr(pt, "fingerprint", lambda: fp)
    monkeypatch.setattr(book.replication, "claim_fingerprint", lambda: fp)
    monkeypatch.setattr(floor, "levers_canaries", lambda: {"canary": [1.0]})


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two renames"])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_failure_at_any_write_leaves_the_committed_files_as_they_were(tmp_path, monkeypatch, writer, exchange,
                                                                        fast_fingerprints):
    """Every writer of committed data, failing at its k-th file write and at its k-th rename (every k), and at the
    exchange of the folders: the files are byte-identical and nothing is left beside them."""
    folder = tmp_path / "data"
    folder.mkdir()
    (tmp_path / "run" / "verdicts").mkdir(parents=True)
    (tmp_path / "run" / "verdicts" / "02_x.json").write_text("[]")
    if not exchange:
        monkeypatch.setattr(datafiles, "_exchange", lambda a, b: False)
    save = lambda v: WRITERS[writer](folder, v)   # noqa: E731
    save(1)
    before = _snapshot(folder)
    writes, renames = _fail_writes_at(monkeypatch, 0), _fail_renames_at(monkeypatch, 0)
    save(2)                                       # a save that succeeds: how many writes and renames it makes
    n_writes, n_renames = len(writes), len(renames)
    assert n_writes >= 2 and _snapshot(folder) != before
    _restore(folder, before)      # (saving 1 again would not do: the replication's manifest keeps a history)
    assert _snapshot(folder) == before
    for k in range(1, n_writes + 1):
        _fail_writes_at(monkeypatch, k)
        with pytest.raises(OSError, match="simulated"):
            save(2)
        assert _snapshot(folder) == before, f"a failure at write {k} of {n_writes}"
    _fail_writes_at(monkeypatch, 0)
    for k in range(1, n_renames + 1):
        _fail_renames_at(monkeypatch, k)
        with pytest.raises(OSError, match="simulated"):
            save(2)
        assert _snapshot(folder) == before, f"a failure at rename {k} of {n_renames}"
    _fail_renames_at(monkeypatch, 0)
    if exchange and writer != "levers":
        monkeypatch.setattr(datafiles, "_exchange", _failing(1, [], None))
        with pytest.raises(OSError, match="simulated"):
            save(2)
        assert _snapshot(folder) == before


def test_the_two_rename_fallback_restores_the_old_set(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    sweeps.save("t", *_tiny_sweep(), {"v": 1}, folder)
    before = _snapshot(folder)
    monkeypatch.setattr(datafiles, "_exchange", lambda a, b: False)
    _fail_renames_at(monkeypatch, 2)                   # the old set is aside, the new one fails to move in
    with pytest.raises(OSError, match="simulated"):
        sweeps.save("t", *_tiny_sweep(1), {"v": 2}, folder)
    assert _snapshot(folder) == before


# ---------------------------------------------------------------------- smoke runs never touch data/
def _data_digest() -> str:
    h = hashlib.sha256()
    for p in sorted(DATA.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(DATA).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def _git_status_data() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", "data"], cwd=REPO,
                          capture_output=True, text=True, check=True).stdout


def test_smoke_sweep_writes_to_a_temporary_folder_and_leaves_data_alone(monkeypatch, capsys):
    first = schedule.jobs()[:1]
    monkeypatch.setattr(schedule, "jobs", lambda *a, **k: first)
    monkeypatch.setattr(sweeps, "fingerprint", lambda modules: {"canary": [1.0]})
    monkeypatch.setattr(sweeps, "why_stale", lambda meta, modules: None)
    before, status = _data_digest(), _git_status_data()
    assert main(["sweep", "schedule", "--smoke", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    tmp = Path(re.search(r"smoke run: writing to (\S+)", out).group(1))
    try:
        assert DATA not in tmp.parents and (tmp / "training_schedule" / "rows.csv").exists()
        assert f"written to {tmp / 'training_schedule'}/ (2 rows" in out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert _data_digest() == before and _git_status_data() == status


def test_smoke_into_the_committed_data_needs_overwrite(capsys):
    before = _data_digest()
    assert main(["sweep", "schedule", "--smoke", "--out", str(DATA)]) == 2
    err = capsys.readouterr().err
    assert "the committed data folder" in err and "--overwrite" in err
    assert main(["predecessor", "--out", str(DATA / "x.csv")]) == 2
    assert "give a data folder" in capsys.readouterr().err
    assert _data_digest() == before


def test_an_interrupted_sweep_leaves_nothing_in_data_and_resumes(monkeypatch, capsys, tmp_path):
    """A sweep stopped after its first job keeps that job's result in the cache (outside data/), never in data/;
    the rerun skips it, says so, and writes the same files as an uninterrupted run."""
    from mot_lib.experiments import executor
    jobs = schedule.jobs()[:3]
    monkeypatch.setattr(schedule, "jobs", lambda *a, **k: jobs)
    monkeypatch.setattr(sweeps, "fingerprint", lambda modules: {"canary": [1.0]})
    monkeypatch.setattr(executor, "CACHE", tmp_path / "cache")
    real, n = sweeps._run_job_in_worker, []

    def stop_after_one(a):
        n.append(1)
        if len(n) == 2:
            raise KeyboardInterrupt
        return real(a)
    monkeypatch.setattr(sweeps, "_run_job_in_worker", stop_after_one)
    before, status = _data_digest(), _git_status_data()
    assert main(["sweep", "schedule", "--smoke", "--out", str(tmp_path / "a")]) == 130   # Ctrl-C: one line, exit 130
    out, err = capsys.readouterr()
    assert err.strip().splitlines()[-1].startswith("interrupted: nothing was written under data/")
    assert len(list((tmp_path / "cache" / "sweep_schedule_smoke").glob("*.pkl"))) == 1
    assert not (tmp_path / "a" / "training_schedule").exists()
    assert _data_digest() == before and _git_status_data() == status
    assert main(["sweep", "schedule", "--smoke", "--out", str(tmp_path / "a")]) == 0
    assert "1 of 3 jobs already computed" in capsys.readouterr().out
    assert main(["sweep", "schedule", "--smoke", "--fresh", "--out", str(tmp_path / "b")]) == 0
    assert "0 of 3 jobs already computed" in capsys.readouterr().out
    for f in ("rows.csv", "curves.csv"):
        assert (tmp_path / "a" / "training_schedule" / f).read_bytes() == (tmp_path / "b" / "training_schedule" / f).read_bytes()


def test_a_full_run_says_what_it_replaced(tmp_path, monkeypatch, capsys):
    jobs = [sweeps.smoke(j) for j in schedule.jobs()[:1]]
    monkeypatch.setattr(schedule, "jobs", lambda *a, **k: jobs)
    monkeypatch.setattr(sweeps, "fingerprint", lambda modules: {"canary": [1.0]})
    monkeypatch.setattr(sweeps, "why_stale", lambda meta, modules: None)
    shutil.copytree(DATA / "training_schedule", tmp_path / "training_schedule")
    assert main(["sweep", "schedule", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "it replaced rows.csv 520 rows, curves.csv 47,680 rows" in out, out
    assert json.loads((tmp_path / "training_schedule" / "manifest.json").read_text())["files"]["rows.csv"]["rows"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training_schedule"]


def test_row_counts_and_hashes_of_the_manifests_are_the_files():
    """Every manifest's record is what its file holds now (a check of the committed data itself), and every
    table lists all of its files."""
    for kind, name in LISTED:
        p = DATA / name if kind == "lemma1_levers" else DATA / kind / name
        want = json.loads(_manifest(kind).read_text())["files"][name]
        assert datafiles.entry(p.read_bytes(), name) == want, p
    listed = {k: {n for kk, n in LISTED if kk == k} for k in KINDS}
    assert listed["fair_comparison"] == listed["training_schedule"] == {"rows.csv", "curves.csv"}
    assert listed["predecessor_table"] == {"rows.csv"} and listed["lemma1_levers"] == {"lemma1_levers.csv"}
    assert listed["replication"] == {p.relative_to(DATA / "replication").as_posix()
                                     for p in (DATA / "replication").rglob("*.json") if p.name != "manifest.json"}


# ------------------------------------------------------------------ re-stamping the replication's rule hash
def test_restamp_needs_identical_default_verdicts_and_a_current_replication(tmp_path, monkeypatch):
    """``book.restamp_replication`` re-stamps the rule hash only when the manifest was current at the old commit and
    the default-seed verdict files before and after are byte-identical; then the replication is current, and the
    manifest says when and why."""
    rep = tmp_path / "replication"
    shutil.copytree(DATA / "replication", rep)
    manifest = json.loads((rep / "manifest.json").read_text())
    before, after = tmp_path / "before", tmp_path / "after"
    for d in (before, after):
        d.mkdir()
        for name in book.verdict_chapters():
            (d / f"{name}.json").write_text(f'[{{"chapter": "{name}"}}]')
    monkeypatch.setattr(book.replication, "flat_library_hash", lambda commit: "not it")
    with pytest.raises(ValueError, match="not current there"):
        book.restamp_replication(before, after, "a move", "abc", path=rep)
    monkeypatch.setattr(book.replication, "flat_library_hash", lambda commit: manifest["library_hash"])
    (after / "04_lemma1.json").write_text("[]")
    with pytest.raises(ValueError, match=r"differ .*04_lemma1"):
        book.restamp_replication(before, after, "a move", "abc", path=rep)
    assert json.loads((rep / "manifest.json").read_text()) == manifest            # refused: nothing written
    (after / "04_lemma1.json").write_bytes((before / "04_lemma1.json").read_bytes())
    new = book.restamp_replication(before, after, "a move", "abc", path=rep)
    monkeypatch.setattr(book.claim_registry, "registry_hash", lambda: manifest.get("registry_hash"))  # (its own test)
    assert book.replication_stale(book.load_replication(rep)[1]) is None
    assert new["rehashed"][-1]["reason"] == "a move" and new["rehashed"][-1]["old_library_hash"] == manifest["library_hash"]


def test_the_flat_rule_hash_is_the_one_the_old_code_computed():
    """``flat_library_hash`` recomputes, from git, the hash the flat layout gave (here at the last commit before the
    move, whose value the flat code printed)."""
    try:
        h = book.replication.flat_library_hash("256efc9")
    except subprocess.CalledProcessError:
        pytest.skip("no git history of the flat layout in this checkout")
    assert h == "fe944a5493b2b772ce32a1ba4a907d68d55682c2f98bd967f973bcf0a9fde1dd"


def test_the_rule_hash_at_a_commit_is_the_one_its_code_computes():
    """``rule_hashes_at`` recomputes from git the hash the code at a commit gives the replication's rules: at HEAD,
    whose rule modules this checkout holds unchanged, it is the one computed now (``restamp_replication`` accepts a
    manifest only if its hash is among them)."""
    from mot_lib.book.staleness import library_hash, rule_modules
    changed = subprocess.run(["git", "status", "--porcelain", "mot_lib", "requirements.txt"], cwd=book.REPO,
                             capture_output=True, text=True)
    if changed.returncode or changed.stdout.strip():
        pytest.skip("not a git checkout, or its library differs from HEAD")
    now = library_hash(rule_modules(book.replication.CLAIM_ENGINE))
    assert now in book.replication.rule_hashes_at("HEAD")
    assert book.replication.rule_hashes_at("0" * 40) == set()


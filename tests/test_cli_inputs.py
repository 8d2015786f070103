"""The command line's inputs: nothing dropped or misread, every error one line before any training (issue #15).

The CLI tests call ``main([...])`` in-process with papermill replaced by a recorder (``calls``), so that a
test that fails shows what would have been run instead of running it.
"""
import dataclasses
import json
import logging
import os

import pytest

import mot_lib as mot
from mot_lib import book
from mot_lib.cli import main

from conftest import vrow  # noqa: E402


def ROW(chapter: str, k: int = 0) -> dict:
    """The ``k``-th declared row of ``chapter`` (the claim registry), holding."""
    return vrow(book.claim_registry.chapter_ids(chapter)[k])


@pytest.fixture
def calls(monkeypatch):
    """Replace papermill's execute_notebook by a recorder: [(chapter, parameters)] of what would run."""
    import papermill
    seen = []

    def fake(inp, out, parameters=None, **kw):
        seen.append((os.path.basename(inp)[:-len(".ipynb")], dict(parameters or {})))
    monkeypatch.setattr(papermill, "execute_notebook", fake)
    return seen


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ------------------------------------------------------------------ run all
@pytest.mark.parametrize("params,expect", [
    (["-p", "bogus", "1", "-p", "M", "0"], "bogus"),   # the case: both were dropped silently
    (["-p", "bogus", "1"], "no chapter has"),
    (["-p", "M", "0"], "M=0 is out of range"),
    (["-p", "n_live", "10"], "n_live=10 is out of range"),   # only 10_predecessor (run last) has n_live
    (["-p", "seeds", "[100, 101, 102]"], "09_training_schedule: seeds"),   # not among the schedule table's seeds
])
def test_run_all_validates_every_chapter_before_running_any(tmp_path, capsys, calls, params, expect):
    assert main(["run", "all", *params, "--out", str(tmp_path)]) == 2
    assert expect in one_line_error(capsys.readouterr().err)
    assert calls == []


def test_run_all_passes_a_parameter_to_the_chapters_that_have_it(tmp_path, capsys, calls):
    assert main(["run", "all", "-p", "n_live", "500", "-p", "quick", "true", "--out", str(tmp_path)]) == 0
    ran = dict(calls)
    assert set(ran) == set(book.load_chapters())
    assert ran["10_predecessor"]["n_live"] == 500
    assert all("n_live" not in p and p["quick"] is True for n, p in ran.items() if n != "10_predecessor")
    notes = [line for line in capsys.readouterr().out.splitlines() if "n_live" in line and "running" not in line]
    assert len(notes) == 1 and "10_predecessor" in notes[0] and "01_setting" in notes[0], notes


# ------------------------------------------------------------------ out_dir and --out
def test_out_dir_parameter_and_out_option_must_agree(tmp_path, capsys, calls):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["run", "01_setting", "-p", "out_dir", str(a), "--out", str(b)]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "out_dir" in err and "--out" in err and calls == []
    assert main(["run", "01_setting", "-p", "out_dir", str(a), "--out", str(a)]) == 0
    assert main(["run", "01_setting", "-p", "out_dir", str(b)]) == 0
    assert [p["out_dir"] for _, p in calls] == [str(a), str(b)]


@pytest.mark.parametrize("kind", ["file", "read-only folder", "below a file"])
def test_out_is_checked_for_writability_before_anything_runs(tmp_path, capsys, calls, monkeypatch, kind):
    target = _unwritable(tmp_path, kind)
    assert main(["run", "01_setting", "--out", str(target)]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "--out" in err and str(target) in err and calls == []
    from mot_lib.claims import floor
    trained = []
    monkeypatch.setattr(floor, "explore_levers", lambda **kw: trained.append(kw))
    assert main(["levers", "--out", str(target / "levers.csv")]) == 2
    assert "--out" in one_line_error(capsys.readouterr().err) and trained == []


def _unwritable(tmp_path, kind):
    if kind == "file":
        f = tmp_path / "a_file"
        f.write_text("x")
        return f
    if kind == "below a file":
        (tmp_path / "a_file").write_text("x")
        return tmp_path / "a_file" / "sub"
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        (d / "probe").write_text("x")      # root writes anyway: use a folder the kernel refuses (sysfs)
    except OSError:
        return d
    (d / "probe").unlink()
    try:
        open("/sys/mot_probe", "w").close()
    except OSError:
        return __import__("pathlib").Path("/sys")
    pytest.skip("no read-only folder available to this user")


def test_levers_out_a_folder_is_rejected_before_training(tmp_path, capsys, monkeypatch):
    from mot_lib.claims import floor
    trained = []
    monkeypatch.setattr(floor, "explore_levers", lambda **kw: trained.append(kw))
    assert main(["levers", "--out", str(tmp_path)]) == 2
    assert str(tmp_path) in one_line_error(capsys.readouterr().err) and trained == []


# ------------------------------------------------------------------ derived values and types
def test_derived_step_counts_are_checked_up_front_naming_what_was_typed(capsys, calls):
    with pytest.raises(ValueError, match=r"^eta1=5000 .*gives T=4e\+07 steps.*above the maximum 1000000; "
                                         r"choose eta1 <= 125\b"):
        book.params_for("02_proposition1", eta1=5000)
    with pytest.raises(ValueError, match=r"^T1=900000 .*gives T=2\.85e\+06 steps.*choose T1 <= 316200\b"):
        book.params_for("02_proposition1", T1=900_000)
    assert book.params_for("02_proposition1", eta1=125).eta1 == 125    # the bound the message gives is allowed
    assert book.params_for("02_proposition1", T1=316_200).T1 == 316_200
    assert main(["run", "02_proposition1", "-p", "eta1", "5000", "--out", "/nonexistent/never"]) == 2
    assert "eta1=5000" in one_line_error(capsys.readouterr().err) and calls == []


def _wrong_values(default):
    """Values of the wrong type for a parameter whose default is ``default``."""
    if isinstance(default, bool):
        return ["yes", [1]]
    if isinstance(default, tuple):
        return [0.5, "abc", [[1]], ["a"]]
    if isinstance(default, (int, float)):
        return ["abc", [1, 2]]
    if default == "tuned":                # a step: "tuned" (the fair comparison's) or a number
        return ["best", [1], -1.0]
    if isinstance(default, str):
        return [5, [1]]
    return [[1], 5.5]                     # None: a path or a preset


def _type_cases():
    out = []
    for name, cls in sorted(book.load_chapters().items()):
        for f in dataclasses.fields(cls):
            for v in _wrong_values(getattr(cls(), f.name)):
                out.append(pytest.param(name, f.name, v, id=f"{name}-{f.name}-{v!r}"))
    return out


@pytest.mark.parametrize("chapter,field,value", _type_cases())
def test_every_parameter_rejects_a_wrong_type_naming_it(chapter, field, value):
    with pytest.raises(ValueError) as e:
        book.params_for(chapter, **{field: value})
    assert str(e.value).startswith(f"{field}="), str(e.value)


def test_a_number_for_a_list_names_the_parameter(capsys, calls):
    assert main(["run", "07_real_data", "-p", "noise_shares", "0.5"]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "noise_shares=0.5 has the wrong type; expected a list of numbers" in err and calls == []


@pytest.mark.parametrize("chapter,field,value", [("04_lemma1", "noisy_sigma_xi", 500.0),
                                                 ("04_lemma1", "noisy_beta", -1.0)])
def test_out_of_range_names_the_chapter_parameter_not_the_config_field(chapter, field, value):
    with pytest.raises(ValueError, match=rf"^{field}="):
        book.params_for(chapter, **{field: value})


# ------------------------------------------------------------------ errors: one line, exit 2
def _chapter_fails(monkeypatch, ename="ValueError", evalue="data_dir='/x': no such folder"):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    def fail(inp, out, parameters=None, **kw):
        raise PapermillExecutionError(3, 3, "P = ...", ename, evalue,
                                      ["Traceback (most recent call last):"] + [f"  line {i}" for i in range(40)]
                                      + [f"{ename}: {evalue}"])
    monkeypatch.setattr(papermill, "execute_notebook", fail)


@pytest.mark.parametrize("verbose", [[], ["--verbose"]])
def test_an_error_inside_a_chapter_is_one_line_with_exit_2(tmp_path, capsys, monkeypatch, verbose):
    _chapter_fails(monkeypatch)
    assert main(verbose + ["run", "02_proposition1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line == f"error: 02_proposition1: data_dir='/x': no such folder (the executed notebook: " \
                   f"{tmp_path / '02_proposition1.ipynb'})", err
    if verbose:
        assert "Traceback" in err and "line 39" in err
    else:
        one_line_error(err)
    _chapter_fails(monkeypatch, ename="KeyError", evalue="'test_acc'")
    assert main(["run", "02_proposition1", "--out", str(tmp_path), "--verbose"]) == 2   # --verbose after too
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: 02_proposition1: KeyError: 'test_acc'")


@pytest.mark.parametrize("exc", [FileExistsError(17, "File exists", "/x"), PermissionError(13, "Permission denied", "/y"),
                                 FileNotFoundError(2, "No such file or directory", "/z"), OSError(28, "No space left")])
def test_os_errors_are_one_line_with_exit_2(tmp_path, capsys, monkeypatch, exc):
    import papermill

    def fail(*a, **k):
        raise exc
    monkeypatch.setattr(papermill, "execute_notebook", fail)
    assert main(["run", "01_setting", "--out", str(tmp_path)]) == 2
    assert exc.strerror in one_line_error(capsys.readouterr().err)


def test_ctrl_c_is_one_line_with_exit_130(tmp_path, capsys, monkeypatch):
    import papermill

    def interrupt(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(papermill, "execute_notebook", interrupt)
    assert main(["run", "01_setting", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted: nothing was written under data/")


def test_a_failed_run_removes_its_own_stale_verdict_file(tmp_path, capsys, monkeypatch):
    for name in ("02_proposition1", "03_proposition2"):
        book.write_verdicts([ROW(name)], name, tmp_path)
    _chapter_fails(monkeypatch)
    assert main(["run", "02_proposition1", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "verdicts" / "02_proposition1.json").exists()
    assert (tmp_path / "verdicts" / "03_proposition2.json").exists()      # another chapter's file is kept
    assert list(book.read_verdicts(tmp_path).chapter) == ["03_proposition2"]


# ------------------------------------------------------------------ quick runs in the scorecard
def test_quick_verdicts_are_marked_and_not_compared_with_the_replication(tmp_path, monkeypatch):
    monkeypatch.setattr(book.registry, "RUNNING", {})                                  # this process's chapters, restored after
    book.chapter_params("02_proposition1", {"quick": True}, set())          # what the chapter's cell does
    book.write_verdicts([ROW("02_proposition1"), ROW("02_proposition1", 1)], "02_proposition1", tmp_path)
    book.chapter_params("03_proposition2", {"quick": False}, set())
    f = book.write_verdicts([ROW("03_proposition2")], "03_proposition2", tmp_path)
    assert "quick" not in json.loads(f.read_text())[0]                       # a full-size file: no such key
    table = book.read_verdicts(tmp_path)
    assert table.chapter.tolist() == ["02_proposition1"] * 2 + ["03_proposition2"]
    rep = table.assign(verdict="does not hold")
    card = book.scorecard_markdown(table, {"set 1": rep})
    assert "quick run (3 seeds): not compared with the replication" in card
    # the agreement counts only the full-size row (it disagrees: 0 of 1), not the quick run's rows
    assert "on every set: 0 of 1 claim rows (0%)" in card, card
    assert "2 rows come from quick runs (fewer seeds, shorter runs) and are not compared" in card
    quick_part = card.split("quick run (3 seeds)")[1].split("**")[0].split("(regime-trends)=")[0]   # not the trends
    assert "does not hold" not in quick_part and "not compared" in quick_part
    book.chapter_params("02_proposition1", {}, set())
    assert "quick" not in json.loads(book.write_verdicts([ROW("02_proposition1")], "02_proposition1",
                                                         tmp_path).read_text())[0]
    book.chapter_params("08_fair_comparison", {"quick": True}, set())  # its verdicts come from the committed table
    assert "quick" not in json.loads(book.write_verdicts([ROW("08_fair_comparison")], "08_fair_comparison",
                                                         tmp_path).read_text())[0]
    assert "quick" in json.loads(book.write_verdicts([ROW("03_proposition2")], "03_proposition2", tmp_path,
                                                     quick=True).read_text())[0]


# ------------------------------------------------------------------ progress bars and the parameters cells
@pytest.mark.parametrize("cmd,module,func", [(["levers"], "claims.floor", "explore_levers"),
                                             (["regime"], "claims.setting", "compare_models")])
def test_levers_and_regime_respect_MOT_PROGRESS(tmp_path, monkeypatch, cmd, module, func):
    import importlib

    from mot_lib.engine.training import _progress
    mod = importlib.import_module(f"mot_lib.{module}")
    seen = []

    def fake(**kw):
        seen.append(kw.get("progress"))
        raise ValueError("stop here")           # the table itself is not what is tested
    monkeypatch.setattr(mod, func, fake)
    monkeypatch.setenv("MOT_PROGRESS", "0")
    extra = ["--out", str(tmp_path / "l.csv")] if cmd == ["levers"] else []
    assert main(cmd + extra) == 2 and len(seen) == 1
    assert _progress(1, "x", seen[0]) is None


@pytest.mark.parametrize("name", list(book.CHAPTER_MODULES))
def test_papermill_reads_every_parameters_cell_without_a_warning(name, caplog):
    """papermill parses each parameters cell (``PythonTranslator.inspect``); a line it cannot parse (two '='
    on one line, e.g. in a comment) makes it print 'Unable to parse line' on every run."""
    import nbformat
    from papermill.translators import PythonTranslator
    nb = nbformat.read(book.NOTEBOOKS / f"{name}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    with caplog.at_level(logging.WARNING, logger="papermill"):
        names = {p.name for p in PythonTranslator.inspect(cell)}
    assert not [r for r in caplog.records if "Unable to parse" in r.getMessage()], caplog.text
    fields = {f.name for f in dataclasses.fields(book.load_chapters()[name])} - ({"seeds"} if name in book.READERS else set())
    assert names == fields


@pytest.mark.slow
def test_cli_chapter_error_end_to_end_is_one_line(tmp_path, capfd):
    """A real papermill run whose chapter raises (the scorecard reading a malformed verdict file); capfd also
    catches what the kernel process writes to stderr (ipykernel's warning about TCP on every start)."""
    (tmp_path / "verdicts").mkdir()
    (tmp_path / "verdicts" / "02_proposition1.json").write_text("{not json")
    assert main(["run", "99_scorecard", "--out", str(tmp_path)]) == 2
    line = one_line_error(capfd.readouterr().err)
    assert line.startswith("error: 99_scorecard: verdict file 02_proposition1.json is not valid JSON"), line

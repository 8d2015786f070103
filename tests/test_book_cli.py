"""Chapter parameters, verdict files and the command line."""
import json

import pandas as pd
import pytest

import mot_lib as mot
from mot_lib import book
from mot_lib.__main__ import main


def test_chapter_params_unknown_and_bad_values():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['sigma_0'\] for chapter 01_setting"):
        book.params_for("01_setting", sigma_0=0.1)
    with pytest.raises(ValueError, match=r"^M=0 is out of range"):
        book.params_for("01_setting", M=0)
    with pytest.raises(ValueError, match=r"quick='yes' has the wrong type"):
        book.params_for("01_setting", quick="yes")
    with pytest.raises(ValueError, match="unknown chapter"):
        book.params_for("07_nonsense")
    p = book.params_for("01_setting", seeds=[4, 5], quick=True)
    assert p.seeds == (4, 5) and p.train_config().T == p.T // 2


def test_chapter_params_from_namespace():
    before = {"np", "mot"}
    ns = {"np": 1, "mot": 2, "seeds": [1], "N": 3, "_private": 0, "In": [], "out_dir": None}
    p = book.chapter_params("01_setting", ns, before)
    assert p.N == 3 and p.seeds == (1,)
    ns["typo"] = 5
    with pytest.raises(ValueError, match="typo"):
        book.chapter_params("01_setting", ns, before)


def test_verdict_files_roundtrip(tmp_path):
    row = mot.rates.verdict_row("c", "b", mot.rates.Estimate(0.5, 0.4, 0.6), (0.25, 0.75))
    book.write_verdicts([row], "02_x", tmp_path)
    df = book.read_verdicts(tmp_path)
    assert df.loc[0, "verdict"] == "holds" and df.loc[0, "chapter"] == "02_x"
    with pytest.raises(ValueError, match="exactly the keys"):
        book.write_verdicts([{"claim": "c"}], "02_y", tmp_path)
    (tmp_path / "verdicts" / "03_bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="03_bad.json"):
        book.read_verdicts(tmp_path)


def test_verdict_table_formats():
    row = mot.rates.verdict_row("c", "b", mot.rates.Estimate(0.123456, 0.1, 0.2), (0, 1))
    t = book.verdict_table([row])
    assert t.loc[0, "measured"] == "0.123" and t.loc[0, "interval"] == "[0.1, 0.2]"
    assert json.loads(json.dumps(row))["verdict"] == "holds"


def test_cli_rejects_bad_parameter_before_running(capsys):
    assert main(["run", "01_setting", "-p", "M", "0", "--out", "/nonexistent/never"]) == 2
    assert "M=0 is out of range" in capsys.readouterr().err
    assert main(["run", "01_setting", "-p", "bogus", "1"]) == 2
    assert "unknown parameter(s) ['bogus']" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_runs_a_chapter(tmp_path):
    assert main(["run", "99_scorecard", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "99_scorecard.ipynb").exists()


def test_replication_roundtrip_compare_and_bad_manifest(tmp_path):
    """save_replication copies verdicts and writes a manifest; compare_verdicts flags a changed verdict."""
    run_dir = tmp_path / "run"
    a = mot.rates.verdict_row("c1", "b", mot.rates.Estimate(0.5, 0.4, 0.6), (0.25, 0.75))   # holds
    b = mot.rates.verdict_row("c2", "b", mot.rates.Estimate(0.5, 0.1, 0.9), (0.25, 0.75))   # inconclusive
    book.write_verdicts([a, b], "02_x", run_dir)
    dest = book.save_replication(run_dir, {"02_x": [5, 6]}, tmp_path / "rep")
    rep, manifest = book.load_replication(dest)
    assert manifest["seeds"] == {"02_x": [5, 6]} and manifest["library_hash"] == book.library_hash()
    mine = book.read_verdicts(run_dir)
    mine.loc[1, "verdict"] = "holds"
    extra = pd.DataFrame([{"chapter": "03_y", "claim": "new", "bound": "", "measured": 1.0,
                           "interval": [0, 1], "verdict": "holds"}])
    both = book.compare_verdicts(pd.concat([mine, extra], ignore_index=True), rep)
    assert both.same.tolist() == [True, False, False]
    assert both.replication.tolist() == ["holds", "inconclusive", ""]
    assert book.load_replication(tmp_path / "nowhere") is None
    (dest / "manifest.json").write_text('{"seeds": [1, 2]}')
    with pytest.raises(ValueError, match="manifest.json: not a replication manifest"):
        book.load_replication(dest)


def test_replication_seeds_follow_each_chapter():
    assert book.replication_seeds("02_proposition1", [5, 6, 7, 8, 9]) == [5, 6, 7, 8, 9]
    assert book.replication_seeds("05_theorem1", [5, 6, 7, 8, 9]) == [5, 6, 7]
    with pytest.raises(ValueError, match="needs 5"):
        book.replication_seeds("02_proposition1", [5, 6])


def test_committed_replication_covers_every_claim_chapter():
    rep = book.load_replication()
    assert rep is not None, "no data/replication: run `python -m mot_lib replicate`"
    table, manifest = rep
    assert set(manifest["seeds"]) == set(book.replicated_chapters()) == set(table.chapter)
    for name, seeds in manifest["seeds"].items():
        assert not set(seeds) & set(book.params_for(name).seeds), f"{name}: replication reuses a default seed"

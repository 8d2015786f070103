"""Chapter parameters, verdict files and the command line."""
import dataclasses
import json
import re
from pathlib import Path

import pandas as pd
import pytest

import mot_lib as mot
from mot_lib import book
from mot_lib.cli import main
from conftest import vrow


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
    row = vrow("prop1.routing_gd")
    book.write_verdicts([row], "02_proposition1", tmp_path)
    df = book.read_verdicts(tmp_path)
    assert df.loc[0, "verdict"] == "holds" and df.loc[0, "chapter"] == "02_proposition1"
    assert df.loc[0, "id"] == "prop1.routing_gd" and df.loc[0, "kind"] == "claim" and df.loc[0, "statement"] == "prop1"
    with pytest.raises(ValueError, match="must have the keys"):
        book.write_verdicts([{"claim": "c"}], "02_proposition1", tmp_path)
    (tmp_path / "verdicts" / "03_bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="03_bad.json"):
        book.read_verdicts(tmp_path)


def test_verdict_table_formats():
    row = mot.stats.verdict_row("c", "b", mot.stats.Estimate(0.123456, 0.1, 0.2), (0, 1))
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


def test_cli_parses_values_as_papermill_does():
    from mot_lib.cli import parse_value
    assert parse_value("1e-3") == 0.001 and isinstance(parse_value("1e-3"), float)
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value(".5") == 0.5 and parse_value("-2.5E+1") == -25.0
    assert parse_value("True") is True and parse_value("true") is True and parse_value("False") is False
    assert parse_value("None") is None
    assert parse_value("[7, 8, 9]") == [7, 8, 9] and parse_value("[1e-3, 2]") == [0.001, 2]
    assert parse_value("cifar10") == "cifar10" and parse_value("data/x.csv") == "data/x.csv"


def test_cli_errors_name_what_the_user_typed(capsys):
    assert main(["run", "02_proposition1", "-p", "seeds", "abc"]) == 2
    assert "seeds='abc'" in capsys.readouterr().err
    assert main(["run", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert all(n in err for n in book.CHAPTER_MODULES), err
    # a step size in scientific notation is a number, so only the range is checked
    from mot_lib.cli import _parse_params
    assert book.params_for("05_theorem1", **_parse_params([("eta3_gd", "1e-3")])).eta3_gd == 0.001


def test_replication_roundtrip_compare_and_bad_manifest(tmp_path):
    """save_replication copies each set's verdicts and writes a manifest; compare_verdicts flags a change."""
    a = vrow("prop1.routing_gd")                                       # holds
    b = vrow("prop1.gap_at_tspec_gd", lo=0.1, hi=0.9)                 # inconclusive
    book.write_verdicts([a, b], "02_proposition1", tmp_path / "run1")
    book.write_verdicts([a, vrow("prop1.gap_at_tspec_gd")], "02_proposition1", tmp_path / "run2")
    sets = {"set 1": {"02_proposition1": [5, 6]}, "set 2": {"02_proposition1": [7, 8]}}
    dest = book.save_replication({"set 1": tmp_path / "run1", "set 2": tmp_path / "run2"}, sets, tmp_path / "rep")
    reps, manifest = book.load_replication(dest)
    assert manifest["sets"] == sets and manifest["library_hash"] == book.claim_fingerprint()["library_hash"]
    assert manifest["registry_hash"] == book.registry_hash() and len(manifest["history"]) == 1
    assert book.replication_stale(manifest) is None
    assert "canary" in book.replication_stale({**manifest, "canary": [x * (1 + 1e-6) for x in manifest["canary"]]})
    assert list(reps) == ["set 1", "set 2"] and reps["set 2"].verdict.tolist() == ["holds", "holds"]
    mine = book.read_verdicts(tmp_path / "run1")
    mine.loc[1, "verdict"] = "holds"
    extra = pd.DataFrame([{"chapter": "03_proposition2", "id": "prop2.own_score", "claim": "new", "bound": "",
                           "measured": 1.0, "interval": [0, 1], "verdict": "holds"}])
    both = book.compare_verdicts(pd.concat([mine, extra], ignore_index=True), reps["set 1"])
    assert both.same.tolist() == [True, False, False]
    assert both.replication.tolist() == ["holds", "inconclusive", ""]
    assert book.load_replication(tmp_path / "nowhere") is None
    (dest / "manifest.json").write_text('{"seeds": [1, 2]}')
    with pytest.raises(ValueError, match="manifest.json: not a replication manifest"):
        book.load_replication(dest)


def test_replication_sets_are_disjoint_and_sized_per_chapter():
    sets = book.replication_sets(3, draw=7)
    defaults = {s for n in book.claim_chapters() for s in book.params_for(n).seeds}
    seen = []
    for label, chapters in sets.items():
        assert set(chapters) == set(book.claim_chapters())
        for name, seeds in chapters.items():
            assert len(seeds) == len(book.params_for(name).seeds) and not set(seeds) & defaults
        seen.append({s for v in chapters.values() for s in v})
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and not (seen[0] & seen[2])
    assert book.replication_sets(3, draw=7) == sets and book.replication_sets(3, draw=8) != sets
    with pytest.raises(ValueError, match="n_sets=0"):
        book.replication_sets(0)


def test_committed_replication_covers_every_claim_chapter():
    rep = book.load_replication()
    assert rep is not None, "no data/replication: run `python -m mot_lib replicate`"
    reps, manifest = rep
    assert len(reps) >= 2, "the replication needs at least two seed sets"
    used = []
    for label, table in reps.items():
        seeds = manifest["sets"][label]
        assert set(seeds) == set(book.claim_chapters()) == set(table.chapter), label
        for name, s in seeds.items():
            assert not set(s) & set(book.params_for(name).seeds), f"{label}/{name}: reuses a default seed"
        used.append({x for v in seeds.values() for x in v})
    assert all(not (a & b) for i, a in enumerate(used) for b in used[i + 1:]), "replication sets overlap"


def test_verdict_and_scorecard_markdown(tmp_path):
    rows = [vrow("prop1.routing_gd", claim="gap $= \\Theta(\\sigma_0^{0.5})$ | a pipe"),
            vrow("prop1.gap_at_tspec_gd", lo=0.1, hi=0.9),                  # inconclusive
            vrow("prop1.gap_at_stated_T1", value=-0.4, lo=-0.5, hi=-0.3)]   # a check: does not hold, not counted
    md = book.verdict_markdown(rows)
    lines = md.strip().splitlines()
    assert all(line.count(" | ") == 6 for line in lines[2:5]), md
    assert "{bdg-success}`holds`" in lines[2] and "{bdg-warning}`inconclusive`" in lines[3]
    assert r"\| a pipe" in lines[2] and "(10 seeds)" in lines[2] and "| claim |" in lines[2] and "| check |" in lines[4]
    assert "*check* (" in md and "fixed by the optimizer" in md         # why the check is not counted
    book.write_verdicts(rows, "02_proposition1", tmp_path)
    table = book.read_verdicts(tmp_path)
    rep = table.copy()
    rep.loc[1, "verdict"] = "holds"
    card = book.scorecard_markdown(table, {"set 1": table, "set 2": rep})
    first = card.splitlines()[0]
    assert first.startswith("* **Proposition 1** {bdg-warning}`inconclusive`") and "<verdict-02_proposition1>" in first
    assert "Of its 2 claim rows: 1 holds, 1 inconclusive." in first and "1 check row shown apart" in first
    assert "* **The experiments** {bdg-secondary}`not tested`" in card
    assert "**2 claim rows: 1 hold, 0 do not hold, 1 inconclusive.** Not counted: 0 proxy rows, 0 instantiation " \
           "rows, 1 check rows." in card
    assert "on every set: 1 of 2 claim rows (50%); each set alone: 2 of 2 (100%), 1 of 2 (50%)." in card
    assert card.index("## Claims") < card.index("## Checks") and book.chapter_title("02_proposition1") in card
    agree = book.agreement_report(table, {"set 1": table, "set 2": rep})
    assert agree.loc["all", ["rows", "identical", "set 1", "set 2", "share"]].tolist() == [3, 2, 3, 2, 0.667]
    with pytest.raises(ValueError, match="verdict='maybe'"):
        book.badge("maybe")


def test_the_scorecard_shows_where_a_claim_verdict_depends_on_the_seed_set(tmp_path):
    """seed_dependent_markdown: every claim row whose verdict on some set is not the defaults' one, with its value,
    interval, seeds and verdict on each set; a check row that differs is not a claim and is left out."""
    rows = [vrow("prop1.routing_gd"), vrow("prop1.gap_at_tspec_gd", value=0.1, lo=0.0, hi=0.2),
            vrow("prop1.gap_at_stated_T1", value=-0.4, lo=-0.5, hi=-0.3)]
    book.write_verdicts(rows, "02_proposition1", tmp_path)
    table = book.read_verdicts(tmp_path)
    rep = table.copy()
    rep.loc[1, ["measured", "verdict", "seeds"]] = [0.3, "inconclusive", 7]
    rep.at[1, "interval"] = [-0.2, 0.8]
    rep.loc[2, "verdict"] = "holds"                                      # the check row: not shown
    md = book.seed_dependent_markdown(table, {"set 1": table, "set 2": rep})
    lines = md.strip().splitlines()
    assert lines[0].startswith("1 claim row gives another verdict") and len(lines) == 5, md
    assert "| row | bound (accepted range) | test | defaults | set 1 | set 2 |" == lines[2]
    assert table.claim[1] in lines[4] and table.test[1] in lines[4]
    assert lines[4].count("0.1 [0, 0.2], 10 seeds: {bdg-danger}`does not hold`") == 2, lines[4]
    assert lines[4].endswith("| 0.3 [-0.2, 0.8], 7 seeds: {bdg-warning}`inconclusive` |"), lines[4]
    assert book.seed_dependent_markdown(table, {"set 1": table}) == "" == book.seed_dependent_markdown(table, {})


@pytest.mark.parametrize("name", list(book.CHAPTER_MODULES))
def test_parameters_cell_matches_the_registered_defaults(name):
    """What a reader sees in a chapter's parameters cell is what the chapter's parameter class runs with."""
    nb = json.loads((book.NOTEBOOKS / f"{name}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    ns = {}
    exec("".join(cell["source"]), ns)
    shown = {k: v for k, v in ns.items() if not k.startswith("__")}
    cls = book.load_chapters()[name]
    defaults = {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}
    if name in book.READERS:
        defaults.pop("seeds")           # the scorecard and the first page train nothing
    assert set(shown) == set(defaults), f"cell names {sorted(set(shown) ^ set(defaults))} differ"
    for k, v in shown.items():
        d = defaults[k]
        assert (tuple(v) if isinstance(v, list) else v) == d, f"{name}: {k} = {v!r} in the cell, {d!r} registered"


def _replication_and_a_chapter_to_add(tmp_path):
    """A replication of chapter 02 on two sets (folder ``rep``), and chapter 07's runs to add to it (``new1``,
    ``new2``): (the replication's folder, the added chapter's sets)."""
    for k in (1, 2):
        book.write_verdicts([vrow("prop1.routing_gd")], "02_proposition1", tmp_path / f"run{k}")
        book.write_verdicts([vrow("experiments.digits.error_vs_single")], "07_real_data", tmp_path / f"new{k}")
    sets = {"set 1": {"02_proposition1": [5]}, "set 2": {"02_proposition1": [7]}}
    dest = book.save_replication({"set 1": tmp_path / "run1", "set 2": tmp_path / "run2"}, sets, tmp_path / "rep")
    return dest, {"set 1": {"07_real_data": [9]}, "set 2": {"07_real_data": [11]}}


def test_replication_adds_a_chapter_to_the_committed_sets(tmp_path):
    dest, more = _replication_and_a_chapter_to_add(tmp_path)
    book.write_verdicts([vrow("prop1.routing_gd")], "02_proposition1", tmp_path / "defaults")
    book.write_verdicts([vrow("experiments.digits.error_vs_single")], "07_real_data", tmp_path / "defaults")
    book.save_replication({"set 1": tmp_path / "new1", "set 2": tmp_path / "new2"}, more, dest, add=True,
                          defaults=tmp_path / "defaults")
    reps, manifest = book.load_replication(dest)
    assert manifest["sets"]["set 1"] == {"02_proposition1": [5], "07_real_data": [9]}
    assert sorted(reps["set 2"].chapter) == ["02_proposition1", "07_real_data"]
    assert [h["added_chapters"] for h in manifest["history"]] == [False, True]     # the history keeps both
    # the added entry's agreement is that of the whole replication, the kept chapter's rows included (it read
    # only the added chapter's runs, and counted the kept rows as disagreeing)
    assert manifest["history"][-1]["agreement"]["all rows"] == {"rows": 2, "identical": 2,
                                                                "per set": {"set 1": 2, "set 2": 2}}
    with pytest.raises(ValueError, match="are not"):
        book.save_replication({"set 9": tmp_path / "new1"}, {"set 9": {"07_real_data": [1]}}, dest, add=True)


def test_a_chapter_added_under_changed_rules_is_not_frozen_before_the_draw(tmp_path, monkeypatch):
    """``replicate --only`` after a rule or default changed: the added entry records that the rules were not frozen
    before its seeds were drawn (it said they were, and the registry test then passed without a new draw)."""
    from mot_lib.book import claim_registry
    dest, more = _replication_and_a_chapter_to_add(tmp_path)
    book.save_replication({"set 1": tmp_path / "new1", "set 2": tmp_path / "new2"}, more, dest, add=True)
    assert book.load_replication(dest)[1]["history"][-1]["frozen_before_draw"] is True     # same rules
    monkeypatch.setattr(claim_registry, "registry_hash", lambda: "f" * 64)
    book.save_replication({"set 1": tmp_path / "new1", "set 2": tmp_path / "new2"}, more, dest, add=True)
    assert book.load_replication(dest)[1]["history"][-1]["frozen_before_draw"] is False


def test_quick_keeps_the_first_seeds():
    assert book.params_for("02_proposition1", quick=True).seeds == tuple(range(book.QUICK_SEEDS))
    assert book.params_for("02_proposition1", quick=True, seeds=[9, 8]).seeds == (9, 8)
    assert len(book.params_for("02_proposition1").seeds) == 20


def test_beyond_chapters_are_apart_from_the_claims():
    """The part "Beyond the paper" writes verdicts but is not a claim of the paper: not a claim chapter, not
    in the replication's seed sets, and `replicate --only` refuses it."""
    assert book.claim_chapters() == ["02_proposition1", "03_proposition2", "04_lemma1", "05_theorem1",
                                     "06_mechanism", "07_real_data"]
    assert "10_predecessor" in book.beyond_chapters() and set(book.BEYOND) <= set(book.CHAPTER_MODULES)
    assert book.verdict_chapters() == [n for n in book.CHAPTER_MODULES if n in
                                       set(book.claim_chapters()) | set(book.beyond_chapters())]
    for chapters in book.replication_sets(2, draw=3).values():
        assert set(chapters) == set(book.claim_chapters()) and "10_predecessor" not in chapters


def test_replicate_and_agree_leave_the_beyond_chapters_out(tmp_path, capsys):
    assert main(["replicate", "--only", "10_predecessor", "--dest", str(tmp_path / "never")]) == 2
    assert "not claim chapters" in capsys.readouterr().err and not (tmp_path / "never").exists()
    book.write_verdicts([vrow("prop1.routing_gd")], "02_proposition1", tmp_path / "out")
    book.write_verdicts([vrow("predecessor.s1.cubic_MoE.acc")], "10_predecessor", tmp_path / "out")
    book.write_verdicts([vrow("prop1.routing_gd")], "02_proposition1", tmp_path / "run1")
    rep = book.save_replication({"set 1": tmp_path / "run1"}, {"set 1": {"02_proposition1": [5]}}, tmp_path / "rep")
    assert main(["agree", str(rep), "--out", str(tmp_path / "out")]) == 0
    report = capsys.readouterr().out
    assert "02_proposition1" in report and "10_predecessor" not in report, report


def test_scorecard_beyond_section_counts_apart(tmp_path):
    answer = vrow("predecessor.s1.cubic_MoE.acc", 99.0, 98.2, 99.7, (98, 100), claim="setting 1: within 1 point | pipe",
                  bound="mean in [98, 100]",
                  test="mean over the committed table's seeds 0-9 (computed once), Student t 95%")
    other = vrow("predecessor.s1.cubic_MoE.entropy", lo=0.1, hi=0.9, claim="a2")
    book.write_verdicts([answer, other], "10_predecessor", tmp_path)
    book.write_verdicts([vrow("prop1.routing_gd")], "02_proposition1", tmp_path)
    both = book.read_verdicts(tmp_path)
    beyond = both[both.chapter == "10_predecessor"]
    card = book.scorecard_markdown(both[both.chapter == "02_proposition1"])
    assert "**1 claim rows: 1 hold," in card and "10_predecessor" not in card
    md = book.beyond_markdown(beyond)
    assert md.startswith("**2 measured answers, not claims of the paper: 1 hold, 0 do not hold, 1 inconclusive.**")
    assert "<verdict-10_predecessor>" in md and book.chapter_title("10_predecessor") in md
    rows = [line for line in md.splitlines() if line.startswith("| setting 1")]
    assert len(rows) == 1 and r"\| pipe" in rows[0] and "seeds 0-9 (computed once)" in rows[0]
    assert "(10 seeds)" in rows[0] and "{bdg-success}`holds`" in rows[0]


def test_committed_scorecard_lists_the_beyond_part_in_its_own_section():
    """In the executed scorecard, the section 'Beyond the paper: measured answers' follows the paper's claims,
    holds every beyond chapter's link and rows, and the claims' summary counts none of them."""
    nb = json.loads((book.NOTEBOOKS / "99_scorecard.ipynb").read_text())
    cells = nb["cells"]
    head = next(i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                and "## Beyond the paper: measured answers" in "".join(c["source"]))

    def shown(cs):
        return "".join("".join(o.get("data", {}).get("text/markdown", "")) for c in cs if c["cell_type"] == "code"
                       for o in c.get("outputs", []))
    before, after = shown(cells[:head]), shown(cells[head:])
    assert "claim rows:" in before and "measured answers, not claims of the paper" in after
    tables = before[re.search(r"\*\*\d+ claim rows:", before).start():]   # after the headlines and the fair answer
    for name in book.beyond_chapters():
        assert f"<verdict-{name}>" in after and f"<verdict-{name}>" not in tables, name
    for name in book.claim_chapters():
        assert f"<verdict-{name}>" in before and f"<verdict-{name}>" not in after, name
    n_claims = int(re.search(r"\*\*(\d+) claim rows:", before).group(1))
    claims = tables[tables.index("## Claims"):tables.index("## Proxies")]
    claim_rows = [ln for ln in claims.splitlines() if ln.startswith("| ") and "{bdg-" in ln]
    declared = sum(d.kind == "claim" and not d.optional for d in book.claim_registry.rows().values())
    assert n_claims == len(claim_rows) == declared, (n_claims, len(claim_rows), declared)


def test_the_default_draw_gives_the_committed_replication_sets():
    """`python -m mot_lib replicate` with its defaults reruns the seed sets the scorecard shows."""
    manifest = json.loads((book.REPLICATION / "manifest.json").read_text())
    drawn = book.replication_sets(len(manifest["sets"]))
    assert {k: {c: drawn[k][c] for c in v} for k, v in manifest["sets"].items()} == manifest["sets"]


def test_a_stopped_replication_resumes_from_its_finished_chapters(tmp_path, monkeypatch, capsys):
    """replicate keeps each finished chapter's verdicts (keyed by chapter, seeds, set and the chapter's source, not
    by its temporary folder): stopped after one chapter, the same command skips it and runs the rest."""
    import papermill

    from mot_lib.cli import main as cli_main
    from mot_lib.experiments import executor
    monkeypatch.setattr(executor, "CACHE", tmp_path / "cache")
    monkeypatch.setenv("MOT_PROGRESS", "0")
    ran = []

    def fake(inp, out, parameters=None, **kw):
        name = Path(inp).stem
        if len(ran) == 1 and not (tmp_path / "stopped").exists():
            (tmp_path / "stopped").write_text("")
            raise KeyboardInterrupt
        ran.append(name)
        book.write_verdicts([vrow(book.claim_registry.chapter_ids(name)[0])], name, parameters["out_dir"])
    monkeypatch.setattr(papermill, "execute_notebook", fake)
    book.write_verdicts([vrow("prop1.routing_gd")], "02_proposition1", tmp_path / "out")
    args = ["replicate", "--sets", "1", "--only", "02_proposition1", "03_proposition2", "--dest", str(tmp_path / "rep"),
            "--defaults", str(tmp_path / "out")]
    book.write_verdicts([vrow("prop1.routing_gd")], "02_proposition1", tmp_path / "seed")
    book.save_replication({"set 1": tmp_path / "seed"}, {"set 1": {"02_proposition1": [5]}}, tmp_path / "rep")
    assert cli_main(args) == 130
    assert ran == ["02_proposition1"] or ran == ["03_proposition2"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "1 of 2 jobs already computed" in out and len(ran) == 2 and set(ran) == {"02_proposition1", "03_proposition2"}
    assert not (tmp_path / "cache" / f"replicate_{book.replication.COMMITTED_DRAW}").exists()   # dropped once written

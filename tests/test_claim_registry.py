"""The claim registry (mot_lib/book/claim_registry.py): every row the book decides is declared with a kind and a
rule; chapters cannot write an undeclared row; the headlines follow the declared rule; the replication's manifest
holds the registry's hash, and a registry changed since the replication was drawn fails here."""
import json

import pytest

from mot_lib import book
from mot_lib.book import claim_registry as cr
from mot_lib.cli import main
from conftest import vrow


def test_every_declared_row_is_well_formed():
    reg = cr.rows()
    assert len(reg) == len(set(reg))
    for d in reg.values():
        assert d.kind in cr.KINDS and d.chapter in book.verdict_chapters()
        P = book.params_for(d.chapter)
        missing = [p for p in d.rule.params if not hasattr(P, p)]
        assert not missing, f"{d.id}: rule parameters {missing} are not parameters of {d.chapter}"
        assert d.id.split(".")[0] == d.statement or d.kind == "beyond" or d.statement == "experiments"
    # each statement of the paper has its chapter, and every claim chapter decides rows of its statement
    assert [cr.STATEMENTS[k][1] for k in cr.STATEMENTS] == book.claim_chapters()
    kinds = {k: sum(d.kind == k for d in reg.values()) for k in cr.KINDS}
    assert all(kinds[k] for k in cr.KINDS), kinds


@pytest.mark.verdicts
def test_the_committed_verdicts_are_exactly_the_declared_rows():
    """The default run's verdict rows (the committed chapters wrote them; nbval reruns them) are the declared rows,
    each chapter's required ids all present, in the registry's order."""
    table = book.read_verdicts()
    if table.empty:
        pytest.skip("no verdicts under _build/out (run make book or the nbval tests first)")
    for chapter in book.verdict_chapters():
        got = table[table.chapter == chapter]["id"].tolist()
        want = cr.chapter_ids(chapter)
        assert [i for i in got if i in want] == want, chapter
        assert set(got) <= set(cr.chapter_ids(chapter, optional=True)), chapter


@pytest.mark.parametrize("row, chapter, msg", [
    ({"id": None}, "02_proposition1", "has no id"),
    ({"id": "prop1.nonsense"}, "02_proposition1", "'prop1.nonsense' is not declared"),
    ({}, "03_proposition2", "declared for chapter 02_proposition1, not 03_proposition2"),
    ({"test": "median over seeds, bootstrap 95%"}, "02_proposition1", "is not the declared"),
])
def test_an_undeclared_row_cannot_be_written(tmp_path, row, chapter, msg):
    r = {**vrow("prop1.routing"), **row}
    if r["id"] is None:
        del r["id"]
    with pytest.raises(ValueError, match=msg):
        book.write_verdicts([r], chapter, tmp_path)
    assert not (tmp_path / "verdicts" / f"{chapter}.json").exists()
    with pytest.raises(ValueError, match="written twice"):
        book.write_verdicts([vrow("prop1.routing")] * 2, "02_proposition1", tmp_path)


def test_headline_rule():
    assert cr.headline_verdict([]) == "not tested"
    assert cr.headline_verdict(["holds", "holds"]) == "holds"
    assert cr.headline_verdict(["holds", "inconclusive"]) == "inconclusive"
    assert cr.headline_verdict(["inconclusive", "does not hold", "holds"]) == "does not hold"


def test_headlines_count_only_claim_rows(tmp_path):
    """A check that does not hold and an instantiation that does not hold leave a statement whose claim rows all
    hold as holding; a claim row that does not hold makes it fail."""
    rows3 = [vrow("prop2.own_score"), vrow("prop2.other_scores_init", value=0.1, lo=0.05, hi=0.15)]   # check fails
    book.write_verdicts(rows3, "03_proposition2", tmp_path)
    rows5 = [vrow("theorem1.mot_gd", value=0.1, lo=0.05, hi=0.15, accept=(-10, 0.25)),
             vrow("theorem1.single_slower", value=0.1, lo=0.05, hi=0.15)]                             # instantiation
    book.write_verdicts(rows5, "05_theorem1", tmp_path)
    h = {x.statement: x for x in cr.headlines(book.read_verdicts(tmp_path))}
    assert h["prop2"].verdict == "holds" and h["prop2"].rows == ["prop2.own_score"]
    assert h["prop2"].apart == {"check": 1} and "1 check row shown apart" in h["prop2"].sentence
    assert h["theorem1"].verdict == "holds" and h["theorem1"].apart == {"instantiation": 1}
    assert h["prop1"].verdict == "not tested" and h["experiments"].verdict == "not tested"
    book.write_verdicts([vrow("prop2.own_score", value=0.9, lo=0.8, hi=1.0)] + rows3[1:], "03_proposition2", tmp_path)
    h = {x.statement: x for x in cr.headlines(book.read_verdicts(tmp_path))}
    assert h["prop2"].verdict == "does not hold" and "Does not hold: " in h["prop2"].sentence


def test_claims_json(tmp_path, capsys):
    book.write_verdicts([vrow("prop1.routing_gd")], "02_proposition1", tmp_path)
    assert main(["claims", "--json", "--out", str(tmp_path)]) == 0
    reg = json.loads(capsys.readouterr().out)
    assert reg["registry_hash"] == book.registry_hash()
    assert {"id", "chapter", "kind", "statement", "rule", "measured", "verdict"} <= set(reg["rows"][0])
    [row] = [r for r in reg["rows"] if r["verdict"] is not None]
    assert row["id"] == "prop1.routing_gd" and row["verdict"] == "holds" and row["measured"]["value"] == 0.5
    assert row["kind"] == "claim" and row["rule"]["seeds"] == list(book.params_for("02_proposition1").seeds)
    assert [h["statement"] for h in reg["headlines"]] == [v[0] for v in cr.STATEMENTS.values()]
    from mot_lib.book import trends
    committed = trends.committed()
    assert all({"statement", "verdict", "rows", "trend"} <= set(h) and h["trend"] == committed.get(h["key"], [])
               for h in reg["headlines"])
    assert reg["headlines"][0]["verdict"] == "holds" and reg["headlines"][0]["rows"] == ["prop1.routing_gd"]
    assert main(["claims", "--out", str(tmp_path / "nowhere")]) == 2


def test_the_hash_moves_with_a_rule_a_kind_or_a_default(monkeypatch):
    h = cr.registry_hash()
    reg = dict(cr.rows())
    d = reg["prop1.routing"]
    monkeypatch.setitem(cr.rows(), "prop1.routing", cr.Row(d.id, d.chapter, "check", d.statement, d.rule, why="x"))
    assert cr.registry_hash() != h
    monkeypatch.setitem(cr.rows(), "prop1.routing", d)
    assert cr.registry_hash() == h
    cls = book.load_chapters()["04_lemma1"]
    monkeypatch.setattr(cls, "__init__", _with_default(cls, "seed_share", 0.6))
    assert cr.registry_hash() != h


def _with_default(cls, name, value):
    init = cls.__init__

    def __init__(self, *a, **k):
        k.setdefault(name, value)
        init(self, *a, **k)
    return __init__


def test_the_committed_replication_was_drawn_under_this_registry():
    """Rules frozen before new seeds: the committed replication's manifest holds the hash of the registry it was
    drawn under; an edit of a row, a kind, a rule or a chapter's default parameters since then fails here (rerun
    `python -m mot_lib replicate`), and the scorecard says the replication is stale."""
    loaded = book.load_replication(strict=True)
    assert loaded is not None, "no committed replication"
    manifest = loaded[1]
    assert manifest.get("registry_hash") == book.registry_hash(), (
        "the claim registry changed since the committed replication was drawn: rerun `python -m mot_lib replicate`")
    assert book.replication_stale(manifest) is None
    last = manifest["history"][-1]
    assert last["registry_hash"] == manifest["registry_hash"] and last["frozen_before_draw"]
    assert manifest["draw"] not in (1126, 1130, 1201, 1202, 1203, 1204, 1205, 1206, 1207, 1208, 1209, 2026) and manifest["draw"] == book.replication.COMMITTED_DRAW


def test_a_changed_registry_makes_the_replication_stale(monkeypatch):
    manifest = {**book.load_replication(strict=True)[1]}
    monkeypatch.setattr(cr, "registry_hash", lambda: "0" * 64)
    assert "claim registry" in book.replication_stale(manifest)
    assert "before the claim registry" in book.replication_stale({k: v for k, v in manifest.items()
                                                                  if k != "registry_hash"})


def test_the_beyond_families_match_the_experiments():
    """The registry sits below ``experiments`` and lists the configurations the beyond chapters decide rows for;
    they are the experiments' own."""
    from mot_lib.experiments import fair
    from mot_lib.experiments import predecessor_table as pt
    assert cr.FAIR_LEVELS == fair.LEVELS
    assert list(cr.PREDECESSOR_PUBLISHED) == [(k, m, "entropy" in v) for (k, m), v in pt.PUBLISHED.items()]
    assert dict(cr.PREDECESSOR_LOSSES) == pt.LOSSES
    assert sorted({k for k, _, _ in cr.PREDECESSOR_PUBLISHED}) == sorted(pt.SETTINGS)

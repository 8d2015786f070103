"""Every chapter has one text source, notebooks/<chapter>.md (MyST Markdown, jupytext), paired with the executed
notebooks/<chapter>.ipynb that nbval compares and papermill runs: the two hold the same cells (type, source,
tags).  After editing either one, ``make sync`` brings the other in step."""
from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CHAPTERS = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))


def cells(nb) -> list[tuple]:
    return [(c.cell_type, c.source.strip("\n"), tuple(c.metadata.get("tags", ()))) for c in nb.cells]


def test_every_chapter_has_both_files():
    assert CHAPTERS, "no notebooks found"
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.md")) == CHAPTERS


@pytest.mark.parametrize("name", CHAPTERS)
def test_the_md_and_the_ipynb_hold_the_same_cells(name):
    text = jupytext.read(NOTEBOOKS / f"{name}.md")
    run = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert text.metadata.get("jupytext", {}).get("formats") == "ipynb,md:myst", f"{name}.md is not paired"
    assert run.metadata.get("jupytext", {}).get("formats") == "ipynb,md:myst", f"{name}.ipynb is not paired"
    a, b = cells(text), cells(run)
    assert len(a) == len(b), f"{name}: {len(a)} cells in the .md, {len(b)} in the .ipynb; run `make sync`"
    for i, (x, y) in enumerate(zip(a, b)):
        assert x == y, (f"{name}: cell {i + 1} differs between the .md and the .ipynb (type, source or tags); "
                        f"run `make sync`\n.md:    {x}\n.ipynb: {y}")
    assert any("parameters" in t for _, _, t in b if t), f"{name}: no cell tagged 'parameters' (papermill)"


@pytest.mark.parametrize("name", CHAPTERS)
def test_no_chapter_shows_a_warning(name):
    """A warning in a committed output is a defect the reader sees, and it names a temporary file whose name
    changes between runs (/tmp/ipykernel_<pid>/...), so nbval could never match it."""
    run = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    bad = [(i, o.get("text", "")[:200]) for i, c in enumerate(run.cells) if c.cell_type == "code"
           for o in c.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stderr"
           and ("Warning" in o.get("text", "") or "ipykernel_" in o.get("text", ""))]
    assert not bad, f"{name}: cells show warnings: {bad}"


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_styled_table_has_a_fixed_id(name):
    """A pandas Styler names its HTML table with a random uuid unless ``set_uuid`` fixes it; nbval then finds the
    table changed on every run."""
    text = (NOTEBOOKS / f"{name}.md").read_text()
    loose = [line.strip() for line in text.splitlines() if ".style." in line and ".style.set_uuid(" not in line]
    assert not loose, f"{name}: tables styled without set_uuid: {loose}"

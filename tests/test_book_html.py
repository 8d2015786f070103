"""The HTML book, built from the committed (nbval-checked) notebook outputs.

The build runs with warnings as errors and execution off (nbval has just shown
that the committed outputs are what the chapters produce); then every chapter
page must hold its figures, every claim chapter its verdict table with badges and
the anchor the scorecard links to, and no page a traceback.  What a reader sees in
a browser is checked by test_book_browser.py.
"""
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO, toc_notebooks


@pytest.mark.book
def test_every_chapter_in_toc_exists():
    for f in toc_notebooks():
        assert (REPO / f"{f}.ipynb").exists(), f


@pytest.mark.book
@pytest.mark.parametrize("chapter", toc_notebooks())
def test_chapter_page(html, chapter):
    page = (html / f"{chapter}.html").read_text()
    assert "Traceback" not in page
    assert not re.search(r"\b\w*(Error|Exception)\b: ", re.sub(r"<[^>]+>", " ", page)), "an exception in the output"
    name = Path(chapter).name
    if name != "99_scorecard":
        assert page.count("<img") >= 1, "no figure"
    if name not in ("01_setting", "99_scorecard"):
        assert re.search(r"<th[^>]*>\s*(<p>)?verdict(</p>)?\s*</th>", page), "no verdict table"
        assert re.search(r'class="[^"]*sd-badge[^"]*">(holds|does not hold|inconclusive)</span>', page), \
            "verdict table without verdict badges"
        anchor = "verdict-" + name.replace("_", "-")   # Sphinx writes the label verdict-<name> with hyphens
        assert f'id="{anchor}"' in page, "no anchor for the scorecard's link to the verdicts"


@pytest.mark.book
def test_scorecard_lists_every_claim_chapter(html):
    page = (html / "notebooks" / "99_scorecard.html").read_text()
    for f in toc_notebooks():
        n = Path(f).name
        if n not in ("01_setting", "99_scorecard"):
            anchor = "verdict-" + n.replace("_", "-")
            assert f'{n}.html#{anchor}"' in page, f"the scorecard does not link to the verdicts of {n}"


@pytest.mark.book
def test_scorecard_lists_the_part_beyond_the_paper_after_the_claims(html):
    """The chapters of the part "Beyond the paper" are linked in the scorecard's own section for them, after
    every claim chapter."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    beyond = [Path(c["file"]).name for part in toc["parts"] if part["caption"] == "Beyond the paper"
              for c in part["chapters"]]
    page = (html / "notebooks" / "99_scorecard.html").read_text()
    start = page.find('id="beyond-the-paper-measured-answers"')
    assert start > 0, "no section 'Beyond the paper: measured answers'"
    for f in toc_notebooks():
        n = Path(f).name
        if n in ("01_setting", "99_scorecard"):
            continue
        at = page.find(f'{n}.html#verdict-{n.replace("_", "-")}"')
        assert (at > start) == (n in beyond), f"{n} is linked in the wrong section of the scorecard"

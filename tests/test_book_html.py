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

READERS = ("99_scorecard", "intro")     # the pages that read the verdicts: no figure, no verdict table of their own


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
    if name not in READERS:
        assert page.count("<img") >= 1, "no figure"
    if name not in ("01_setting", *READERS):
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
        if n not in ("01_setting", *READERS):
            anchor = "verdict-" + n.replace("_", "-")
            assert f'{n}.html#{anchor}"' in page, f"the scorecard does not link to the verdicts of {n}"


@pytest.mark.book
@pytest.mark.parametrize("page_name", ["intro", "99_scorecard"])
def test_what_the_book_found_opens_the_first_page_and_the_scorecard(html, page_name):
    """Six headline lines, one per statement of the paper, each with a badge and a link to its chapter's verdicts,
    then the fair comparison's answer per iteration and per FLOP; on the scorecard before any table."""
    from mot_lib.book import claim_registry as cr
    page = (html / "notebooks" / f"{page_name}.html").read_text()
    article = page[page.index("<article"):page.index("</article>")]     # the page's content, not its side bars
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", article))
    at = [text.find(name) for name, _, _ in cr.STATEMENTS.values()]
    assert all(a > 0 for a in at) and at == sorted(at), f"headlines missing or out of order: {at}"
    for _, chapter, _ in cr.STATEMENTS.values():
        assert f'{chapter}.html#verdict-{chapter.replace("_", "-")}"' in page
    badges = re.findall(r'class="[^"]*sd-badge[^"]*">(holds|does not hold|inconclusive|not tested)</span>', page)
    assert len(badges) >= 6
    assert "Per iteration:" in text and "Per FLOP:" in text
    if page_name == "99_scorecard":
        summary = re.search(r"\d+ claim rows: \d+ hold, \d+ do not hold, \d+ inconclusive\. Not counted", text).start()
        assert text.find("Per FLOP:") < summary < text.find("Claims: tests of the paper")


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
        if n in ("01_setting", *READERS):
            continue
        link = f'{n}.html#verdict-{n.replace("_", "-")}"'
        at = page.find(link, start)     # (a headline or the fair comparison's answer links above the tables too)
        assert (at > start) == (n in beyond), f"{n} is linked in the wrong section of the scorecard"

"""The HTML book, built from the committed (nbval-checked) notebook outputs.

The build runs with warnings as errors and execution off (nbval has just shown
that the committed outputs are what the chapters produce); then every chapter
page must hold its figures, every claim chapter its verdict table, and no page a
traceback.
"""
import re
from pathlib import Path

import pytest

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
        assert re.search(r"<th>verdict</th>", page), "no verdict table"
        assert re.search(r"<td>(holds|does not hold|inconclusive)</td>", page), "verdict table without verdicts"
        assert "prf:" not in page or "proof" in page  # the claim block was rendered by sphinx-proof


@pytest.mark.book
def test_scorecard_lists_every_claim_chapter(html):
    page = (html / "notebooks" / "99_scorecard.html").read_text()
    for f in toc_notebooks():
        n = Path(f).name
        if n not in ("01_setting", "99_scorecard"):
            assert f"<td>{n}</td>" in page, f"scorecard misses {n}"

"""Every page of the book as a reader meets it: opened in headless Chromium with no network.

The book is built from the committed outputs (the ``html`` fixture); each page is
opened in Debian's ``chromium`` with every host name unresolvable, so a page that
needs a CDN shows what an offline reader sees.  The DOM is read after the
page's scripts ran (``--dump-dom`` with a virtual time budget).  Checked on
every page: no raw directive or math delimiters in the visible text, typeset
MathJax where the page has math, no script or style from another host, every
image loaded; on the claim chapters a rendered statement block; on the
scorecard every claim with a verdict badge and no code.

Without ``chromium`` the test skips with the command that installs it; under CI
(``CI`` set) it fails instead, so CI never skips it.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from bs4 import BeautifulSoup

from conftest import REPO, toc_files

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PARTS = {part["caption"]: [Path(c["file"]).name for c in part["chapters"]]
         for part in yaml.safe_load((REPO / "_toc.yml").read_text())["parts"]}
# the part "Beyond the paper": measured answers, listed apart on the scorecard (not claims of the paper)
BEYOND_CHAPTERS = PARTS.get("Beyond the paper", [])
CLAIM_CHAPTERS = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb")
                        if p.stem not in ("01_setting", "99_scorecard", "intro", *BEYOND_CHAPTERS))
# the chapters of the part "The claims" state a proposition, lemma or theorem of the paper
STATEMENT_CHAPTERS = PARTS.get("The claims", [])
BEYOND_SECTION = "beyond-the-paper-measured-answers"   # the scorecard's section id
RAW = ["```{", ":label:", r"\(", r"\)", r"\[", "$$"]
# Marks each image with whether it loaded, once the page's load event has fired.
PROBE = """<script>window.addEventListener('load', function () {
  document.querySelectorAll('img').forEach(function (i) {
    i.setAttribute('data-probe-loaded', String(i.complete && i.naturalWidth > 0)); });
  document.documentElement.setAttribute('data-probe-done', '1'); });</script>"""

pytestmark = pytest.mark.book


def _need_chromium():
    if CHROMIUM:
        return
    msg = "Debian's chromium is not installed: `apt-get install chromium` (.ci/run does this under CI)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def render(page: Path) -> BeautifulSoup:
    """The DOM of ``page`` after its scripts ran, offline (every host name fails to resolve)."""
    probe = page.with_name(page.stem + ".probe.html")
    text = page.read_text()
    probe.write_text(text.replace("</head>", PROBE + "</head>", 1))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=15000", "--dump-dom",
           probe.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    probe.unlink()
    assert proc.returncode == 0 and "<html" in proc.stdout, f"chromium failed on {page.name}: {proc.stderr[-500:]}"
    return BeautifulSoup(proc.stdout, "html.parser")


@pytest.fixture(scope="module")
def pages(html):
    """file of the toc -> (static HTML soup, rendered DOM soup)."""
    _need_chromium()
    files = toc_files()
    with ThreadPoolExecutor(max_workers=3) as ex:
        doms = list(ex.map(lambda f: render(html / f"{f}.html"), files))
    return {f: (BeautifulSoup((html / f"{f}.html").read_text(), "html.parser"), d) for f, d in zip(files, doms)}


def visible_text(dom: BeautifulSoup) -> str:
    """What a reader reads: the article's text without code inputs, scripts and styles."""
    dom = BeautifulSoup(str(dom), "html.parser")
    for tag in dom(["script", "style", "noscript", "template", "mjx-assistive-mml"]):
        tag.decompose()
    for tag in dom.select(".cell_input, .highlight"):
        tag.decompose()
    return dom.get_text(" ")


def test_no_raw_directive_or_math_text(pages):
    bad = {}
    for f, (_, dom) in pages.items():
        text = visible_text(dom)
        found = [r for r in RAW if r in text]
        if found:
            i = text.find(found[0])
            bad[f] = f"{found}: ...{' '.join(text[max(0, i - 60):i + 80].split())}..."
    assert not bad, "raw source text visible:\n" + "\n".join(f"{k}: {v}" for k, v in bad.items())


def test_math_is_typeset_from_the_books_own_files(pages):
    external, untyped = {}, []
    for f, (static, dom) in pages.items():
        refs = [t.get("src") for t in static.find_all("script") if t.get("src")]
        refs += [t.get("href") for t in static.find_all("link") if "stylesheet" in (t.get("rel") or [])]
        ext = [r for r in refs if re.match(r"^(https?:)?//", r)]
        if ext:
            external[f] = ext
        if static.select(".math") and not dom.find("mjx-container"):
            untyped.append(f)
    assert not external, f"pages load scripts or styles from other hosts: {external}"
    assert not untyped, f"pages with math but no typeset MathJax output (offline): {untyped}"


def test_claim_chapters_show_a_rendered_statement(pages):
    assert STATEMENT_CHAPTERS, "no part 'The claims' in _toc.yml"
    for name in STATEMENT_CHAPTERS:
        _, dom = pages[f"notebooks/{name}"]
        blocks = [b for b in dom.select("div.proof") if b.select_one(".admonition-title")]
        assert blocks, f"{name}: no rendered sphinx-proof statement block"
        title = blocks[0].select_one(".admonition-title").get_text(" ")
        assert re.search(r"(Proposition|Theorem|Lemma)\s+\d+", title) and len(title.split()) > 3, \
            f"{name}: statement block without its title ({title!r})"


def test_every_image_loads(pages):
    bad = {}
    for f, (_, dom) in pages.items():
        assert dom.html.get("data-probe-done") == "1", f"{f}: the page's load event never fired"
        broken = [i.get("src", "")[:60] for i in dom.find_all("img") if i.get("data-probe-loaded") != "true"]
        if broken:
            bad[f] = broken
    assert not bad, f"images that did not load: {bad}"


def _claims(soup: BeautifulSoup) -> list[str]:
    """The first cell's text of every table row that holds a verdict badge (a verdict table's claims)."""
    out = []
    for tr in soup.select("table tbody tr"):
        if tr.select(".sd-badge"):
            out.append(" ".join(tr.find("td").get_text(" ").split()))
    return out


def _kinds(soup: BeautifulSoup) -> list[str]:
    """The second cell's text (the claim registry's kind) of every verdict table row on a chapter page."""
    return [" ".join(tr.find_all("td")[1].get_text(" ").split()) for tr in soup.select("table tbody tr")
            if tr.select(".sd-badge")]


def test_scorecard_lists_every_claim_with_a_badge_and_no_code(pages):
    """Every claim chapter's rows among the paper's claims, every chapter of "Beyond the paper" in its own
    section after them, and each summary line counting its own rows only."""
    static, dom = pages["notebooks/99_scorecard"]
    assert not dom.select(".cell_input"), "the scorecard shows code input"
    section = static.find(id=BEYOND_SECTION)
    assert section is not None, "no section 'Beyond the paper: measured answers' on the scorecard"
    answers = _claims(section)
    rest = BeautifulSoup(str(static), "html.parser")
    rest.find(id=BEYOND_SECTION).decompose()
    card = _claims(rest)
    total = 0
    for names, listed, where in ((CLAIM_CHAPTERS, card, "among the paper's claims"),
                                 (BEYOND_CHAPTERS, answers, "in the section beyond the paper")):
        for name in names:
            claims = _claims(pages[f"notebooks/{name}"][0])
            assert claims, f"{name}: no verdict rows with badges on the chapter page"
            missing = [c for c in claims if c not in listed]
            assert not missing, f"the scorecard misses rows of {name} {where}: {missing}"
            total += len(claims)
    verdicts = [b.get_text(" ").strip() for b in static.select("table tbody tr .sd-badge")]
    assert sum(v in ("holds", "does not hold", "inconclusive") for v in verdicts) >= total, \
        f"{total} claims but only {len(verdicts)} verdict badges on the scorecard"
    text = visible_text(dom)
    assert "..." not in text and "…" not in text, "a scorecard row is cut"
    m = re.search(r"(\d+) claim rows: \d+ hold, \d+ do not hold, \d+ inconclusive", text)
    assert m, "no summary line"
    kinds = [k for name in CLAIM_CHAPTERS for k in _kinds(pages[f"notebooks/{name}"][0])]
    assert int(m.group(1)) == kinds.count("claim"), \
        f"the summary counts {m.group(1)} claim rows, the chapters' tables mark {kinds.count('claim')} rows as claims"
    if BEYOND_CHAPTERS:
        m = re.search(r"(\d+) measured answers, not claims of the paper: \d+ hold", visible_text(section))
        assert m and int(m.group(1)) == len(answers), "the section beyond the paper has no summary line of its own"

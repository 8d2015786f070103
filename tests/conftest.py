"""Shared fixtures: the HTML book built once per test session from the committed notebook outputs."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
JB = Path(sys.executable).parent / "jupyter-book"


def pytest_collection_modifyitems(config, items):
    """What reads the verdicts the chapters write under _build/out gets the ``verdicts`` marker, so that under
    ``make test`` it runs after every chapter has written them (the chapters run in parallel, so a reader among
    them would read a partial set): the nbval cells of the reader pages (``mot_lib.book.READERS``), and every test
    of the built book (``html``): the build executes those pages anew (their metadata asks for it)."""
    from mot_lib.book.registry import READERS
    for item in items:
        path = Path(str(item.fspath))
        if (path.suffix == ".ipynb" and path.stem in READERS) or "html" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.verdicts)


def toc_files():
    """Every file of the table of contents, in reading order (root first)."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]


def toc_notebooks():
    return [f for f in toc_files() if f.startswith("notebooks/")]


@pytest.fixture(scope="session")
def html(tmp_path_factory):
    """Build the book with execution off (nbval has just shown that the committed outputs are what the
    chapters produce), warnings as errors; returns the folder of the HTML pages."""
    out = tmp_path_factory.mktemp("book")
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    cfg["execute"]["execute_notebooks"] = "off"
    cfg_file = out / "_config.yml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([str(JB), "build", str(REPO), "--config", str(cfg_file), "--path-output", str(out),
                           "--builder", "html", "-W", "--keep-going"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "_build" / "html"


def vrow(id: str, value: float = 0.5, lo: float = 0.4, hi: float = 0.6, accept=(0.25, 0.75), **extra) -> dict:
    """A verdict row of the claim registry's row ``id`` (its declared population test) with the given estimate:
    holds by default; ``extra`` overrides keys (``claim``, ``verdict``, ...)."""
    import mot_lib as mot
    d = mot.book.claim_registry.declared(id)
    row = mot.stats.population_row(d.rule.quantity, "b", mot.stats.Estimate(value, lo, hi), accept, d.rule.test, 10,
                                   id=id)
    return {**row, **extra}

"""tools/prebuild.py: the chapters `make book` executes in parallel before the build (the reader pages excluded)."""
import importlib.util

from conftest import REPO, toc_notebooks
from mot_lib import book


def _prebuild():
    spec = importlib.util.spec_from_file_location("prebuild", REPO / "tools" / "prebuild.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_prebuild_runs_every_chapter_but_the_readers_in_reading_order():
    pre = _prebuild()
    assert pre.READERS == book.READERS
    names = [p.stem for p in pre.chapters()]
    assert names == [f.split("/")[-1] for f in toc_notebooks() if f.split("/")[-1] not in book.READERS]
    assert set(book.verdict_chapters()) <= set(names) and "01_setting" in names

import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tools.nbwrite import md, code, write

cells = [
md(r"""
# Scorecard

Every claim chapter ends with verdicts computed from its measurements and
writes them to `<out_dir>/verdicts/<chapter>.json`; this page gathers them.
A verdict is `holds` when the measured value's 95% interval over seeds lies
inside the chapter's stated acceptance range for the paper's bound, `does not
hold` when it lies entirely outside, and `inconclusive` otherwise. Each chapter
states its acceptance ranges and what was measured; follow the chapter's link
for the figures. The book executes this page after the chapters on every build.
"""),
code("""
import pandas as pd
import mot_lib as mot
_before = set(globals())
"""),
code("""
# Parameters (papermill): where the chapters wrote their verdicts (None: the book's default folder).
out_dir = None
quick = False
""", tags=["parameters"]),
code("""
P = mot.book.chapter_params("99_scorecard", globals(), _before)
claims = [n for n in mot.book.CHAPTER_MODULES if n not in ("01_setting", "99_scorecard")]
table = mot.book.read_verdicts(P.out_dir)
missing = [n for n in claims if n not in set(table.chapter)]
if missing:
    print("no verdicts yet from:", ", ".join(missing), "(run those chapters first)")
shown = table.copy()
shown["measured"] = shown["measured"].map(lambda x: f"{x:.3g}")
shown["interval"] = shown["interval"].map(lambda iv: f"[{iv[0]:.3g}, {iv[1]:.3g}]")
shown
"""),
code("""
counts = table.groupby("verdict").size().reindex(list(mot.rates.VERDICTS), fill_value=0)
counts.to_frame("claims")
"""),
md(r"""
The rows come straight from the chapters' files; nothing on this page is typed
by hand. A claim that does not hold or is inconclusive here is discussed, with
what was tried, in its chapter.
"""),
]
write(str(Path(__file__).resolve().parents[2] / "notebooks" / "99_scorecard.ipynb"), cells,
      metadata={"mystnb": {"execution_mode": "force"}})

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
## Do the verdicts survive other seeds?

The chapters' default seeds are the ones their defaults were chosen on. To see
which verdicts depend on that choice, `python -m mot_lib replicate` reruns every
claim chapter at its defaults on other seeds (5, 6, 7, ... by default, as many as
the chapter uses) and commits their verdicts to `data/replication/` with a
manifest of the seeds and of the `mot_lib` version they were computed with. The
table lists every claim whose verdict differs between the two seed sets; such a
verdict rests on an interval that touches its acceptance edge, and its chapter
should be read as borderline on that row.
"""),
code("""
rep = mot.book.load_replication()
if rep is None:
    print("no replication committed yet: run `python -m mot_lib replicate`")
else:
    rep_table, manifest = rep
    if manifest["library_hash"] != mot.book.library_hash():
        print("note: the replication was computed with another version of mot_lib; "
              "rerun `python -m mot_lib replicate` to refresh it")
    both = mot.book.compare_verdicts(table[table.chapter.isin(manifest["seeds"])], rep_table)  # replicated chapters only
    seeds = "; ".join(f"{ch}: {s}" for ch, s in manifest["seeds"].items())
    print(f"replication seeds: {seeds}")
    print(f"same verdict on both seed sets: {int(both.same.sum())} of {len(both)} claims")
    diff = both[~both.same][["chapter", "claim", "verdict", "replication"]]
    display(diff.rename(columns={"verdict": "verdict (default seeds)", "replication": "verdict (replication seeds)"}))
"""),
md(r"""
The rows come straight from the chapters' files and the committed replication;
nothing on this page is typed by hand. A claim that does not hold or is inconclusive here is discussed, with
what was tried, in its chapter.
"""),
]
write(str(Path(__file__).resolve().parents[2] / "notebooks" / "99_scorecard.ipynb"), cells,
      metadata={"mystnb": {"execution_mode": "force"}})

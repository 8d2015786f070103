import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tools.nbwrite import md, code, write

cells = [
md(r"""
# Scorecard

Every claim of the paper that this book tests, with the verdict its chapter
computed from measurements over many seeds. Each verdict is a statement about
the population of seeds, decided by a rule fixed in the chapter's parameters:
`holds` when the 95% interval of the tested quantity (a share of passing seeds
with its Wilson interval, or a mean or median over seeds) lies inside the
accepted range, `does not hold` when it lies entirely outside, `inconclusive`
when it straddles an edge (the chapter then says which way it leans and what
would settle it). Follow a chapter's link for the figures, the rule of each row
and why its threshold is what it is.

The last columns rerun every claim chapter at its full defaults on seed sets
drawn at random, disjoint from the defaults and from each other
(`python -m mot_lib replicate`): a verdict that depends on the seeds the
defaults were chosen on shows up there.
"""),
code("""
import pandas as pd
from IPython.display import Markdown
import mot_lib as mot
_before = set(globals())
"""),
code("""
# Parameters (papermill): where the chapters wrote their verdicts (None: the book's default folder).
out_dir = None
quick = False
""", tags=["parameters", "remove-input"]),
code("""
P = mot.book.chapter_params("99_scorecard", globals(), _before)
claims, beyond = mot.book.claim_chapters(), mot.book.beyond_chapters()
verdicts = mot.book.read_verdicts(P.out_dir)
table = verdicts[verdicts.chapter.isin(claims)]               # the paper's claims
beyond_table = verdicts[verdicts.chapter.isin(beyond)]        # the part "Beyond the paper"
missing = [n for n in claims + beyond if n not in set(verdicts.chapter)]
if missing:
    print("no verdicts yet from:", ", ".join(missing), "(run those chapters first)")
rep = mot.book.load_replication()
reps, stale = {}, None
if rep is not None:
    reps, manifest = rep
    stale = mot.book.replication_stale(manifest)
"""),
code("""
Markdown(mot.book.scorecard_markdown(table, reps))
""", tags=["remove-input"]),
code("""
if rep is None:
    print("No replication is committed yet: run `python -m mot_lib replicate`.")
else:
    sizes = {label: sorted({len(s) for s in sets.values()}) for label, sets in manifest["sets"].items()}
    print("Replication seed sets (seeds per chapter): "
          + "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in sizes.items()))
    if stale:
        print(f"Note: the replication is stale: {stale}; rerun `python -m mot_lib replicate` to refresh it.")
""", tags=["remove-input"]),
md(r"""
## Beyond the paper: measured answers

The chapters of the part *Beyond the paper* answer questions that neither the
paper nor the predecessor MoE theory asks. Their rows are measured answers,
not claims of the paper: they are not counted in the line at the top, not
rerun by `python -m mot_lib replicate` and not part of the share of verdicts
that stay the same on other seeds (`python -m mot_lib agree`). The verdicts of
the predecessor chapter concern a table computed once (`python -m mot_lib
predecessor`, committed as `data/predecessor_table/`) on the seeds its rows
name; rerunning that chapter with other `seeds` changes only its live run.
"""),
code("""
if len(beyond_table):
    display(Markdown(mot.book.beyond_markdown(beyond_table)))
else:
    print("no verdicts yet from:", ", ".join(beyond))
""", tags=["remove-input"]),
md(r"""
The rows come straight from the chapters' verdict files and the committed
replication (`data/replication/`, with the seeds of every set in its
manifest); nothing on this page is typed by hand. A claim that does not hold
or is inconclusive is discussed, with what was tried, in its chapter.
"""),
]
write(str(Path(__file__).resolve().parents[2] / "notebooks" / "99_scorecard.ipynb"), cells,
      metadata={"mystnb": {"execution_mode": "force"}})

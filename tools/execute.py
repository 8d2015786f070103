"""Re-execute chapter notebooks in place, so that their committed outputs are the ones nbval compares against.

    python tools/execute.py notebooks/04_lemma1.ipynb [...]      (or: make execute NB=notebooks/04_lemma1.ipynb)

Each runs in a fresh kernel with the working directory notebooks/ and progress bars off (MOT_PROGRESS=0); the
cells' "execution" timestamps are stripped (noise in every diff, nothing a reader or nbval uses).  Edit the
chapter's .md and run ``make sync`` first: this executes the .ipynb, then the .md is brought in step again.
"""
from __future__ import annotations

import os
import sys

import nbformat


def run(path: str, timeout: int = 600):
    from nbclient import NotebookClient
    os.environ["MOT_PROGRESS"] = "0"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}}).execute()
    for c in nb.cells:
        c.metadata.pop("execution", None)
    nbformat.write(nb, path)


if __name__ == "__main__":
    if len(sys.argv) < 2 or not all(p.endswith(".ipynb") for p in sys.argv[1:]):
        sys.exit("usage: python tools/execute.py notebooks/<chapter>.ipynb [...]")
    for p in sys.argv[1:]:
        run(p)

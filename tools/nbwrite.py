"""Write a chapter notebook from a list of cells, then execute it in place.

    from tools.nbwrite import md, code, write
    write("notebooks/01_setting.ipynb", [md("# Title"), code("seeds = [0, 1]", tags=["parameters"]), ...])

`python tools/nbwrite.py run notebooks/01_setting.ipynb` re-executes a notebook
in place (fresh kernel, cwd notebooks/, progress bars off) so that its committed
outputs are the ones nbval compares against.
"""
from __future__ import annotations

import os
import sys

import nbformat


def md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str, tags=()):
    c = nbformat.v4.new_code_cell(text.strip("\n"))
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def write(path: str, cells, metadata: dict | None = None):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata.update({"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                        "language_info": {"name": "python"}})
    if metadata:
        nb.metadata.update(metadata)
    nbformat.write(nb, path)


def run(path: str, timeout: int = 600):
    from nbclient import NotebookClient
    os.environ["MOT_PROGRESS"] = "0"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}}).execute()
    nbformat.write(nb, path)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "run":
        for p in sys.argv[2:]:
            run(p)
    else:
        print(__doc__)

"""Write a chapter notebook from a list of cells, then execute it in place.

    from tools.nbwrite import md, code, write
    write("notebooks/01_setting.ipynb", [md("# Title"), code("seeds = [0, 1]", tags=["parameters"]), ...])

`python tools/nbwrite.py run notebooks/01_setting.ipynb` re-executes a notebook
in place (fresh kernel, cwd notebooks/, progress bars off) so that its committed
outputs are the ones nbval compares against.  `python tools/nbwrite.py sync
BUILT.ipynb EXECUTED.ipynb` copies edited prose into an executed notebook.
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


def tag_cells(cells):
    """Give every code cell without tags the book's visibility tag (Jupyter Book cell tags):

    * the first code cell (imports), the cell validating the parameters (``chapter_params(``) and
      the cells writing verdicts (``write_verdicts(``): ``remove-input`` (plumbing; outputs stay);
    * every other cell (computations, figures): ``hide-input`` (the code is one click away);
    * the ``parameters`` cell keeps its tag and stays visible, so a reader sees what can be turned.
    """
    first = True
    for c in cells:
        if c.cell_type != "code":
            continue
        if not c.metadata.get("tags"):
            plumbing = first or "chapter_params(" in c.source or "write_verdicts(" in c.source
            c.metadata["tags"] = ["remove-input" if plumbing else "hide-input"]
        first = False
    return cells


def write(path: str, cells, metadata: dict | None = None):
    """Write the notebook to ``path`` (or into the folder $NBWRITE_OUT, for ``sync``)."""
    if os.environ.get("NBWRITE_OUT"):
        path = os.path.join(os.environ["NBWRITE_OUT"], os.path.basename(path))
    nb = nbformat.v4.new_notebook()
    nb.cells = tag_cells(cells)
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
    for c in nb.cells:      # execution timestamps: noise in every diff, nothing a reader or nbval uses
        c.metadata.pop("execution", None)
    nbformat.write(nb, path)


def sync_markdown(built: str, executed: str):
    """Copy the prose (markdown cells) of a freshly built notebook into an executed one, keeping its
    outputs: for an edit of the text alone, which nbval does not compare.  Refuses if any code cell
    differs (then the notebook must be re-executed)."""
    new = nbformat.read(built, as_version=4)
    old = nbformat.read(executed, as_version=4)
    if [c.cell_type for c in new.cells] != [c.cell_type for c in old.cells] or any(
            a.source != b.source or a.metadata.get("tags") != b.metadata.get("tags")
            for a, b in zip(new.cells, old.cells) if a.cell_type == "code"):
        raise SystemExit(f"{executed}: code cells differ from the builder's; re-execute it instead")
    for a, b in zip(new.cells, old.cells):
        if a.cell_type == "markdown":
            b.source = a.source
    nbformat.write(old, executed)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "run":
        for p in sys.argv[2:]:
            run(p)
    elif len(sys.argv) == 4 and sys.argv[1] == "sync":
        sync_markdown(sys.argv[2], sys.argv[3])
    else:
        print(__doc__)

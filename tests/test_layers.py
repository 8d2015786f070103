"""mot_lib's import graph: no cycle, and each layer imports only from the layers below it.

The layers, lowest first: ``engine`` (and ``engine.numerics``, which the package pins first), ``stats``, ``book``,
``experiments``, ``claims``, ``cli``.  Every ``import`` and ``from ... import`` is read with ``ast``, also those
inside functions (a local import is still a dependency)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "mot_lib"
LAYERS = ["engine", "stats", "book", "experiments", "claims", "cli", "__main__"]


def modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        name = ".".join(f.relative_to(ROOT.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = f
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the mot_lib modules it imports (a package's ``__init__`` counts as the package)."""
    edges = {m: set() for m in mods}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                cands = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
            else:
                continue
            # a submodule's import of its own package (or of the top package) is not an edge
            edges[m] |= {t for t in cands if t in mods and t != m and t != "mot_lib" and not m.startswith(t + ".")}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[str]:
    seen, out = {}, []

    def dfs(u, path):
        seen[u] = 1
        for w in sorted(edges[u]):
            if seen.get(w) == 1:
                out.append(" -> ".join(path[path.index(w):] + [w]))
            elif w not in seen:
                dfs(w, path + [w])
        seen[u] = 2
    for m in sorted(edges):
        if m not in seen:
            dfs(m, [m])
    return out


def layer(m: str) -> int | None:
    parts = m.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


EDGES = imports(modules())


def test_the_graph_is_read():
    assert "mot_lib.engine.training" in EDGES["mot_lib.claims.floor"]
    assert "mot_lib.engine.metrics" in EDGES["mot_lib.engine.training"]


def test_no_import_cycle():
    assert cycles(EDGES) == []


@pytest.mark.parametrize("module", sorted(m for m in EDGES if layer(m) is not None))
def test_a_layer_imports_only_from_the_layers_below(module):
    up = sorted(t for t in EDGES[module] if layer(t) is not None and layer(t) > layer(module))
    assert not up, f"{module} imports {up}, a layer above it ({' < '.join(LAYERS)})"


def test_the_rule_hash_reads_a_module_without_its_imports_and_path(tmp_path):
    """A module moved (another path) whose imports changed and nothing else keeps its rule hash; a changed rule
    does not (``staleness._rules_source``, what ``library_hash(modules)`` hashes)."""
    from mot_lib.book.staleness import _rules_source
    a, b, c = tmp_path / "a.py", tmp_path / "sub" / "b.py", tmp_path / "c.py"
    b.parent.mkdir()
    a.write_text("from .config import X\nimport numpy as np\n\ndef f(x):\n    from .data import y\n    return x + 1\n")
    b.write_text("from ..engine.config import (X,\n    Y)\nimport numpy as np\n\ndef f(x):\n    return x + 1\n")
    c.write_text("from .config import X\nimport numpy as np\n\ndef f(x):\n    return x + 2\n")
    assert _rules_source(a) == _rules_source(b) != _rules_source(c)

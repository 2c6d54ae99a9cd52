"""The package graph points down: no package imports one above it, at the top of a module
or hidden in a function (outside the command line, which sits on top of everything).
Imports made only for type checking do not count: they are not arrows at run time."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "postroom"

# lowest first; a module may import its own layer and those below
LAYERS = [
    {"errors", "addresses", "types", "envelope", "control", "maillog", "safeio", "children",
     "forkserver"},
    {"site"},
    {"routing", "srs"},
    {"store"},
    {"runtime"},
    {"queue"},
    {"delivery", "signing"},
    {"runner"},
    {"smtp"},
    {"intake"},
    {"lists", "ops", "web"},
    {"serve"},
    {"cli", "worker", "__main__", "__init__"},
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _part(module: str) -> str:
    return module.split(".")[1] if module.startswith("postroom.") else ""


def _runtime_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) of every postroom import outside ``if TYPE_CHECKING:``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "postroom":
                found += [(node.lineno, f"postroom.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, m) for line, m in found if m.startswith("postroom.")]


def test_every_package_has_a_layer() -> None:
    parts = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert parts - set(RANK) == set(), "add the new package to LAYERS"


def test_no_package_imports_one_above_it() -> None:
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        own = rel.parts[0].removesuffix(".py")
        if own == "cli" or "migrations" in rel.parts:
            continue
        for line, module in _runtime_imports(ast.parse(path.read_text())):
            target = _part(module)
            if target in RANK and RANK[target] > RANK[own]:
                upward.append(f"{rel}:{line} imports {module}")
    assert upward == []

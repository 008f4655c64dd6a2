"""Architecture checks: what ``campaigns`` may import, no import cycle, no oversized module without a reason.

The import graph is built here from the source (``ast``), so ``make test`` needs nothing else:

- nodes: every module of ``campaigns/`` and ``worker/``, and of ``migrations/``, which ships as
  ``campaigns.migrations`` (setup.py maps it);
- edges: EVERY import statement of a module, at module level, inside functions and methods, and under
  ``if TYPE_CHECKING:`` alike. A deferred import is still a dependency; it is how today's cycles hide.
  ``import a.b.c`` depends on the deepest project module among ``a.b.c``, ``a.b``, ``a``; ``from a.b import c``
  on ``a.b.c`` when that is a module, else on ``a.b``; relative imports resolve against the importer's package.
  Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, but that is not counted as an edge: it would
  make a cycle of every package whose ``__init__`` re-exports its own modules' names. Imports named by strings
  (``importlib.import_module``, ``"worker.api:create_app"`` for uvicorn) are not seen.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Folder → the package it is installed as.
SOURCES = {"campaigns": "campaigns", "worker": "worker", "migrations": "campaigns.migrations"}
# The domain library never depends on the wiring (DESIGN.md §5, STYLE.md habit 1).
FORBIDDEN_IN_CAMPAIGNS = ("celery", "fastapi", "starlette", "worker")
MAX_LINES = 500
SIZE_CHECKED = ("campaigns", "worker")
# A longer module says why in its docstring's first lines, with these words, e.g.
# """The simulator's routes. Over 500 lines: one closure shares the state of every route; …"""
SIZE_REASON = re.compile(r"\b500\s+lines\b", re.IGNORECASE)
REASON_WITHIN_LINES = 10


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a project module, or the dotted name imported from outside the project
    line: int
    internal: bool


def project_modules(root: Path = ROOT, sources: Mapping[str, str] = SOURCES) -> dict[str, Path]:
    """Module name → file, for every ``.py`` file under the source folders."""
    modules: dict[str, Path] = {}
    for folder, package in sources.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = [*package.split("."), *path.relative_to(root / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _deepest_module(name: str, modules: Mapping[str, Path]) -> str | None:
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> Iterator[Import]:
    """Every import in ``path``, wherever it stands in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _classify(module, alias.name, node.lineno, modules)
        elif isinstance(node, ast.ImportFrom):
            if node.module == "__future__":
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield _classify(module, submodule if submodule in modules else base, node.lineno, modules)


def _classify(importer: str, name: str, line: int, modules: Mapping[str, Path]) -> Import:
    target = _deepest_module(name, modules)
    if target is None:
        return Import(importer, name, line, internal=False)
    return Import(importer, target, line, internal=True)


def all_imports(modules: Mapping[str, Path]) -> list[Import]:
    return [imp for module, path in modules.items() for imp in imports_of(module, path, modules)]


def import_cycles(modules: Iterable[str], imports: Iterable[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted, in a stable order."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if imp.internal and imp.target != imp.importer:
            edges[imp.importer].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(edges[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(components)


def _describe(cycle: list[str], imports: Iterable[Import], modules: Mapping[str, Path]) -> str:
    members = set(cycle)
    edges = sorted(
        {
            (str(modules[i.importer].relative_to(ROOT)), i.line, i.target)
            for i in imports
            if i.internal and i.importer in members and i.target in members and i.importer != i.target
        }
    )
    where = "".join(f"\n  {path}:{line} imports {target}" for path, line, target in edges)
    return "cycle " + " <-> ".join(cycle) + where


def _size_reason_given(path: Path) -> bool:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return bool(SIZE_REASON.search("\n".join(docstring.splitlines()[:REASON_WITHIN_LINES])))


# --- the checks ----------------------------------------------------------------------------------------------


def test_campaigns_imports_neither_the_frameworks_nor_worker() -> None:
    modules = project_modules()
    offending = [
        f"{modules[i.importer].relative_to(ROOT)}:{i.line} imports {i.target}"
        for i in all_imports(modules)
        if i.importer.split(".")[0] == "campaigns" and i.target.split(".")[0] in FORBIDDEN_IN_CAMPAIGNS
    ]
    assert not offending, (
        "campaigns/ must not import " + ", ".join(FORBIDDEN_IN_CAMPAIGNS) + ":\n" + "\n".join(offending)
    )


def test_no_import_cycle() -> None:
    modules = project_modules()
    imports = all_imports(modules)
    cycles = import_cycles(modules, imports)
    assert not cycles, "\n".join(_describe(cycle, imports, modules) for cycle in cycles)


def test_no_module_over_500_lines_without_a_reason_at_its_top() -> None:
    too_long = []
    for folder in SIZE_CHECKED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            count = len(path.read_text(encoding="utf-8").splitlines())
            if count > MAX_LINES and not _size_reason_given(path):
                too_long.append(f"  {path.relative_to(ROOT)}: {count} lines")
    assert not too_long, (
        f"over {MAX_LINES} lines, and the module docstring's first {REASON_WITHIN_LINES} lines give no reason "
        f"(a sentence with the words '{MAX_LINES} lines', e.g. 'Over {MAX_LINES} lines: …'):\n" + "\n".join(too_long)
    )


# --- the graph itself, on a made-up package ------------------------------------------------------------------


def _write(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_graph_counts_deferred_relative_and_type_checking_imports(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "def f():\n    from pkg import b  # deferred\n    return b\n",
            "pkg/b.py": "from .sub import c\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import f\n",
            "pkg/d.py": "import pkg.sub.c\nimport fastapi.routing\nfrom pkg.sub import nothing_here\n",
        },
    )
    modules = project_modules(tmp_path, {"pkg": "pkg"})
    imports = all_imports(modules)
    assert {(i.importer, i.target) for i in imports} == {
        ("pkg.a", "pkg.b"),
        ("pkg.b", "pkg.sub.c"),
        ("pkg.sub.c", "pkg.a"),
        ("pkg.sub.c", "typing"),
        ("pkg.d", "pkg.sub.c"),
        ("pkg.d", "fastapi.routing"),
        ("pkg.d", "pkg.sub"),  # a name from the package's __init__
    }
    assert import_cycles(modules, imports) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


def test_a_long_module_passes_with_a_reason_in_its_docstring(tmp_path: Path) -> None:
    body = "x = 1\n" * (MAX_LINES + 1)
    with_reason, without = tmp_path / "with_reason.py", tmp_path / "without.py"
    with_reason.write_text('"""Routes.\n\nOver 500 lines: one closure holds the shared state."""\n' + body)
    without.write_text('"""Routes."""\n# Over 500 lines, said in a comment only.\n' + body)
    assert _size_reason_given(with_reason)
    assert not _size_reason_given(without)

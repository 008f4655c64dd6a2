"""``campaigns/lifecycle/transitions.py`` is the one place in the lifecycle that assigns a status."""

from __future__ import annotations

import ast
from pathlib import Path

import campaigns.lifecycle

PACKAGE = Path(campaigns.lifecycle.__file__).parent
WRITER = "transitions.py"


def assignments(path: Path) -> list[str]:
    """``<x>.status = …`` and ``<x>.state = …`` in ``path``, as ``file:line``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AugAssign | ast.AnnAssign)
            else []
        )
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr in ("status", "state"):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_only_the_transitions_module_assigns_a_status() -> None:
    others = [hit for path in sorted(PACKAGE.glob("*.py")) if path.name != WRITER for hit in assignments(path)]
    assert others == []
    assert assignments(PACKAGE / WRITER)  # the check itself sees assignments where they are

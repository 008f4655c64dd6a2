"""How long the fuzz tests run: a few deterministic cases by default (CI), many random ones under ``make fuzz``.

``CAMPAIGNS_FUZZ_EXAMPLES`` multiplies nothing: it is the number of examples each fuzz test (and each schemathesis
operation) draws, and, when set, the cases are random (``derandomize`` off) so each long run explores new ones.
"""

from __future__ import annotations

import os


def fuzz_examples(default: int) -> int:
    value = os.environ.get("CAMPAIGNS_FUZZ_EXAMPLES")
    return int(value) if value else default


def fuzz_derandomized() -> bool:
    return not os.environ.get("CAMPAIGNS_FUZZ_EXAMPLES")

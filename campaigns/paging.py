"""Paging of every list the API serves: Telnyx's ``page[number]`` / ``page[size]`` and its list envelope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

MAX_PAGE_SIZE: Final = 250
"""Largest ``page[size]``: Telnyx's cap for scheduled events, used for every list."""
DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_NUMBER: Final = 1_000_000
"""Highest ``page[number]`` accepted: keeps ``(page - 1) * size`` far inside PostgreSQL's bigint OFFSET."""


@dataclass(frozen=True)
class Page:
    """Which page of a list is asked for (1-based)."""

    number: int = 1
    size: int = DEFAULT_PAGE_SIZE

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


def page_envelope(data: list[dict[str, Any]], total: int, page: Page) -> dict[str, Any]:
    """The Telnyx list envelope: ``data`` and ``meta`` with page counts."""
    return {
        "data": data,
        "meta": {
            "total_pages": (total + page.size - 1) // page.size,
            "total_results": total,
            "page_number": page.number,
            "page_size": page.size,
        },
    }

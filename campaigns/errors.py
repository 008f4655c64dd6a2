"""Domain errors that map onto the Telnyx error envelope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of a request."""

    pointer: str
    detail: str
    code: str = "10015"
    title: str = "Invalid parameter"

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
            "source": {"pointer": self.pointer},
        }


class ValidationFailed(Exception):
    """The request is invalid; every problem found is listed."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.pointer}: {e.detail}" for e in errors))
        self.errors = errors


class NotFound(Exception):
    """No such resource (for this assistant)."""


class Conflict(Exception):
    """The request conflicts with the resource's current state."""

"""Domain errors. The HTTP layer (``worker/api/errors.py``) maps each onto the Telnyx error envelope."""

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
    """No such resource (for this assistant): ``kind`` names what was looked for, ``id`` the reference given.

    ``NotFound("campaign", ref)`` reads "no campaign <ref>".
    """

    def __init__(self, kind: str, id: object) -> None:
        self.kind = kind
        self.id = id
        super().__init__(f"{kind} {id}")

    @property
    def detail(self) -> str:
        """The sentence an API answer gives: ``no scheduled event 0b7a…``."""
        return f"no {self}"


class Conflict(Exception):
    """The request conflicts with the resource's current state."""


class IdempotencyKeyReused(Exception):
    """An ``Idempotency-Key`` already stands for a create request with a different body."""

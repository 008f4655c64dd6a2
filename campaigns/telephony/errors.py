"""The typed provider errors, so the lifecycle can tell a refusal from a rejection from an unknown outcome.

- ``TransientProviderError``: refused before anything happened (connection refused, 429, 503): try again
  later, no retry budget consumed.
- ``PermanentProviderError``: the provider rejected the request (4xx): the event fails with the error.
- ``OutcomeUnknown``: the request may have reached the provider and been acted on (read timeout, connection
  dropped after sending, any other 5xx, an answer that cannot be read): never re-sent.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base of the typed provider errors."""

    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class TransientProviderError(ProviderError):
    """Nothing was placed; the same request may be made again later."""


class PermanentProviderError(ProviderError):
    """The provider refused this request for good."""


class OutcomeUnknown(ProviderError):
    """The request may have been acted on; it must not be re-sent."""

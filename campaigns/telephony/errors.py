"""The typed provider errors, so the lifecycle can tell a refusal from a rejection from an unknown outcome.

- ``TransientProviderError``: refused before anything happened (connection refused, 429, 503): try again
  later, no retry budget consumed.
- ``ProviderHeld``: the provider refused the *account*, not this request (401/403, or a 404/422 naming the
  connection, TeXML application or messaging profile): nothing was placed, no event is at fault; dispatch
  through that adapter is held until a probe is accepted (``campaigns.holds``).
- ``PermanentProviderError``: the provider rejected the request (4xx): the event fails with the error.
- ``OutcomeUnknown``: the request may have reached the provider and been acted on (read timeout, connection
  dropped after sending, any other 5xx, an answer that cannot be read): never re-sent.
"""

from __future__ import annotations

from typing import Final

HOLD_REASONS: Final = ("api_key", "connection", "messaging_profile")
"""Why an account is held: the bounded label of ``campaigns_provider_blocked{reason}``."""


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


class ProviderHeld(ProviderError):
    """The provider refused the account itself (``reason`` in ``HOLD_REASONS``); nothing was placed.

    ``detail`` is the short sentence events show as ``deferred_reason`` while the hold is open (``provider
    rejected the API key (401)``); the message keeps the provider's own words for the logs.
    """

    def __init__(
        self, message: str, *, reason: str, detail: str, status_code: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, status_code=status_code, code=code)
        self.reason = reason
        self.detail = detail


class OutcomeUnknown(ProviderError):
    """The request may have been acted on; it must not be re-sent."""

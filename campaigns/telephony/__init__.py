"""Telephony: how the engine talks to Telnyx, and the only package that touches ``httpx``.

Owns no table. One ``Telephony`` protocol (``protocol``) with three Telnyx adapters sharing one ``httpx.Client``
per thread (``transport``):

- ``texml.TelnyxTexml``: ``POST /texml/ai_calls/{connection_id}`` (default for calls). No idempotency key exists
  on this endpoint, so a request whose outcome is unknown must never be re-sent.
- ``call_control.TelnyxCallControl``: ``POST /calls`` with ``command_id`` = attempt id (Telnyx ignores a repeated
  dial).
- ``messaging.TelnyxMessaging``: ``POST /messages`` with ``Idempotency-Key`` = attempt id; a message whose outcome
  is unknown is looked up in the message detail records (``GET /detail_records``).

``providers`` picks the adapter per channel; ``errors`` holds the typed errors the lifecycle tells apart;
``callbacks`` parses what Telnyx sends back and ``signatures`` verifies (and, for the simulator, makes) the
Ed25519 signatures on it.

May import: ``campaigns.settings``, ``campaigns.states``, ``campaigns.metrics``; never the lifecycle, the
database or ``worker``.
"""

from __future__ import annotations

from campaigns.telephony.call_control import TelnyxCallControl
from campaigns.telephony.callbacks import (
    HANGUP_TO_STATUS,
    Callback,
    WebhookRejected,
    hangup_call_status,
    parse_json_event,
    parse_texml_status,
)
from campaigns.telephony.errors import (
    HOLD_REASONS,
    OutcomeUnknown,
    PermanentProviderError,
    ProviderError,
    ProviderHeld,
    TransientProviderError,
)
from campaigns.telephony.messaging import TelnyxMessaging
from campaigns.telephony.protocol import DispatchRequest, DispatchResult, Telephony
from campaigns.telephony.providers import Providers, probe, providers_from_settings
from campaigns.telephony.texml import TelnyxTexml
from campaigns.telephony.transport import RESEND_WINDOW_SECS, request_pool, shared_client, tls_context, warm_up

__all__ = [
    "HANGUP_TO_STATUS",
    "HOLD_REASONS",
    "RESEND_WINDOW_SECS",
    "Callback",
    "DispatchRequest",
    "DispatchResult",
    "OutcomeUnknown",
    "PermanentProviderError",
    "ProviderError",
    "ProviderHeld",
    "Providers",
    "Telephony",
    "TelnyxCallControl",
    "TelnyxMessaging",
    "TelnyxTexml",
    "TransientProviderError",
    "WebhookRejected",
    "hangup_call_status",
    "parse_json_event",
    "parse_texml_status",
    "probe",
    "providers_from_settings",
    "request_pool",
    "shared_client",
    "tls_context",
    "warm_up",
]

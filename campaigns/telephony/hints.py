"""The attempt hint in callback URLs, MACed so that a query parameter cannot point a callback at another attempt.

The dispatcher puts ``?attempt_id=<attempt>.<mac>`` in every callback URL it gives the provider (TeXML
``StatusCallback``, Call Control and messaging ``webhook_url``), where ``mac`` is HMAC-SHA256 of the attempt id
under ``CAMPAIGNS_CALLBACK_HINT_SECRET``, truncated to 128 bits, base64url. Telnyx signs the body of a webhook,
never its URL (``telnyx-signature-ed25519`` is the "Ed25519 signature of timestamp|payload",
developers.telnyx.com/api-reference/callbacks/call-payment-progress), so without the MAC anyone holding one
genuine signed callback could replay it with ``?attempt_id=`` of another attempt and complete that one (issue #19
item 5).

How the webhook path uses it (``campaigns.webhooks``): a callback never applies to an attempt whose stored call
or message id differs from its own. A signed hint also names the attempt before its id is stored (a callback
racing the dispatcher's commit, or the late truth of a request that timed out); an unsigned or wrongly signed
one (the URLs of calls placed before the upgrade) is believed only when the ids agree. A Call Control
``client_state`` naming the attempt counts as signed: it is set by the dialer, echoed by Telnyx and covered by
the body's signature.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import uuid

from campaigns.settings import Settings

_LABEL = b"campaigns callback attempt hint v1"


def hint_key(settings: Settings) -> bytes:
    """The MAC key: ``CAMPAIGNS_CALLBACK_HINT_SECRET``, else derived from the Telnyx API key, else from the
    database URL (every process of a deployment shares both). The API and the workers must derive the same key;
    when they do not, hints verify as unsigned and callbacks still match wherever the stored ids agree."""
    return _derive(settings.callback_hint_secret or settings.telnyx_api_key or settings.database_url or "")


@functools.lru_cache(maxsize=8)
def _derive(secret: str) -> bytes:
    return hmac.new(_LABEL, secret.encode(), hashlib.sha256).digest()


def _mac(key: bytes, attempt_id: uuid.UUID) -> str:
    digest = hmac.new(key, attempt_id.bytes, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def signed_hint(settings: Settings, attempt_id: uuid.UUID) -> str:
    """``<attempt id>.<mac>``: the value of ``attempt_id`` in a callback URL."""
    return f"{attempt_id}.{_mac(hint_key(settings), attempt_id)}"


def hint_applies(signed: bool, callback_id: str | None, stored_id: str | None) -> bool:
    """Whether a callback may apply to the attempt its hint names, given the provider id the callback carries
    and the one stored on the attempt: never when they differ; with both known and equal always; with one of
    them unknown only when the hint is signed (the callback raced the commit of the id, or the request timed
    out before it answered)."""
    if callback_id is not None and stored_id is not None:
        return callback_id == stored_id
    return signed


def read_hint(value: object, key: bytes | None) -> tuple[uuid.UUID | None, bool]:
    """The attempt a hint names and whether its MAC verifies under ``key``; a bare id (URLs from before the MAC)
    names its attempt unsigned; anything else names none."""
    if not isinstance(value, str):
        return None, False
    raw_id, _, mac = value.partition(".")
    try:
        attempt_id = uuid.UUID(raw_id)
    except ValueError:
        return None, False
    signed = bool(mac) and key is not None and hmac.compare_digest(mac, _mac(key, attempt_id))
    return attempt_id, signed

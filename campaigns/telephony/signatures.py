"""Telnyx webhook signatures: Ed25519 over ``f"{timestamp}|"`` followed by the exact raw body."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"


class SignatureError(Exception):
    """The webhook is unsigned, tampered with, signed by another key, or outside the time tolerance."""


def signed_message(timestamp: str, body: bytes) -> bytes:
    return timestamp.encode() + b"|" + body


def private_key_from_b64(seed_b64: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed_b64))


def public_key_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes_raw()).decode()


def private_key_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.private_bytes_raw()).decode()


def sign(key: Ed25519PrivateKey, timestamp: str, body: bytes) -> str:
    """The base64 signature Telnyx would send in ``telnyx-signature-ed25519``."""
    return base64.b64encode(key.sign(signed_message(timestamp, body))).decode()


def load_public_key(public_key: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(public_key, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("CAMPAIGNS_TELNYX_PUBLIC_KEY is not a base64 32-byte Ed25519 public key") from exc


def verify(
    public_key: Ed25519PublicKey,
    *,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    real_now: datetime,
    tolerance_secs: int = 300,
) -> None:
    """Raise ``SignatureError`` unless ``signature`` is valid for ``timestamp|body`` and fresh in real time."""
    if not signature or not timestamp:
        raise SignatureError("missing telnyx-signature-ed25519 or telnyx-timestamp header")
    try:
        ts = int(timestamp)
    except ValueError as exc:
        raise SignatureError("telnyx-timestamp is not an integer") from exc
    if abs(int(real_now.timestamp()) - ts) > tolerance_secs:  # in integers: a 400-digit timestamp overflows a float
        raise SignatureError("telnyx-timestamp is outside the allowed tolerance")
    try:
        raw = base64.b64decode(signature, validate=True)
    except binascii.Error as exc:
        raise SignatureError("signature is not base64") from exc
    try:
        public_key.verify(raw, signed_message(timestamp, body))
    except InvalidSignature as exc:
        raise SignatureError("signature does not match") from exc

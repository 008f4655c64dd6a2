"""The console's session: a signed cookie set on sign-in with the admin API token, and a CSRF token per session.

The cookie (``campaigns_console``) is signed with itsdangerous, HttpOnly, SameSite=Strict, ``Secure`` when the
request came over HTTPS, and holds a random CSRF token and a fingerprint of the token that signed in: changing
``CAMPAIGNS_API_TOKEN`` signs every browser out. The signing key is derived from the API token; without a
configured token (the API is then open too) it is random per process. Before sign-in a ``campaigns_console_pre``
cookie carries the CSRF token of the sign-in form, so a third-party page cannot sign a browser in either.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

SESSION_COOKIE = "campaigns_console"
PRE_SESSION_COOKIE = "campaigns_console_pre"
SESSION_MAX_AGE = 12 * 3600
"""Seconds a sign-in lasts."""
CSRF_FIELD = "csrf_token"

_PROCESS_KEY = secrets.token_bytes(32)


@dataclass(frozen=True)
class ConsoleSession:
    csrf: str


class SignInRequired(Exception):
    """No valid session: the browser is sent to the sign-in page."""


class CsrfRejected(Exception):
    """A form posted without this session's CSRF token."""


def _fingerprint(token: str | None) -> str:
    return hashlib.sha256(b"campaigns console " + (token or "").encode()).hexdigest()[:16]


def _serializer(token: str | None) -> URLSafeTimedSerializer:
    key = hmac.new(token.encode(), b"campaigns console session", "sha256").digest() if token else _PROCESS_KEY
    return URLSafeTimedSerializer(key, salt="campaigns-console")


def token_matches(configured: str | None, given: str) -> bool:
    """Sign-in: the admin token (any input when none is configured, as the API is then open)."""
    if not configured:
        return True
    return hmac.compare_digest(given.strip().encode(), configured.encode())


def _load(request: Request, name: str, token: str | None) -> dict[str, Any] | None:
    raw = request.cookies.get(name)
    if not raw:
        return None
    try:
        data = _serializer(token).loads(raw, max_age=SESSION_MAX_AGE)
    except BadSignature:
        return None
    return data if isinstance(data, dict) else None


def current_session(request: Request, token: str | None) -> ConsoleSession | None:
    data = _load(request, SESSION_COOKIE, token)
    if data is None or data.get("who") != _fingerprint(token) or not isinstance(data.get("csrf"), str):
        return None
    return ConsoleSession(csrf=data["csrf"])


def signed_in_headers(headers: list[tuple[bytes, bytes]], token: str | None) -> bool:
    """Whether raw ASGI headers carry a valid session cookie: what ``api.guard`` checks before it lets a console
    form's body (an upload) be read."""
    jar = SimpleCookie()
    for name, value in headers:
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                return False
    morsel = jar.get(SESSION_COOKIE)
    if morsel is None:
        return False
    try:
        data = _serializer(token).loads(morsel.value, max_age=SESSION_MAX_AGE)
    except BadSignature:
        return False
    return isinstance(data, dict) and data.get("who") == _fingerprint(token)


def pre_session_csrf(request: Request, token: str | None) -> str | None:
    data = _load(request, PRE_SESSION_COOKIE, token)
    value = data.get("csrf") if data else None
    return value if isinstance(value, str) else None


def _set(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def start_pre_session(request: Request, response: Response, token: str | None, csrf: str) -> None:
    """Remember the sign-in form's CSRF token (``pre_session_csrf`` reads it back on the post)."""
    _set(response, request, PRE_SESSION_COOKIE, _serializer(token).dumps({"csrf": csrf}), 3600)


def start_session(request: Request, response: Response, token: str | None) -> None:
    value = _serializer(token).dumps({"who": _fingerprint(token), "csrf": new_csrf()})
    _set(response, request, SESSION_COOKIE, value, SESSION_MAX_AGE)
    response.delete_cookie(PRE_SESSION_COOKIE, path="/ui")


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/ui")


def check_csrf(expected: str | None, given: object) -> None:
    if not expected or not isinstance(given, str) or not hmac.compare_digest(expected.encode(), given.encode()):
        raise CsrfRejected

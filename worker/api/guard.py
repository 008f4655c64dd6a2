"""The checks every request meets before FastAPI reads a byte of its body (a bare ASGI layer, docs/security.md).

FastAPI resolves a route's dependencies only after it has parsed the body the route declares: a multipart upload
was spooled to disk in full before the bearer token was looked at (issue 19 item 6). So, here and in this order:

1. the operator API (``/v1/…``, ``/v2/…``) without ``CAMPAIGNS_API_TOKEN`` is served only on a loopback socket
   (the address the request arrived on, ASGI ``scope["server"]``; a unix socket counts as local), whoever started
   the server (issue 19 item 10);
2. a wrong or missing bearer token is a 401 from the headers alone; ``/metrics`` wants
   ``CAMPAIGNS_METRICS_TOKEN`` when it is set;
   the console (``/ui``) follows the same loopback rule, and a console form other than sign-in is answered with
   a redirect to the sign-in page, unread, when the request carries no valid session cookie;
3. the body is capped: a declared ``Content-Length`` over the cap is a 413 at once, and a body streamed past it
   is cut off where it crosses the cap (:class:`BodyTooLarge`, answered 413 by ``errors.install``).

The routes keep their own ``require_token`` dependency as well: one mistake here does not open them.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Callable
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campaigns.settings import Settings
from worker.api.errors import AUTH_CODE, BodyTooLarge, error_body, too_large_body

log = logging.getLogger(__name__)

PROTECTED_PREFIXES: Final = ("/v1/", "/v2/")
CONSOLE: Final = "/ui"
CONSOLE_OPEN_FORMS: Final = frozenset({"/ui/sign-in"})
"""Console forms a browser posts before it has a session."""
METRICS_PATH: Final = "/metrics"
UPLOAD_ROUTES: Final = frozenset(
    {
        ("POST", "/v1/campaigns"),
        ("POST", "/v1/suppressions/import"),
        ("POST", "/ui/campaigns/new"),
        ("POST", "/ui/do-not-contact/import"),
    }
)
"""Routes that take a file: capped at ``max_upload_bytes`` plus :data:`FORM_OVERHEAD`, not ``api_max_body_bytes``."""
FORM_OVERHEAD: Final = 2 * 1024 * 1024
"""Bytes a multipart body may carry besides its file: part headers and the campaign settings JSON (Starlette
caps a non-file part at 1 MiB)."""


def body_limit(settings: Settings, method: str, path: str) -> int | None:
    """The byte cap of a request's body (``None``: the route reads no body we cap here)."""
    if (method, path.rstrip("/")) in UPLOAD_ROUTES:
        return settings.max_upload_bytes + FORM_OVERHEAD
    if path.startswith(PROTECTED_PREFIXES) or (method == "POST" and is_console(path)):
        return settings.api_max_body_bytes
    return None


def is_console(path: str) -> bool:
    return path == CONSOLE or path.startswith(CONSOLE + "/")


SignedIn = Callable[[list[tuple[bytes, bytes]], Settings], bool]
"""Whether a request's headers carry a valid console session (``worker.ui.auth.signed_in_headers``)."""


def is_loopback_socket(server: Any) -> bool:
    """Whether the socket a request arrived on is local: a loopback IP, or a unix socket.

    A host that is no IP address is a unix socket's path (uvicorn: ``(path, None)``) or an in-process transport
    (``testserver`` of Starlette's test client): no socket anyone else can reach.
    """
    if server is None:
        return True  # ASGI: "None if unix socket or not known"; uvicorn sets it for every TCP connection
    host = server[0]
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        return True


def bearer_matches(headers: list[tuple[bytes, bytes]], token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, given = value.decode("latin-1").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    return False


async def send_error(send: Send, status: int, body: dict[str, Any], *, challenge: bool = False) -> None:
    """Answer with ``body`` and close the connection: the unread rest of the body is not read."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    if challenge:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def send_redirect(send: Send, location: str) -> None:
    """A 303 to ``location`` (the console's sign-in), closing the connection: the body is not read."""
    headers = [(b"location", location.encode()), (b"content-length", b"0"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


DEMO_API_TOKENS: Final = frozenset({"demo-token-change-me"})
"""Tokens published in this repository (deploy/demo.env): anyone can read them."""
DEMO_PUBLIC_KEYS: Final = frozenset({"JC4feuMQU9IoVOWSLg06ve3mcejFTZuo4uiTWehkOZI="})
"""Webhook keys whose private half is published (the simulator's demo key): with one, anyone can sign a webhook
(a forged ``message.received`` START took a number off the do-not-contact list, issue 19 item 12)."""


class InsecureConfiguration(RuntimeError):
    """The api will not start with these settings."""


def refuse_demo_secrets(settings: Settings) -> None:
    """Raise :class:`InsecureConfiguration` when a published demo secret is configured outside demo mode."""
    if settings.demo_mode:
        return
    problems = []
    if settings.api_token in DEMO_API_TOKENS:
        problems.append("CAMPAIGNS_API_TOKEN is the demo token published in this repository")
    if settings.telnyx_public_key and settings.telnyx_public_key.strip() in DEMO_PUBLIC_KEYS:
        problems.append("CAMPAIGNS_TELNYX_PUBLIC_KEY is the demo key, whose private half is published")
    if problems:
        raise InsecureConfiguration("; ".join(problems) + " (set your own, or CAMPAIGNS_DEMO_MODE=true for the demo)")


class RequestGuard:
    """The ASGI layer in front of FastAPI (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, settings: Callable[[], Settings], console_signed_in: SignedIn | None = None
    ) -> None:
        self.app = app
        self._settings = settings
        self._console_signed_in = console_signed_in

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self._settings()
        path: str = scope["path"]
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if path.startswith(PROTECTED_PREFIXES):
            refusal = self._refuse_operator_request(settings, scope, headers)
            if refusal is not None:
                status, body = refusal
                await send_error(send, status, body, challenge=status == 401)
                return
        elif is_console(path):
            if not settings.api_token and not is_loopback_socket(scope.get("server")):
                log.warning("console request refused: no CAMPAIGNS_API_TOKEN and the socket is not loopback")
                detail = "CAMPAIGNS_API_TOKEN is not set: the console answers only on a loopback address"
                await send_error(send, *error_body(403, "403", "API token not configured", detail))
                return
            if (
                scope["method"] == "POST"
                and path not in CONSOLE_OPEN_FORMS
                and self._console_signed_in is not None
                and not self._console_signed_in(headers, settings)
            ):
                await send_redirect(send, CONSOLE + "/sign-in")  # before a byte of the form (an upload) is read
                return
        elif path == METRICS_PATH and settings.metrics_token and not bearer_matches(headers, settings.metrics_token):
            status, body = error_body(401, AUTH_CODE, "Authentication failed", "a valid metrics token is required")
            await send_error(send, status, body, challenge=True)
            return
        limit = body_limit(settings, scope["method"], path)
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _declared_length(headers)
        if declared is not None and declared > limit:
            await send_error(send, *too_large_body(limit))
            return
        await self._capped(scope, receive, send, limit)

    def _refuse_operator_request(
        self, settings: Settings, scope: Scope, headers: list[tuple[bytes, bytes]]
    ) -> tuple[int, dict[str, Any]] | None:
        token = settings.api_token
        if not token:
            if is_loopback_socket(scope.get("server")):
                return None
            log.warning("operator request refused: no CAMPAIGNS_API_TOKEN and the socket is not loopback")
            detail = "CAMPAIGNS_API_TOKEN is not set: the API answers only on a loopback address"
            return error_body(403, "403", "API token not configured", detail)
        if bearer_matches(headers, token):
            return None
        return error_body(401, AUTH_CODE, "Authentication failed", "a valid bearer token is required")

    async def _capped(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Run the app with a ``receive`` that raises :class:`BodyTooLarge` once the body crosses ``limit``."""
        received = 0
        started = False

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, tracking_send)
        except BodyTooLarge:
            # Raised where no handler of the app saw it (a body read outside a route); answer if we still can.
            if started:
                raise
            await send_error(send, *too_large_body(limit))

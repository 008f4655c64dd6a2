"""How the API is served: uvicorn with the limits a public listener needs (issue 19 item 8, docs/security.md).

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) but has no deadline for a request's
headers: a client that sends half a request line and stops kept its connection (and a slot of
``limit_concurrency``) for as long as it liked, and 2,000 of them stayed open for 40 s. The protocols here add that
deadline: from a connection's first byte, or the first byte after the previous response, to the end of the
request headers; past it the connection is closed. A body that is slow after complete headers is the reverse
proxy's to time out (docs/security.md gives the nginx settings).
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from campaigns.settings import Settings, get_settings

MAX_HEADER_BYTES = 16 * 1024
"""h11's limit on an incomplete request head (line + headers): a larger one is a 431 and a closed connection."""


HEAD_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HeaderDeadline:
    """Closes a connection whose request headers are not complete ``header_timeout`` seconds after they began
    (``CAMPAIGNS_API_HEADER_TIMEOUT_SECS`` unless a subclass says otherwise: read in each process, as uvicorn's
    worker processes get the class by reference)."""

    header_timeout: float | None = None
    _header_timer: asyncio.TimerHandle | None = None

    def _waiting_for_headers(self) -> bool:
        cycle = self._protocol.cycle
        return cycle is None or bool(cycle.response_complete)

    @property
    def _protocol(self) -> Any:
        return self  # the uvicorn protocol this is mixed into (its cycle, loop and transport)

    def _timeout(self) -> float:
        return self.header_timeout if self.header_timeout is not None else get_settings().api_header_timeout_secs

    def _watch_headers(self) -> None:
        if self._waiting_for_headers():
            if self._header_timer is None:
                self._header_timer = self._protocol.loop.call_later(self._timeout(), self._headers_too_slow)
        else:
            self._stop_watching()

    def _stop_watching(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        transport = self._protocol.transport
        if self._waiting_for_headers() and not transport.is_closing():
            transport.close()


class H11WithHeaderDeadline(HeaderDeadline, H11Protocol):
    """h11's ``max_incomplete_event_size`` only limits a head still incomplete in its buffer (a 70 KB head
    arriving in one read passed): the head is counted here as it arrives, and refused with a 431 past the limit."""

    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_headers():
            end = data.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end
            if self._head_bytes > MAX_HEADER_BYTES:
                self.transport.write(HEAD_TOO_LARGE)
                self.transport.close()
                return
            if end >= 0:
                self._head_bytes = 0
        super().data_received(data)
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watching()
        super().connection_lost(exc)


class HeadTooLarge(ValueError):
    """Raised in a parser callback: httptools reports it as a parse error, uvicorn answers 400 and closes."""


class HttpToolsWithHeaderDeadline(HeaderDeadline, HttpToolsProtocol):
    """httptools has no limit on the request head (h11 has ``h11_max_incomplete_event_size``): this adds one."""

    _head_bytes = 0

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEADER_BYTES:
            raise HeadTooLarge(f"request head over {MAX_HEADER_BYTES} bytes")

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_bytes = 0
        super().on_headers_complete()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watching()
        super().connection_lost(exc)


def protocol_class() -> type[asyncio.Protocol]:
    """httptools' parser (faster, uvicorn's default when installed) with the header deadline; h11 otherwise."""
    try:
        import httptools  # noqa: F401  # only whether it is installed
    except ImportError:  # pragma: no cover - installed with uvicorn[standard]
        return H11WithHeaderDeadline
    return HttpToolsWithHeaderDeadline


def server_options(settings: Settings | None = None) -> dict[str, Any]:
    """``uvicorn.run`` / ``uvicorn.Config`` keyword arguments for the API's limits."""
    settings = settings or get_settings()
    return {
        "http": protocol_class(),
        "timeout_keep_alive": settings.api_keepalive_secs,
        "limit_concurrency": settings.api_max_connections,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "backlog": 2048,
    }


def run(app: Any, *, host: str, port: int, workers: int = 1, factory: bool = False) -> None:
    """Serve ``app`` (an ASGI app, or an import string with ``workers > 1``) with :func:`server_options`."""
    uvicorn.run(app, host=host, port=port, workers=workers, factory=factory, log_level="warning", **server_options())

"""What every console page shares: templates and their filters, the signed-in dependency, forms with CSRF."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData

from campaigns.clock import iso
from worker.api.deps import RuntimeDep
from worker.ui.auth import CSRF_FIELD, ConsoleSession, SignInRequired, check_csrf, current_session

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

PAGE_SIZE = 25
PageNumber = Annotated[int, Query(ge=1, le=100_000)]
"""A list page's ``?page=``."""


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def when(value: datetime | str | None, zone: str | None = None) -> str:
    """An instant for people: ``2026-05-07 10:30 EDT`` in ``zone`` (UTC without one); ``—`` for none."""
    if value is None or value == "":
        return "—"
    instant = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    local = instant.astimezone(_zone(zone))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def number(value: object) -> str:
    """``12345`` → ``12,345``; anything else as it is."""
    return f"{value:,}" if isinstance(value, int) else ("—" if value is None else str(value))


def percent(part: int, whole: int) -> int:
    return 0 if whole <= 0 else min(100, round(100 * part / whole))


templates = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters.update(when=when, number=number, iso=iso)
templates.globals.update(percent=percent, quote=quote, CSRF_FIELD=CSRF_FIELD)


PAGE_HEADERS = {
    # Pages show phone numbers: no cache keeps them. No framing (a hidden frame cannot click Cancel for you);
    # scripts and styles only from /ui/static (the progress bars' width is an inline style attribute).
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "Referrer-Policy": "same-origin",
}


def fragment(name: str, **context: Any) -> str:
    """A partial template (``_*.html``) as markup, for the live refresh to swap in; no form in it needs a token."""
    return templates.get_template(name).render(**context)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    session: ConsoleSession | None = getattr(request.state, "console_session", None)
    html = templates.get_template(name).render(
        request=request, csrf=session.csrf if session else "", signed_in=session is not None, **context
    )
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


async def signed_in(request: Request, runtime: RuntimeDep) -> ConsoleSession:
    """The console session, or the sign-in page (``SignInRequired``); checked before any body is read."""
    session = current_session(request, runtime.settings.api_token)
    if session is None:
        raise SignInRequired
    request.state.console_session = session
    return session


SignedIn = Annotated[ConsoleSession, Depends(signed_in)]


async def checked_form(request: Request, session: ConsoleSession) -> FormData:
    """The posted form, once its CSRF token is this session's (``CsrfRejected`` otherwise)."""
    form = await request.form()
    check_csrf(session.csrf, form.get(CSRF_FIELD))
    return form


def text_field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def back_to(url: str, message: str | None = None) -> RedirectResponse:
    """After a form: the page it came from (303, so a reload does not post again), with a notice."""
    if message:
        url = f"{url}{'&' if '?' in url else '?'}notice={quote(message)}"
    return RedirectResponse(url, status_code=303)

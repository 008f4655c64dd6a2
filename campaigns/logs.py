"""Logging: short sentences with context; JSON lines when ``CAMPAIGNS_LOG_JSON`` is set."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from campaigns.settings import get_settings

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("campaigns_log_context", default=None)


@contextmanager
def bind(**fields: object) -> Iterator[None]:
    """Add ``fields`` (ids such as ``attempt_id``) to every log record made inside the block, threads included."""
    outer = _context.get() or {}
    token = _context.set({**outer, **{k: str(v) for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def add_context(**fields: object) -> None:
    """Add ids learned inside a ``bind`` block (e.g. the event and campaign of an attempt) to that block."""
    current = _context.get()
    if current is not None:
        current.update({k: str(v) for k, v in fields.items() if v is not None})


def event_fields(event: Any) -> dict[str, str]:
    """``event_id`` and ``campaign_id`` of a scheduled event, for ``extra=``."""
    fields = {"event_id": str(event.id)}
    if getattr(event, "campaign_id", None) is not None:
        fields["campaign_id"] = str(event.campaign_id)
    return fields


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record (explicit ``extra=`` values win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


PHONE_NUMBER = re.compile(r"(?<![\w+])\+([1-9])(\d{4,12})(\d{2})(?!\d)")
"""An E.164 number (``+`` and 7 to 15 digits) standing on its own in a log line."""


def redact(text: str) -> str:
    """``text`` with every E.164 number masked to its first digit and its last two (``+1********67``): a line
    never carries a whole phone number, whoever wrote it (an exception that quotes a PostgreSQL ``DETAIL`` such as
    "Key (phone_number)=(+15551234567) already exists", a library's message), while the country and the ending
    still tell numbers apart when reading it."""
    return PHONE_NUMBER.sub(lambda m: f"+{m[1]}{'*' * len(m[2])}{m[3]}", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        return redact(base + ("".join(f" {k}={v}" for k, v in extra.items()) if extra else ""))


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if get_settings().log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO: one line per dial says nothing the attempt's own records do not, and
    # formatting it cost ~8% of a worker's CPU under load (issue 7 profile). Its warnings and errors still show.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))

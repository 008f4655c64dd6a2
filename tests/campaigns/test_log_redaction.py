"""No whole phone number in a log line, whoever wrote it (issue 19: no personal data in logs)."""

from __future__ import annotations

import json
import logging

import pytest

from campaigns import logs


def record(message: str, *args: object, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("campaigns.test", logging.ERROR, __file__, 1, message, args, None)
    if exc is not None:
        made.exc_info = (type(exc), exc, exc.__traceback__)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


@pytest.mark.parametrize("formatter", [logs.TextFormatter("%(message)s"), logs.JsonFormatter()])
def test_numbers_in_messages_extras_and_tracebacks_are_masked(formatter: logging.Formatter) -> None:
    try:
        raise ValueError('duplicate key value violates unique constraint "uq_suppressions_phone_number"\n'
                         "DETAIL:  Key (phone_number)=(+15551234567) already exists.")  # fmt: skip
    except ValueError as exc:
        line = formatter.format(
            record("calling %s from %s", "+447911123456", "+15553456789", exc=exc, to="+33612345678")
        )
    for number in ("15551234567", "447911123456", "15553456789", "33612345678"):
        assert number not in line
    for masked in ("+1********67", "+4*********56", "+1********89", "+3********78"):
        assert masked in line
    if isinstance(formatter, logs.JsonFormatter):
        assert json.loads(line)["to"] == "+3********78"


def test_what_is_not_a_phone_number_is_left_alone() -> None:
    line = logs.TextFormatter("%(message)s").format(
        record(
            "event 0f9c2a44-1b7e-4c52-9a01-2b3c4d5e6f70 at 2026-12-02T04:15:45+00:00: "
            "10000 events, +42 s, id 15551234567"
        )
    )
    assert "0f9c2a44-1b7e-4c52-9a01-2b3c4d5e6f70" in line and "2026-12-02T04:15:45+00:00" in line
    assert "+42 s" in line and "10000 events" in line
    assert "id 15551234567" in line  # no plus: not an E.164 number (and never how the engine writes one)

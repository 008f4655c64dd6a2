"""Due expressions and cell values (pure)."""

from __future__ import annotations

from datetime import date

import pytest

from campaigns import recurring
from tests.campaigns.recurring.support import Z

# --- due expressions (pure) ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value", "zone", "expected"),
    [
        ("appointment_at - 24h", "2026-11-24 10:00", "America/New_York", "2026-11-23T15:00Z"),
        ("appointment_at - 24h", "2026-11-24T10:00:00-08:00", "America/New_York", "2026-11-23T18:00Z"),
        ("appointment_at - 24h", "2026-11-24T18:00:00Z", "America/New_York", "2026-11-23T18:00Z"),
        ("appointment_at -2h", "11/24/2026 2:30 PM", "America/Chicago", "2026-11-24T18:30Z"),
        ("appointment_at + 1d12h", "2026-11-24", "UTC", "2026-11-25T12:00Z"),
        ("due_date 09:00 local", "2026-11-24", "America/Los_Angeles", "2026-11-24T17:00Z"),
        ("due_date 09:00 local", "11/24/2026", "America/New_York", "2026-11-24T14:00Z"),
        ("due_date - 1d 18:30 America/Chicago", "2026-11-24", "America/New_York", "2026-11-24T00:30Z"),
        # 24 hours before a Monday 10:00 appointment across the fall-back change is Sunday 11:00 local.
        ("appointment_at - 24h", "2026-11-02 10:00", "America/New_York", "2026-11-01T15:00Z"),
        # A wall-clock reminder ("the day before at 09:00") stays at 09:00 local across it.
        ("appointment_at - 1d 09:00 local", "2026-11-02 10:00", "America/New_York", "2026-11-01T14:00Z"),
        ("due_date 09:00 local", "2026-03-09", "America/New_York", "2026-03-09T13:00Z"),
        ("due_date 09:00 local", "2026-03-06", "America/New_York", "2026-03-06T14:00Z"),
    ],
)
def test_relative_due_times_land_where_expected(expression: str, value: str, zone: str, expected: str) -> None:
    assert recurring.due_time(recurring.parse_due(expression), value, zone) == Z(expected)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "is required"),
        ("appointment_at - ", "a duration must follow"),
        ("appointment_at - 24x", "not a duration"),
        ("appointment_at 9am", "expected COLUMN"),
        ("due_date 09:00 Mars/Base", "not 'local' or an IANA time zone"),
        ("due_date - 3h 09:00 local", "whole days"),
        ('"unbalanced', "cannot be read"),
    ],
)
def test_bad_due_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        recurring.parse_due(expression)


def test_bad_cell_values_are_explained() -> None:
    rule = recurring.parse_due("appointment_at - 24h")
    with pytest.raises(ValueError, match="is empty"):
        recurring.due_time(rule, "  ", "UTC")
    with pytest.raises(ValueError, match="not a date or date-time"):
        recurring.due_time(rule, "next tuesday", "UTC")
    assert recurring.parse_when("2026-11-24") == date(2026, 11, 24)

"""Parsing Telnyx callbacks (campaigns/telephony/callbacks.py)."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.telephony import hangup_call_status, parse_json_event


def hangup(payload: dict[str, Any], occurred_at: str | None = "2026-05-07T14:41:00.000000Z") -> dict[str, Any]:
    data: dict[str, Any] = {"event_type": "call.hangup", "id": "hangup-1", "payload": payload}
    if occurred_at is not None:
        data["occurred_at"] = occurred_at
    return {"data": data}


def test_a_hangup_spans_its_start_and_end_times() -> None:
    body = hangup(
        {
            "call_control_id": "v3:cc",
            "hangup_cause": "normal_clearing",
            "start_time": "2026-05-07T14:40:00.250000Z",
            "end_time": "2026-05-07T14:40:58.900000Z",
        }
    )
    callback = parse_json_event(body, None)
    assert (callback.elapsed, callback.duration, callback.terminal) == (58, None, True)


def test_a_hangup_without_an_end_time_ends_when_it_occurred() -> None:
    body = hangup({"hangup_cause": "normal_clearing", "start_time": "2026-05-07T14:40:00Z"})
    assert parse_json_event(body, None).elapsed == 60


@pytest.mark.parametrize(
    "times",
    [
        {},  # Telnyx sent neither
        {"start_time": "not a time", "end_time": "2026-05-07T14:40:58Z"},
        {"start_time": "2026-05-07T14:40:00", "end_time": "2026-05-07T14:40:58"},  # no offset: which zone?
        {"start_time": "2026-05-07T14:41:00Z", "end_time": "2026-05-07T14:40:00Z"},  # ends before it starts
    ],
)
def test_a_hangup_without_usable_times_has_no_span(times: dict[str, str]) -> None:
    assert parse_json_event(hangup({"hangup_cause": "user_busy", **times}, occurred_at=None), None).elapsed is None


def test_only_an_answered_call_hangs_up_completed() -> None:
    assert hangup_call_status("originator_cancel", answered=True) == "completed"
    assert hangup_call_status("originator_cancel", answered=False) == "canceled"
    assert hangup_call_status("something new", answered=False) == "failed"

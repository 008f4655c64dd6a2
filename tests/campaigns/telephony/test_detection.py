"""Answering-machine detection as each adapter requests it, and the callbacks that report it
(campaigns/telephony/texml.py, call_control.py, callbacks.py)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import httpx
import pytest
import respx

from campaigns.settings import Settings
from campaigns.telephony import TelnyxCallControl, TelnyxTexml, parse_json_event, parse_texml_status
from campaigns.telephony.callbacks import is_channel_limit
from tests.campaigns.telephony.test_call_control import CALLS, TEXML, request

__all__ = ["client"]
from tests.campaigns.telephony.test_call_control import client


@respx.mock
@pytest.mark.parametrize(("mode", "texml_mode", "dial_mode"), [
    ("detect", "Regular", "detect"),
    ("detect_premium", "PremiumCallScreening", "premium_ios_call_screening_detection"),
])  # fmt: skip
def test_detection_is_requested_as_each_api_defines_it(
    settings: Settings, client: httpx.Client, mode: str, texml_mode: str, dial_mode: str
) -> None:
    texml = respx.post(TEXML).mock(return_value=httpx.Response(200, json={"call_sid": "v3:t", "status": "queued"}))
    calls = respx.post(CALLS).mock(return_value=httpx.Response(200, json={"data": {"call_control_id": "v3:cc"}}))
    asked = replace(request(None), answering_machine_detection=mode)
    TelnyxTexml(settings, client).dispatch(asked)
    TelnyxCallControl(settings, client).dispatch(asked)
    body = json.loads(texml.calls.last.request.content)
    assert (body["MachineDetection"], body["DetectionMode"], body["AsyncAmd"]) == ("DetectMessageEnd", texml_mode, True)
    assert body["AsyncAmdStatusCallback"] == body["StatusCallback"]
    assert json.loads(calls.calls.last.request.content)["answering_machine_detection"] == dial_mode


@respx.mock
def test_disabled_detection_sends_nothing(settings: Settings, client: httpx.Client) -> None:
    texml = respx.post(TEXML).mock(return_value=httpx.Response(200, json={"call_sid": "v3:t", "status": "queued"}))
    calls = respx.post(CALLS).mock(return_value=httpx.Response(200, json={"data": {"call_control_id": "v3:cc"}}))
    TelnyxTexml(settings, client).dispatch(request(None))
    TelnyxCallControl(settings, client).dispatch(request(None))
    assert not {"MachineDetection", "DetectionMode", "AsyncAmd"} & set(json.loads(texml.calls.last.request.content))
    assert "answering_machine_detection" not in json.loads(calls.calls.last.request.content)


@pytest.mark.parametrize(("value", "answered_by"), [
    ("machine_end_beep", "machine"), ("machine_start", "machine"), ("human", "human"), ("fax", "fax"),
    ("not_sure", "unknown"), ("something-new", "unknown"),
])  # fmt: skip
def test_texml_answered_by(value: str, answered_by: str) -> None:
    form = {"CallSid": "v3:x", "CallStatus": "in-progress", "SequenceNumber": "2", "AnsweredBy": value}
    assert parse_texml_status(form, None).answered_by == answered_by
    amd = parse_texml_status({"CallSid": "v3:x", "AnsweredBy": value}, None)  # AsyncAmdStatusCallback
    assert (amd.status, amd.terminal, amd.answered_by) == ("amd", False, answered_by)


@pytest.mark.parametrize(("event_type", "result", "answered_by"), [
    ("call.machine.detection.ended", "machine", "machine"),
    ("call.machine.detection.ended", "not_sure", "unknown"),
    ("call.machine.premium.detection.ended", "human_business", "human"),
    ("call.machine.premium.detection.ended", "fax_detected", "fax"),
    ("call.machine.premium.call_screening.detected", "screening", "screening"),
])  # fmt: skip
def test_call_control_detection_events(event_type: str, result: str, answered_by: str) -> None:
    body = {"data": {"event_type": event_type, "id": str(uuid.uuid4()), "payload": {"result": result}}}
    assert parse_json_event(body, None).answered_by == answered_by


def test_channel_limit_is_told_from_a_recipient_failure() -> None:
    limited = {"CallSid": "v3:x", "CallStatus": "failed", "ErrorCode": "D1", "SipResponseCode": "403"}
    assert parse_texml_status(limited, None).channel_limited
    assert parse_texml_status(
        {**limited, "ErrorCode": "", "ErrorMessage": "User channel limit exceeded"}, None
    ).channel_limited
    assert not parse_texml_status({**limited, "ErrorCode": "D10"}, None).channel_limited
    assert not parse_texml_status({**limited, "CallStatus": "completed"}, None).channel_limited
    assert is_channel_limit("403 D1") and not is_channel_limit("403", None, 403)


def test_conversation_events_carry_the_conversation() -> None:
    ended = {"data": {"event_type": "call.conversation.ended", "id": "e1",
                      "payload": {"call_control_id": "v3:x", "conversation_id": "conv-9"}}}  # fmt: skip
    cb = parse_json_event(ended, None)
    assert (cb.status, cb.provider_id, cb.conversation_id) == ("conversation", "v3:x", "conv-9")

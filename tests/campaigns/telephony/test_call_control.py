"""The Call Control adapter's dial (campaigns/telephony/call_control.py), faked with respx."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import respx

from campaigns.settings import Settings
from campaigns.states import Channel
from campaigns.telephony import DispatchRequest, TelnyxCallControl, TelnyxTexml
from tests.conftest import TEST_TELNYX_BASE_URL

CALLS = f"{TEST_TELNYX_BASE_URL}/calls"
TEXML = f"{TEST_TELNYX_BASE_URL}/texml/ai_calls/texml-app-1"


@pytest.fixture
def client() -> httpx.Client:
    return httpx.Client(base_url=TEST_TELNYX_BASE_URL + "/", timeout=2.0)


def request(sip_region: str | None) -> DispatchRequest:
    return DispatchRequest(
        attempt_id=uuid.uuid4(),
        channel=Channel.PHONE_CALL,
        assistant_id="assistant-1",
        to="+15551234567",
        from_="+15553456789",
        sip_region=sip_region,
    )


@respx.mock
def test_a_dial_carries_the_events_sip_region(settings: Settings, client: httpx.Client) -> None:
    route = respx.post(CALLS).mock(return_value=httpx.Response(200, json={"data": {"call_control_id": "v3:cc"}}))
    result = TelnyxCallControl(settings, client).dispatch(request("Europe"))
    assert result.provider_id == "v3:cc"
    dial = json.loads(route.calls.last.request.content)
    assert dial["sip_region"] == "Europe"
    assert dial["connection_id"] == "cc-conn-1"


@respx.mock
def test_a_dial_without_a_region_leaves_it_to_telnyx(settings: Settings, client: httpx.Client) -> None:
    route = respx.post(CALLS).mock(return_value=httpx.Response(200, json={"data": {"call_control_id": "v3:cc"}}))
    TelnyxCallControl(settings, client).dispatch(request(None))
    assert "sip_region" not in json.loads(route.calls.last.request.content)


@respx.mock
def test_texml_and_call_control_name_the_region_alike(settings: Settings, client: httpx.Client) -> None:
    texml = respx.post(TEXML).mock(return_value=httpx.Response(200, json={"call_sid": "v3:t", "status": "queued"}))
    calls = respx.post(CALLS).mock(return_value=httpx.Response(200, json={"data": {"call_control_id": "v3:cc"}}))
    TelnyxTexml(settings, client).dispatch(request("Middle East"))
    TelnyxCallControl(settings, client).dispatch(request("Middle East"))
    assert json.loads(texml.calls.last.request.content)["SipRegion"] == "Middle East"
    assert json.loads(calls.calls.last.request.content)["sip_region"] == "Middle East"

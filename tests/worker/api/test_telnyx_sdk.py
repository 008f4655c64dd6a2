"""The official ``telnyx`` Python SDK (4.x) against the API served for real by uvicorn.

Drop-in compatibility means a Telnyx client pointed at this server works unchanged: every response parses into
the SDK's typed models, pagination follows ``meta``, and errors surface as the SDK's typed exceptions.
"""

from __future__ import annotations

import inspect
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import get_args
from zoneinfo import ZoneInfo

import httpx
import pytest
import telnyx
import uvicorn
from sqlalchemy import select, update
from telnyx.types.ai.assistants import scheduled_phone_call_event_response as phone_call_event_module
from telnyx.types.ai.assistants.event_status import EventStatus as TelnyxEventStatus
from telnyx.types.ai.assistants.scheduled_event_response import ScheduledEventResponse
from telnyx.types.ai.assistants.scheduled_phone_call_event_response import ScheduledPhoneCallEventResponse
from telnyx.types.ai.assistants.scheduled_sms_event_response import ScheduledSMSEventResponse

from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.models import CallAttempt as CallAttemptRow
from campaigns.models import ScheduledEvent
from campaigns.settings import Settings
from worker.api import create_app
from worker.embedded import free_port
from worker.runtime import Runtime

TOKEN = "sdk-test-token"
ASSISTANT = "assistant-sdk"
END_USER = "+15551234567"
AGENT = "+15553456789"


@dataclass
class Served:
    url: str
    rt: Runtime
    clock: FrozenClock
    sdk: telnyx.Telnyx
    requests: list[httpx.Request]


def wait_until_listening(port: int, thread: threading.Thread, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if not thread.is_alive():
                raise RuntimeError("uvicorn exited before it accepted connections") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not listen on 127.0.0.1:{port} within {timeout}s") from None
            time.sleep(0.02)


@pytest.fixture
def served(runtime: Runtime, settings: Settings, clock: FrozenClock) -> Iterator[Served]:
    rt = Runtime(
        settings=settings.model_copy(update={"api_token": TOKEN}),
        clock=runtime.clock,
        sessions=runtime.sessions,
        providers=runtime.providers,
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-sdk-test", daemon=True)
    thread.start()
    requests: list[httpx.Request] = []
    http = httpx.Client(event_hooks={"request": [requests.append]})
    try:
        wait_until_listening(port, thread)
        url = f"http://127.0.0.1:{port}"
        sdk = telnyx.Telnyx(api_key=TOKEN, base_url=f"{url}/v2", max_retries=0, http_client=http)
        yield Served(url=url, rt=rt, clock=clock, sdk=sdk, requests=requests)
    finally:
        http.close()
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "uvicorn did not stop"


def create_call(s: Served, at: datetime, **overrides: object) -> ScheduledPhoneCallEventResponse:
    event = s.sdk.ai.assistants.scheduled_events.create(
        ASSISTANT,
        scheduled_at_fixed_datetime=at,
        telnyx_agent_target=AGENT,
        telnyx_conversation_channel="phone_call",
        telnyx_end_user_target=str(overrides.pop("to", END_USER)),
        **overrides,  # type: ignore[arg-type]
    )
    assert isinstance(event, ScheduledPhoneCallEventResponse)
    return event


def create_sms(s: Served, at: datetime, text: str = "Reminder: tomorrow 10 AM") -> ScheduledEventResponse:
    """An SMS event; its class is checked in ``test_sms_events_parse_into_the_sdk_sms_model`` only (see there)."""
    return s.sdk.ai.assistants.scheduled_events.create(
        ASSISTANT,
        scheduled_at_fixed_datetime=at,
        telnyx_agent_target=AGENT,
        telnyx_conversation_channel="sms_chat",
        telnyx_end_user_target=END_USER,
        text=text,
    )


def test_create_and_retrieve_a_phone_call(served: Served) -> None:
    at = served.clock.now() + timedelta(hours=2)
    metadata: dict[str, str | int | bool] = {"order": "A-17", "priority": 2, "vip": True}
    created = create_call(
        served,
        at,
        max_retries_client_errors=3,
        retry_interval_secs=600,
        conversation_metadata=metadata,
        dynamic_variables={"name": "Ana", "appointment": "10 AM"},
    )
    assert created.scheduled_event_id
    assert created.assistant_id == ASSISTANT
    assert created.telnyx_conversation_channel == "phone_call"
    assert created.telnyx_end_user_target == END_USER
    assert created.telnyx_agent_target == AGENT
    assert created.scheduled_at_fixed_datetime == at
    assert created.created_at == served.clock.now()
    assert created.status == "pending"
    assert created.max_retries_client_errors == 3
    assert created.retry_interval_secs == 600
    assert created.retry_count == 0
    assert created.retry_attempts == 0
    assert created.call_attempts == []
    assert created.call_status is None and created.call_duration is None and created.dispatched_at is None
    assert created.conversation_metadata == metadata
    assert type(created.conversation_metadata["priority"]) is int
    assert created.conversation_metadata["vip"] is True
    assert created.dynamic_variables == {"name": "Ana", "appointment": "10 AM"}
    assert created.errors == []

    (post,) = [r for r in served.requests if r.method == "POST"]
    assert post.headers["authorization"] == f"Bearer {TOKEN}"
    assert post.url.path == f"/v2/ai/assistants/{ASSISTANT}/scheduled_events"

    assert created.scheduled_event_id is not None
    fetched = served.sdk.ai.assistants.scheduled_events.retrieve(created.scheduled_event_id, assistant_id=ASSISTANT)
    assert isinstance(fetched, ScheduledPhoneCallEventResponse)
    assert fetched == created


def test_create_and_retrieve_an_sms(served: Served) -> None:
    at = served.clock.now() + timedelta(minutes=30)
    created = create_sms(served, at, text="Your table for 2 is booked for 8 PM")
    assert created.telnyx_conversation_channel == "sms_chat"
    assert getattr(created, "text", None) == "Your table for 2 is booked for 8 PM"
    assert created.assistant_id == ASSISTANT
    assert created.telnyx_end_user_target == END_USER
    assert created.status == "pending"
    assert created.scheduled_at_fixed_datetime == at
    assert created.created_at == served.clock.now()
    assert created.retry_count == 0
    assert created.errors == []
    assert created.scheduled_event_id is not None
    fetched = served.sdk.ai.assistants.scheduled_events.retrieve(created.scheduled_event_id, assistant_id=ASSISTANT)
    assert fetched == created


def test_sms_events_parse_into_the_sdk_sms_model(served: Served) -> None:
    at = served.clock.now() + timedelta(minutes=30)
    created = create_sms(served, at)
    assert isinstance(created, ScheduledSMSEventResponse), type(created).__name__
    assert created.scheduled_event_id is not None
    fetched = served.sdk.ai.assistants.scheduled_events.retrieve(created.scheduled_event_id, assistant_id=ASSISTANT)
    assert isinstance(fetched, ScheduledSMSEventResponse)
    listed = list(served.sdk.ai.assistants.scheduled_events.list(ASSISTANT, conversation_channel="sms_chat"))
    assert [type(e) for e in listed] == [ScheduledSMSEventResponse]


def test_idempotency_key_returns_the_same_event(served: Served) -> None:
    at = served.clock.now() + timedelta(hours=1)
    first = create_call(served, at, idempotency_key="order-A-17")
    again = create_call(served, at, idempotency_key="order-A-17")
    assert again == first
    posts = [r for r in served.requests if r.method == "POST"]
    assert [r.headers["idempotency-key"] for r in posts] == ["order-A-17", "order-A-17"]
    listed = served.sdk.ai.assistants.scheduled_events.list(ASSISTANT)
    assert [e.scheduled_event_id for e in listed] == [first.scheduled_event_id]


def test_list_filters_and_pages(served: Served) -> None:
    start = served.clock.now().replace(minute=0) + timedelta(days=1)
    calls = [create_call(served, start + timedelta(hours=h), to=f"+1555000000{h}") for h in range(7)]
    sms = [create_sms(served, start + timedelta(hours=h, minutes=30)) for h in range(3)]
    other = served.sdk.ai.assistants.scheduled_events.create(
        "another-assistant",
        scheduled_at_fixed_datetime=start + timedelta(hours=2),
        telnyx_agent_target=AGENT,
        telnyx_conversation_channel="phone_call",
        telnyx_end_user_target=END_USER,
    )
    assert other.assistant_id == "another-assistant"

    # Calls from hour 1 to hour 5 inclusive (the bounds are inclusive on the scheduled time).
    page = served.sdk.ai.assistants.scheduled_events.list(
        ASSISTANT,
        conversation_channel="phone_call",
        from_date=start + timedelta(hours=1),
        to_date=start + timedelta(hours=5),
        page_size=2,
    )
    assert page.meta is not None
    assert (page.meta.page_number, page.meta.total_pages) == (1, 3)
    assert len(page.data) == 2
    assert all(isinstance(e, ScheduledPhoneCallEventResponse) for e in page.data)

    assert getattr(page.meta, "total_results", None) == 5  # not in the SDK's meta model; kept as an extra

    pages = [page]
    while pages[-1].has_next_page():
        assert len(pages) < 5, "pagination does not end"
        pages.append(pages[-1].get_next_page())
    assert [p.meta.page_number for p in pages if p.meta] == [1, 2, 3]
    assert [len(p.data) for p in pages] == [2, 2, 1]
    seen = [e.scheduled_event_id for p in pages for e in p.data]
    assert seen == [c.scheduled_event_id for c in calls[1:6]]
    for p in pages:
        for e in p.data:
            assert isinstance(e, ScheduledPhoneCallEventResponse)
            assert e.assistant_id == ASSISTANT
            assert start + timedelta(hours=1) <= e.scheduled_at_fixed_datetime <= start + timedelta(hours=5)

    lists = [r for r in served.requests if r.method == "GET"]
    assert [r.url.params.get("page[number]") for r in lists] == [None, "2", "3"]
    for request in lists:  # every page repeats the filters
        assert request.url.params["page[size]"] == "2"
        assert request.url.params["conversation_channel"] == "phone_call"
        assert "from_date" in request.url.params and "to_date" in request.url.params

    # Auto-pagination over the SMS events only, with the string form of the dates.
    auto = served.sdk.ai.assistants.scheduled_events.list(
        ASSISTANT,
        conversation_channel="sms_chat",
        from_date=start.isoformat().replace("+00:00", "Z"),
        to_date=(start + timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        page_size=1,
    )
    found = list(auto)
    assert [e.scheduled_event_id for e in found] == [m.scheduled_event_id for m in sms]
    assert all(e.telnyx_conversation_channel == "sms_chat" and getattr(e, "text", None) for e in found)

    everything = served.sdk.ai.assistants.scheduled_events.list(ASSISTANT, page_size=250)
    assert everything.meta is not None and everything.meta.total_pages == 1
    assert len(everything.data) == len(calls) + len(sms)
    assert [e.scheduled_at_fixed_datetime for e in everything.data] == sorted(
        e.scheduled_at_fixed_datetime for e in everything.data
    )


def test_list_of_nothing_is_one_empty_page(served: Served) -> None:
    page = served.sdk.ai.assistants.scheduled_events.list(ASSISTANT, page_size=5)
    assert page.data == []
    assert not page.has_next_page()
    assert list(page) == []


def test_delete_in_any_state_succeeds_and_the_event_is_gone(served: Served) -> None:
    """Telnyx removes a deleted event; a finished one used to answer 409, which the SDK raised as ConflictError."""
    at = served.clock.now() + timedelta(hours=1)
    pending = create_call(served, at, max_retries_client_errors=1, retry_interval_secs=60)
    completed = create_call(served, at, to="+15550000001")
    failed = create_sms(served, at)
    with unit_of_work(served.rt.sessions) as s:
        for event, status in ((completed, "completed"), (failed, "failed")):
            s.execute(update(ScheduledEvent).where(ScheduledEvent.id == event.scheduled_event_id).values(status=status))
    events = served.sdk.ai.assistants.scheduled_events
    for event in (completed, failed, pending):
        assert event.scheduled_event_id is not None
        assert events.delete(event.scheduled_event_id, assistant_id=ASSISTANT) is None
        with pytest.raises(telnyx.NotFoundError):
            events.retrieve(event.scheduled_event_id, assistant_id=ASSISTANT)
        with pytest.raises(telnyx.NotFoundError):
            events.delete(event.scheduled_event_id, assistant_id=ASSISTANT)
    assert list(events.list(ASSISTANT)) == []
    deletes = [r for r in served.requests if r.method == "DELETE"]
    assert deletes[0].url.path.endswith(f"/scheduled_events/{completed.scheduled_event_id}")
    with served.rt.sessions() as s:  # kept for the campaign's export and the metrics
        rows = {str(e.id): e.status for e in s.scalars(select(ScheduledEvent))}
    assert rows == {
        pending.scheduled_event_id: "canceled",
        completed.scheduled_event_id: "completed",
        failed.scheduled_event_id: "failed",
    }


def _upload_and_cancel(served: Served, channel: str, phones: list[str]) -> str:
    settings = {"name": channel, "assistant_id": ASSISTANT, "telnyx_agent_target": AGENT, "ruleset": "none",
                "telnyx_conversation_channel": channel}  # fmt: skip
    if channel == "sms_chat":
        settings["text"] = "Your appointment is tomorrow"
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        created = http.post(
            "/v1/campaigns",
            files={"file": ("l.csv", ("phone\n" + "\n".join(phones) + "\n").encode(), "text/csv")},
            data={"campaign": json.dumps(settings)},
        )
        assert created.status_code == 201, created.text
        campaign_id = str(created.json()["id"])
        assert http.post(f"/v1/campaigns/{campaign_id}/cancel").json()["counts"]["canceled"] == len(phones)
    return campaign_id


def test_a_canceled_campaign_event_parses_as_its_channels_type_with_a_telnyx_status(served: Served) -> None:
    """Telnyx's status enum has four values: ``canceled`` broke the SDK's strict parsing, and a canceled SMS event
    came back as a phone-call event. On /v2 it is ``failed``, with an ``errors`` entry saying why."""
    telnyx_statuses = set(get_args(TelnyxEventStatus))
    sms_campaign = _upload_and_cancel(served, "sms_chat", ["+12125550101"])
    call_campaign = _upload_and_cancel(served, "phone_call", ["+12125550102"])
    events = served.sdk.ai.assistants.scheduled_events
    listed = list(events.list(ASSISTANT))
    assert [type(e) for e in sorted(listed, key=lambda e: e.telnyx_conversation_channel)] == [
        ScheduledPhoneCallEventResponse,
        ScheduledSMSEventResponse,
    ]
    for event in listed:
        assert event.status in telnyx_statuses and event.status == "failed"
        assert event.scheduled_event_id is not None
        fetched = events.retrieve(event.scheduled_event_id, assistant_id=ASSISTANT)
        assert type(fetched) is type(event) and fetched == event
        campaign = sms_campaign if event.telnyx_conversation_channel == "sms_chat" else call_campaign
        assert event.errors is not None and event.errors[-1] == f"canceled with campaign {campaign} by an operator"
    failed = list(events.list(ASSISTANT, extra_query={"status": "failed"}))
    assert sorted(e.scheduled_event_id or "" for e in failed) == sorted(e.scheduled_event_id or "" for e in listed)


def test_attempt_call_statuses_are_telnyxs_and_the_engines_word_is_the_outcome(served: Served) -> None:
    """``queued``, ``initiated`` and ``unknown`` are not Telnyx call statuses: a running attempt reads ``ringing``,
    one nobody reported on ``failed``; the engine's classification of a finished attempt is its ``outcome``."""
    documented = re.search(r'call_status: str\s+"""Values: ([^"]+)"""', inspect.getsource(phone_call_event_module))
    assert documented is not None, "the SDK's CallAttempt no longer documents its call_status values"
    telnyx_call_statuses = {v.strip() for v in documented.group(1).split(",")}
    assert telnyx_call_statuses == {"busy", "canceled", "no-answer", "ringing", "completed", "failed", "in-progress"}
    call = create_call(served, served.clock.now() + timedelta(hours=1), max_retries_client_errors=3,
                       retry_interval_secs=60)  # fmt: skip
    assert call.scheduled_event_id is not None
    engine = [("unknown", None), ("busy", None), (None, "initiated"), (None, None)]  # (call_status, last_status)
    with unit_of_work(served.rt.sessions) as s:
        for number, (call_status, last_status) in enumerate(engine, start=1):
            s.add(
                CallAttemptRow(
                    event_id=uuid.UUID(call.scheduled_event_id),
                    attempt_number=number,
                    provider="texml",
                    state="finished" if call_status else "sent",
                    claimed_at=served.clock.now(),
                    attempted_at=served.clock.now(),
                    call_status=call_status,
                    last_status=last_status,
                    outcome=call_status,
                )
            )
    fetched = served.sdk.ai.assistants.scheduled_events.retrieve(call.scheduled_event_id, assistant_id=ASSISTANT)
    assert isinstance(fetched, ScheduledPhoneCallEventResponse)
    assert fetched.call_attempts is not None
    attempts = [(a.call_status, getattr(a, "outcome", None)) for a in fetched.call_attempts]
    assert attempts == [("failed", "unknown"), ("busy", "busy"), ("ringing", None), ("ringing", None)]
    assert all(status in telnyx_call_statuses for status, _ in attempts)


def test_unknown_event_is_not_found(served: Served) -> None:
    events = served.sdk.ai.assistants.scheduled_events
    call = create_call(served, served.clock.now() + timedelta(hours=1))
    assert call.scheduled_event_id is not None
    with pytest.raises(telnyx.NotFoundError) as missing:
        events.retrieve("0b7a3c53-2d2a-4b86-9d1d-8d6f3b5f3f00", assistant_id=ASSISTANT)
    assert missing.value.status_code == 404
    with pytest.raises(telnyx.NotFoundError):  # another assistant's event is not visible
        events.retrieve(call.scheduled_event_id, assistant_id="someone-else")
    with pytest.raises(telnyx.NotFoundError):
        events.delete(call.scheduled_event_id, assistant_id="someone-else")


def test_validation_errors_surface_as_bad_request(served: Served) -> None:
    at = served.clock.now() + timedelta(hours=1)
    with pytest.raises(telnyx.BadRequestError) as retries_without_interval:
        create_call(served, at, max_retries_client_errors=2)
    error = retries_without_interval.value
    assert error.status_code == 400
    assert isinstance(error.body, dict)
    pointers = [e["source"]["pointer"] for e in error.body["errors"]]
    assert pointers == ["/retry_interval_secs"]

    with pytest.raises(telnyx.BadRequestError) as interval_too_short:
        create_call(served, at, max_retries_client_errors=2, retry_interval_secs=30)
    assert interval_too_short.value.status_code == 400

    with pytest.raises(telnyx.BadRequestError) as in_the_past:
        create_call(served, served.clock.now() - timedelta(minutes=1))
    assert in_the_past.value.status_code == 400

    with pytest.raises(telnyx.BadRequestError) as sms_without_text:
        served.sdk.ai.assistants.scheduled_events.create(
            ASSISTANT,
            scheduled_at_fixed_datetime=at,
            telnyx_agent_target=AGENT,
            telnyx_conversation_channel="sms_chat",
            telnyx_end_user_target=END_USER,
        )
    assert sms_without_text.value.status_code == 400

    with pytest.raises(telnyx.BadRequestError) as bad_page:
        served.sdk.ai.assistants.scheduled_events.list(ASSISTANT, page_size=0)
    assert bad_page.value.status_code == 400

    assert list(served.sdk.ai.assistants.scheduled_events.list(ASSISTANT)) == []


def test_wrong_token_is_an_authentication_error(served: Served) -> None:
    intruder = telnyx.Telnyx(api_key="not-the-token", base_url=f"{served.url}/v2", max_retries=0)
    try:
        with pytest.raises(telnyx.AuthenticationError) as denied:
            intruder.ai.assistants.scheduled_events.list(ASSISTANT)
        assert denied.value.status_code == 401
    finally:
        intruder.close()


def test_datetimes_round_trip_in_utc(served: Served) -> None:
    local = datetime(2026, 5, 8, 9, 15, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    created = create_call(served, local)
    assert created.scheduled_at_fixed_datetime == local
    assert created.scheduled_at_fixed_datetime.utcoffset() == timedelta(0)

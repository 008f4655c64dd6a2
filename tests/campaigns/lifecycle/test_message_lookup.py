"""An SMS whose outcome is unknown is looked up in the account's message detail records (issue 21): the record
of an outbound message from the agent number to the target, created after the request, is this attempt's."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from campaigns.clock import FrozenClock, iso
from campaigns.settings import Settings
from campaigns.states import Channel
from campaigns.telephony import DispatchRequest, ProviderError, TelnyxMessaging
from campaigns.telephony.errors import OutcomeUnknown
from tests.campaigns.lifecycle.harness import MESSAGES, died_while_sending, load, reconcile_as_beat
from tests.conftest import TEST_TELNYX_BASE_URL
from tests.factories import sms_body
from worker.runtime import Runtime

SEARCH = f"{TEST_TELNYX_BASE_URL}/detail_records"
AGENT, TARGET = "+15553456789", "+15551234567"


@pytest.fixture
def messaging(settings: Settings) -> TelnyxMessaging:
    return TelnyxMessaging(settings, httpx.Client(base_url=settings.telnyx_base_url + "/", timeout=2.0))


def sms_request() -> DispatchRequest:
    return DispatchRequest(uuid.uuid4(), Channel.SMS_CHAT, "assistant-1", to=TARGET, from_=AGENT, text="Reminder")


def record(uuid_: str, at: datetime, *, cli: str = AGENT, cld: str = TARGET, **fields: Any) -> dict[str, Any]:
    """A message detail record as the search writes it (telnyx/types/detail_record_list_response.py)."""
    return {"record_type": "message_detail_record", "uuid": uuid_, "cli": cli, "cld": cld, "direction": "outbound",
            "created_at": iso(at), "status": "delivered", "message_type": "SMS", **fields}  # fmt: skip


def found(*records: dict[str, Any], total_pages: int = 1) -> httpx.Response:
    meta = {"page_number": 1, "page_size": 50, "total_pages": total_pages, "total_results": len(records)}
    return httpx.Response(200, json={"data": list(records), "meta": meta})


@respx.mock
def test_the_record_of_a_message_sent_after_the_request_is_found(
    messaging: TelnyxMessaging, clock: FrozenClock
) -> None:
    since = clock.now()
    route = respx.get(SEARCH).mock(
        return_value=found(record("later", since + timedelta(seconds=9)), record("first", since + timedelta(seconds=1)))
    )
    assert messaging.lists_calls
    assert messaging.find_call(sms_request(), since=since, exclude=()) == "first"
    query = route.calls.last.request.url.params
    assert dict(query) == {
        "filter[record_type]": "messaging",
        "filter[direction]": "outbound",
        "filter[cli]": AGENT,
        "filter[cld]": TARGET,
        "filter[created_at][gte]": (since - timedelta(days=1)).date().isoformat(),
        "sort": "created_at",
        "page[number]": "1",
        "page[size]": "50",
    }


@respx.mock
def test_records_before_the_request_or_of_other_messages_are_not_the_attempts(
    messaging: TelnyxMessaging, clock: FrozenClock
) -> None:
    since = clock.now()
    respx.get(SEARCH).mock(
        return_value=found(
            record("yesterday", since - timedelta(hours=20)),
            record("skewed-too-far", since - timedelta(seconds=6)),
            record("inbound", since, direction="inbound"),
            record("to-another", since, cld="+15550000000"),
            record("a-call", since, record_type="cdr"),
            record("no-date", since, created_at=None),
        )
    )
    assert messaging.find_call(sms_request(), since=since, exclude=()) is None


@respx.mock
def test_a_record_a_few_seconds_before_since_is_within_the_clock_skew(
    messaging: TelnyxMessaging, clock: FrozenClock
) -> None:
    respx.get(SEARCH).mock(return_value=found(record("skewed", clock.now() - timedelta(seconds=4))))
    assert messaging.find_call(sms_request(), since=clock.now(), exclude=()) == "skewed"


@respx.mock
def test_an_excluded_id_is_not_the_attempts(messaging: TelnyxMessaging, clock: FrozenClock) -> None:
    since = clock.now()
    respx.get(SEARCH).mock(
        return_value=found(record("earlier-attempt", since), record("this-one", since + timedelta(seconds=2)))
    )
    assert messaging.find_call(sms_request(), since=since, exclude={"earlier-attempt"}) == "this-one"
    assert messaging.find_call(sms_request(), since=since, exclude={"earlier-attempt", "this-one"}) is None


@respx.mock
def test_no_record_is_none(messaging: TelnyxMessaging, clock: FrozenClock) -> None:
    respx.get(SEARCH).mock(return_value=found())
    assert messaging.find_call(sms_request(), since=clock.now(), exclude=()) is None


@respx.mock
def test_a_server_error_raises_a_provider_error(messaging: TelnyxMessaging, clock: FrozenClock) -> None:
    respx.get(SEARCH).mock(return_value=httpx.Response(500))
    with pytest.raises(ProviderError):
        messaging.find_call(sms_request(), since=clock.now(), exclude=())


@respx.mock
def test_more_than_a_page_without_a_match_cannot_tell(messaging: TelnyxMessaging, clock: FrozenClock) -> None:
    since = clock.now()
    older = [record(f"old-{n}", since - timedelta(hours=10, minutes=n)) for n in range(50)]
    respx.get(SEARCH).mock(side_effect=[found(*older, total_pages=2), httpx.Response(200, json={"data": older})])
    with pytest.raises(OutcomeUnknown, match="more than 50 messages to"):
        messaging.find_call(sms_request(), since=since, exclude=())
    with pytest.raises(OutcomeUnknown):  # no meta: a full page may be followed by another
        messaging.find_call(sms_request(), since=since, exclude=())


@respx.mock
def test_a_match_on_the_first_of_several_pages_is_the_earliest(messaging: TelnyxMessaging, clock: FrozenClock) -> None:
    """Oldest first: every record before the match is on the page, so the later pages hold none earlier."""
    since = clock.now()
    respx.get(SEARCH).mock(
        return_value=found(record("old", since - timedelta(hours=3)), record("it", since), total_pages=4)
    )
    assert messaging.find_call(sms_request(), since=since, exclude=()) == "it"


@respx.mock
def test_an_answer_without_a_data_list_cannot_tell(messaging: TelnyxMessaging, clock: FrozenClock) -> None:
    respx.get(SEARCH).mock(return_value=httpx.Response(200, json={"errors": [], "meta": {}}))
    with pytest.raises(OutcomeUnknown, match="without a 'data' list"):
        messaging.find_call(sms_request(), since=clock.now(), exclude=())


@respx.mock
def test_an_unknown_sms_whose_record_shows_is_sent_with_its_id(runtime: Runtime, clock: FrozenClock) -> None:
    """Through the reconciler: the worker committed ``sending`` and died; the search shows the message."""
    event_id, _, sent_at = died_while_sending(runtime, clock, sms_body(clock.now()), provider="messaging")
    search = respx.get(SEARCH).mock(return_value=found(record("msg-1", sent_at + timedelta(seconds=1))))
    send = respx.post(MESSAGES).mock(return_value=httpx.Response(200))
    report = reconcile_as_beat(runtime)
    assert (report.found_placed, report.failed_unknown, search.call_count, send.call_count) == (1, 0, 1, 0)
    (attempt,) = load(runtime.sessions, event_id).attempts
    assert (attempt.state, attempt.provider_id) == ("sent", "msg-1")


@respx.mock
def test_an_unknown_sms_the_records_never_show_was_not_sent_and_goes_out_again(
    runtime: Runtime, clock: FrozenClock
) -> None:
    """At the bound, the records (read without error) still show no message and no receipt named the attempt:
    nobody got it. ``not_placed`` on the record, no budget spent, the event is due again and sends once more."""
    event_id, attempt_id, sent_at = died_while_sending(runtime, clock, sms_body(clock.now()), provider="messaging")
    respx.get(SEARCH).mock(return_value=found())
    assert reconcile_as_beat(runtime).looked_up == 1
    clock.set(sent_at + timedelta(seconds=runtime.settings.unknown_lookup_secs))
    report = reconcile_as_beat(runtime)
    assert (report.not_placed, report.failed_unknown) == (1, 0)
    event = load(runtime.sessions, event_id)
    (attempt,) = event.attempts
    assert (event.status, event.free_attempts, event.errors) == ("pending", 1, [])
    assert (attempt.id, attempt.outcome) == (attempt_id, "not_placed")
    assert "message records showed no message from +15553456789 to +15551234567 within 300 s" in (attempt.error or "")

"""The do-not-contact list: numbers, the list itself, file imports, the dispatch check, CSV imports, 40300."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from campaigns import importing, lifecycle, suppression
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.dispatch import dispatch_attempt
from campaigns.models import CallAttempt, Campaign, ImportIssue, ScheduledEvent, Suppression
from campaigns.telephony import parse_json_event
from tests.campaigns.importing.test_loader import new_campaign
from tests.conftest import TEST_TELNYX_BASE_URL
from tests.factories import call_body, make_event, sms_body
from worker.runtime import Runtime

MESSAGES_URL = f"{TEST_TELNYX_BASE_URL}/messages"
TEXML_URL = f"{TEST_TELNYX_BASE_URL}/texml/ai_calls/texml-app-1"
LISTED = "+12125550147"
OTHER = "+12125550199"


# --- numbers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("+12125550147", "US", "+12125550147"),
        (" (212) 555-0147 ", "US", "+12125550147"),
        ("212.555.0147", "US", "+12125550147"),
        ("1 212 555 0147", "US", "+12125550147"),
        ("212,5550147", "US", "+12125550147"),  # the FTC registry's "area code,number" lines
        ("020 7946 0018", "GB", "+442079460018"),
        ("+44 20 7946 0018", "US", "+442079460018"),
        # Well formed but unassigned: the Telnyx-compatible API schedules such numbers, so they can be listed.
        ("+15555550100", "US", "+15555550100"),
    ],
)
def test_normalize_to_e164(value: str, region: str, expected: str) -> None:
    assert suppression.normalize(value, default_region=region) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not-a-number", "not a phone number"),
        ("+1 212 555", "too short"),
        ("+1212555014712345678", "too long"),
        ("+999 1234 5678", "unknown country calling code"),
        ("2125550147", "no default region"),
        ("555-555-0100", "invalid number"),  # national numbers must be valid in the default region
        ("", "missing"),
    ],
)
def test_normalize_rejects_with_the_value_and_the_reason(value: str, reason: str) -> None:
    region = None if reason == "no default region" else "US"
    with pytest.raises(suppression.InvalidPhone) as caught:
        suppression.normalize(value, default_region=region)
    assert reason in str(caught.value) and repr(value) in str(caught.value)


# --- the list -----------------------------------------------------------------------------------------------


def test_add_is_idempotent_and_keeps_the_first_entry(session: Session, clock: FrozenClock) -> None:
    entry, created = suppression.add(session, "(212) 555-0147", now=clock.now(), note="asked on the phone")
    assert created and (entry.phone, entry.reason, entry.note) == (LISTED, "manual", "asked on the phone")
    clock.advance(3600)
    again, created = suppression.add(session, LISTED, now=clock.now(), reason="file")
    assert not created and (again.reason, again.note, again.created_at) == (
        "manual",
        "asked on the phone",
        entry.created_at,
    )
    assert suppression.is_suppressed(session, LISTED) and not suppression.is_suppressed(session, OTHER)
    with pytest.raises(ValueError, match="unknown reason 'nope'"):
        suppression.add(session, OTHER, now=clock.now(), reason="nope")


def test_remove_and_remove_by_reason(session: Session, clock: FrozenClock) -> None:
    suppression.add(session, LISTED, now=clock.now())
    assert not suppression.remove(session, LISTED, reasons=["sms_opt_out"])  # a manual entry stays
    assert suppression.is_suppressed(session, LISTED)
    assert suppression.remove(session, "212-555-0147")
    assert not suppression.remove(session, LISTED)
    assert suppression.get(session, LISTED) is None


def test_list_pages_and_filters(session: Session, clock: FrozenClock) -> None:
    for i in range(5):
        clock.advance(1)
        suppression.add(session, f"+1212555{100 + i:04d}", now=clock.now(), reason="manual" if i % 2 else "file")
    rows, total = suppression.list_entries(session, page_number=1, page_size=2)
    assert total == 5 and [r.phone for r in rows] == ["+12125550104", "+12125550103"]  # newest first
    rows, total = suppression.list_entries(session, page_number=3, page_size=2)
    assert [r.phone for r in rows] == ["+12125550100"]
    rows, total = suppression.list_entries(session, reason="manual")
    assert total == 2 and {r.phone for r in rows} == {"+12125550101", "+12125550103"}
    assert suppression.suppressed_among(session, ["+12125550101", OTHER, "+12125550100"]) == {
        "+12125550101": "manual",
        "+12125550100": "file",
    }


# --- file import --------------------------------------------------------------------------------------------

REGISTRY_FILE = """\
# national registry extract, area code 212
2125550101
(212) 555-0102

212,5550103
+1 212 555 0101
not a number
  # indented comment
+1 212 555
2125550104   # trailing comment
\ufffd\ufffd
+15555550100
"""


def test_import_file_reports_bad_lines_and_imports_the_good(session: Session, clock: FrozenClock) -> None:
    suppression.add(session, "+12125550104", now=clock.now(), note="already here")
    seen: list[int] = []
    report = suppression.import_text(
        session, REGISTRY_FILE, now=clock.now(), note="registry 2026-05", progress=seen.append
    )
    assert report.as_dict() == {
        "lines": 12,
        "numbers": 6,
        "added": 4,
        "already_listed": 1,
        "duplicates_in_file": 1,
        "invalid": 3,
        "errors": [
            {"line": 7, "value": "not a number", "reason": "not a phone number"},
            {"line": 9, "value": "+1 212 555", "reason": "impossible number: too short"},
            {"line": 11, "value": "\ufffd\ufffd", "reason": "not a phone number"},
        ],
    }
    assert seen and seen[-1] == 12
    rows = {phone: reason for phone, reason in session.execute(select(Suppression.phone, Suppression.reason))}
    assert rows == {
        "+12125550101": "file",
        "+12125550102": "file",
        "+12125550103": "file",
        "+12125550104": "manual",  # kept as it was
        "+15555550100": "file",
    }
    assert session.get(Suppression, "+12125550101").note == "registry 2026-05"  # type: ignore[union-attr]


def test_import_is_bulk_and_idempotent(session: Session, clock: FrozenClock) -> None:
    """Over one COPY chunk; importing it again adds nothing."""
    count = suppression.IMPORT_CHUNK_LINES + 1234
    data = "".join(f"+1212{2000000 + i:07d}\n" for i in range(count)).encode()
    report = suppression.import_file(session, io.BytesIO(data), now=clock.now())
    assert (report.lines, report.numbers, report.added, report.invalid) == (count, count, count, 0)
    again = suppression.import_file(session, io.BytesIO(data), now=clock.now())
    assert (again.added, again.already_listed) == (0, count)
    assert session.scalar(select(func.count()).select_from(Suppression)) == count


def test_empty_file(session: Session, clock: FrozenClock) -> None:
    report = suppression.import_text(session, "", now=clock.now())
    assert (report.lines, report.numbers, report.added) == (0, 0, 0)


# --- SMS keywords -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "verdict"),
    [
        ("STOP", "opt_out"),
        ("stop", "opt_out"),
        ("  Stop.  ", "opt_out"),
        ("STOPALL", "opt_out"),
        ("stop all", "opt_out"),
        ("Unsubscribe", "opt_out"),
        ("CANCEL", "opt_out"),
        ("end", "opt_out"),
        ("Quit!", "opt_out"),
        ("REVOKE", "opt_out"),
        ("opt out", "opt_out"),
        ("Opt-Out", "opt_out"),
        ("Stop texting me please", "opt_out"),
        ("I want to opt out of these messages", "opt_out"),
        ("please unsubscribe me", "opt_out"),
        ("I revoke my consent", "opt_out"),
        ("START", "opt_in"),
        ("unstop", "opt_in"),
        ("Cancel my appointment", None),  # CANCEL / END / QUIT only count as the whole message
        ("The end of the week works", None),
        ("I'll be there, don't stop reminding me", None),
        ("Start time?", None),
        ("Thanks!", None),
        ("", None),
    ],
)
def test_classify_message(body: str, verdict: str | None) -> None:
    assert suppression.classify_message(body) == verdict


def test_inbound_opt_out_and_opt_in(session: Session, clock: FrozenClock) -> None:
    now = clock.now()
    assert suppression.apply_inbound_message(session, LISTED, "Thanks", now=now) == "inbound: no keyword"
    assert suppression.apply_inbound_message(session, LISTED, "STOP", now=now) == "opt-out: added"
    entry = session.get(Suppression, LISTED)
    assert entry is not None and (entry.reason, entry.note) == ("sms_opt_out", "SMS reply: STOP")
    assert suppression.apply_inbound_message(session, LISTED, "quit", now=now) == "opt-out: already listed"
    assert suppression.apply_inbound_message(session, LISTED, "START", now=now) == "opt-in: removed"
    assert not suppression.is_suppressed(session, LISTED)
    # An opt-in never lifts an operator's entry.
    suppression.add(session, OTHER, now=now)
    assert suppression.apply_inbound_message(session, OTHER, "UNSTOP", now=now) == "opt-in: nothing to remove"
    assert suppression.is_suppressed(session, OTHER)
    assert (
        suppression.apply_inbound_message(session, "12345", "STOP", now=now) == "inbound: sender is not a phone number"
    )


def test_message_webhooks_parse_sender_text_and_error_codes() -> None:
    inbound = parse_json_event(
        {
            "data": {
                "event_type": "message.received",
                "id": "evt-1",
                "payload": {
                    "id": "msg-in",
                    "direction": "inbound",
                    "from": {"phone_number": LISTED, "carrier": "T-MOBILE USA, INC."},
                    "to": [{"phone_number": "+15553456789", "status": "delivered"}],
                    "text": "STOP",
                },
            }
        },
        None,
    )
    assert (inbound.counterpart, inbound.text, inbound.status, inbound.provider_id) == (LISTED, "STOP", None, None)
    finalized = parse_json_event(
        {
            "data": {
                "event_type": "message.finalized",
                "id": "evt-2",
                "payload": {
                    "id": "msg-out",
                    "to": [{"phone_number": LISTED, "status": "sending_failed"}],
                    "errors": [{"code": "40300", "title": "Blocked due to STOP message"}],
                },
            }
        },
        None,
    )
    assert (finalized.counterpart, finalized.error_codes, finalized.status) == (LISTED, ("40300",), "sending_failed")


# --- the dispatch check -------------------------------------------------------------------------------------


def claim(sessions: sessionmaker[Session], runtime: Runtime, clock: FrozenClock) -> list[lifecycle.Claimed]:
    with unit_of_work(sessions) as s:
        return lifecycle.claim_due_events(
            s, now=clock.now(), limit=200, lease=timedelta(minutes=2), providers=runtime.providers
        )


def dispatch_all(claimed: list[lifecycle.Claimed], runtime: Runtime, clock: FrozenClock) -> list[str]:
    return [
        dispatch_attempt(
            runtime.sessions, c.attempt_id, providers=runtime.providers, clock=clock, settings=runtime.settings
        )
        for c in claimed
    ]


def message_ok(request: httpx.Request) -> httpx.Response:
    to = json.loads(request.content)["to"]
    return httpx.Response(
        200, json={"data": {"id": str(uuid.uuid4()), "to": [{"phone_number": to, "status": "queued"}]}}
    )


@pytest.fixture
def provider() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        router.post(MESSAGES_URL).mock(side_effect=message_ok)
        router.post(TEXML_URL).mock(
            return_value=httpx.Response(200, json={"status": "queued", "call_sid": f"v3:{uuid.uuid4().hex}"})
        )
        yield router


def sent_to(router: respx.MockRouter) -> list[str]:
    return [
        json.loads(call.request.content).get("to") or json.loads(call.request.content)["To"] for call in router.calls
    ]


def test_suppressed_events_fail_without_a_provider_request(
    sessions: sessionmaker[Session], runtime: Runtime, clock: FrozenClock, provider: respx.MockRouter
) -> None:
    with unit_of_work(sessions) as s:
        listed_sms = make_event(s, clock.now(), sms_body(clock.now(), telnyx_end_user_target=LISTED)).id
        listed_call = make_event(s, clock.now(), call_body(clock.now(), telnyx_end_user_target=LISTED)).id
        other_sms = make_event(s, clock.now(), sms_body(clock.now(), telnyx_end_user_target=OTHER)).id
        suppression.add(s, LISTED, now=clock.now(), reason="sms_opt_out")
    clock.advance(600)
    claimed = claim(sessions, runtime, clock)
    assert [c.event_id for c in claimed] == [other_sms]
    assert dispatch_all(claimed, runtime, clock) == ["sent"]
    assert sent_to(provider) == [OTHER]  # the listed number never reached the provider
    with sessions() as s:
        for event_id in (listed_sms, listed_call):
            found = s.get(ScheduledEvent, event_id)
            assert found is not None and found.status == "failed"
            assert found.errors == [
                f"not dispatched: {LISTED} is on the do-not-contact list (sms_opt_out: the recipient opted out by SMS)"
            ]
            assert found.attempts == []
        assert s.scalar(select(func.count()).select_from(CallAttempt)) == 1


def test_a_number_listed_after_scheduling_is_still_never_contacted(
    sessions: sessionmaker[Session], runtime: Runtime, clock: FrozenClock, provider: respx.MockRouter
) -> None:
    with unit_of_work(sessions) as s:
        event_id = make_event(s, clock.now(), call_body(clock.now(), telnyx_end_user_target=LISTED)).id
    clock.advance(60)
    with unit_of_work(sessions) as s:
        suppression.add(s, LISTED, now=clock.now())
    clock.advance(600)
    assert claim(sessions, runtime, clock) == []
    assert not provider.calls
    with sessions() as s:
        found = s.get(ScheduledEvent, event_id)
        assert found is not None and found.status == "failed" and "do-not-contact" in found.errors[0]


def test_the_check_looks_the_whole_batch_up_in_one_query(
    sessions: sessionmaker[Session], runtime: Runtime, clock: FrozenClock, engine: Engine
) -> None:
    with unit_of_work(sessions) as s:
        for i in range(120):
            make_event(s, clock.now(), sms_body(clock.now(), telnyx_end_user_target=f"+1212{3000000 + i:07d}"))
        for i in range(0, 120, 7):
            suppression.add(s, f"+1212{3000000 + i:07d}", now=clock.now())
    clock.advance(600)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "suppressions" in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        claimed = claim(sessions, runtime, clock)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(claimed) == 120 - len(range(0, 120, 7))
    assert len(statements) == 1, statements


# --- provider error 40300 -----------------------------------------------------------------------------------


def test_provider_opt_out_error_lists_the_number_and_stops_later_messages(
    sessions: sessionmaker[Session], runtime: Runtime, clock: FrozenClock, provider: respx.MockRouter
) -> None:
    blocked = {
        "errors": [
            {
                "code": "40300",
                "title": "Blocked due to STOP message",
                "detail": f"Messages cannot be sent from '+15553456789' to '{LISTED}' due to an existing block rule.",
            }
        ]
    }
    provider.post(MESSAGES_URL).mock(return_value=httpx.Response(400, json=blocked))
    with unit_of_work(sessions) as s:
        first = make_event(s, clock.now(), sms_body(clock.now(), telnyx_end_user_target=LISTED)).id
        later = make_event(
            s,
            clock.now(),
            sms_body(
                clock.now(),
                telnyx_end_user_target=LISTED,
                scheduled_at_fixed_datetime=(clock.now() + timedelta(hours=2)).isoformat(),
            ),
        ).id
    clock.advance(600)
    assert dispatch_all(claim(sessions, runtime, clock), runtime, clock) == ["rejected"]
    with sessions() as s:
        entry = s.get(Suppression, LISTED)
        assert entry is not None and entry.reason == "provider_block" and "40300" in (entry.note or "")
        failed = s.get(ScheduledEvent, first)
        assert failed is not None and failed.status == "failed" and "code 40300" in failed.errors[-1]
        assert failed.retry_count == 0
    requests = len(provider.calls)
    clock.advance(10800)
    assert claim(sessions, runtime, clock) == []
    assert len(provider.calls) == requests
    with sessions() as s:
        stopped = s.get(ScheduledEvent, later)
        assert stopped is not None and stopped.status == "failed" and "provider_block" in stopped.errors[0]


# --- CSV imports --------------------------------------------------------------------------------------------


def test_csv_import_skips_and_reports_listed_numbers(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    with unit_of_work(sessions) as s:
        suppression.add(s, LISTED, now=clock.now(), reason="sms_opt_out")
        suppression.add(s, "+12125550150", now=clock.now())
    campaign_id = new_campaign(sessions, clock)
    data = b"phone,name\n+12125550101,Ana\n(212) 555-0147,Bo\n+12125550101,Ana again\n2125550150,Cy\nnope,Dee\n"
    with unit_of_work(sessions) as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None
        report = importing.load_call_list(s, campaign, io.BytesIO(data), now=clock.now())
        importing.apply_report(campaign, report, now=clock.now())
    assert (report.rows_total, report.rows_accepted, report.rows_rejected, report.rows_duplicate) == (5, 1, 1, 1)
    assert report.rows_suppressed == 2
    assert [(i.row_number, i.value, i.reason, i.kind) for i in report.issues if i.kind == "suppressed"] == [
        (3, LISTED, "on the do-not-contact list (sms_opt_out)", "suppressed"),
        (5, "+12125550150", "on the do-not-contact list (manual)", "suppressed"),
    ]
    with sessions() as s:
        targets = s.scalars(
            select(ScheduledEvent.telnyx_end_user_target).where(ScheduledEvent.campaign_id == campaign_id)
        )
        assert list(targets) == ["+12125550101"]
        stored = s.scalars(select(ImportIssue.row_number).where(ImportIssue.kind == "suppressed")).all()
        assert sorted(stored) == [3, 5]
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None and campaign.rows_suppressed == 2


def test_dry_run_reports_listed_numbers_too(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    with unit_of_work(sessions) as s:
        suppression.add(s, LISTED, now=clock.now())
    campaign_id = new_campaign(sessions, clock)
    with unit_of_work(sessions) as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None
        report = importing.load_call_list(
            s, campaign, io.BytesIO(f"phone\n{LISTED}\n{OTHER}\n".encode()), now=clock.now(), dry_run=True
        )
    assert (report.rows_accepted, report.rows_suppressed) == (1, 1)

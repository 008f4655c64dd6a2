"""One reminder per appointment (``dedupe_key``), late rows (``late_policy``) and the re-upload guard (issue 18
items 5-7), on real PostgreSQL; through the API for the 400s and the 409."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from campaigns import campaign as campaign_service
from campaigns import lifecycle
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.importing import SettingsMismatch, import_new_campaign
from campaigns.importing.guard import DuplicateUpload
from campaigns.models import Campaign, ImportIssue, ScheduledEvent
from worker.api import create_app
from worker.runtime import Runtime

# The clock fixture is 2026-05-07 14:30 UTC (10:30 in New York). Row 3 is Ana's second appointment; row 4 shares
# Ben's phone (a family). Reminders: row 2 and 5 are ahead, rows 3 and 4 are late (09:00 today).
APPOINTMENTS = (
    b"Phone Number,First Name,Appointment Date,Appointment Time,Reminder At\r\n"
    b"(212) 555-0101,Ana,2026-05-08,2:30 PM,2026-05-07T18:00:00Z\r\n"
    b"212.555.0101,Ana,2026-05-07,4:00 PM,2026-05-07T13:00:00Z\r\n"
    b"2125550102,Ben,2026-05-07,9:00 AM,2026-05-07T13:00:00Z\r\n"
    b"2125550102,Cleo,2026-05-09,11:00 AM,2026-05-08T13:00:00Z\r\n"
)
MAPPING = {"Reminder At": "scheduled_at"}
KEY = ["phone", "appointment_date"]
BASE = {"name": "reminders", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none"}


def settings(clock: FrozenClock, **overrides: Any) -> campaign_service.CampaignSettings:
    return campaign_service.validate_settings({**BASE, "mapping": MAPPING, **overrides}, now=clock.now())


def run(sessions: sessionmaker[Session], clock: FrozenClock, *, dry_run: bool = False, data: bytes = APPOINTMENTS,
        **overrides: Any) -> Any:  # fmt: skip
    with unit_of_work(sessions) as s:
        result = import_new_campaign(s, settings(clock, **overrides), io.BytesIO(data), now=clock.now(),
                                     dry_run=dry_run)  # fmt: skip
        assert result.report is not None
        return result.report.as_dict(), (result.campaign.id if result.campaign else None)


def events(sessions: sessionmaker[Session], campaign_id: object) -> list[tuple[int, str]]:
    with sessions() as s:
        rows = s.execute(
            select(ScheduledEvent.source_row, ScheduledEvent.telnyx_end_user_target)
            .where(ScheduledEvent.campaign_id == campaign_id)
            .order_by(ScheduledEvent.source_row)
        )
        return [(int(r), str(p)) for r, p in rows]


# --- dedupe_key -----------------------------------------------------------------------------------------------


def test_by_default_one_reminder_per_phone(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    report, campaign_id = run(sessions, clock)
    assert report["rows_accepted"] == 2 and report["rows_duplicate"] == 2
    assert {(i["row_number"], i["reason"]) for i in report["issues"] if i["kind"] == "duplicate"} == {
        (3, "duplicate of row 2"),
        (5, "duplicate of row 4"),
    }
    assert events(sessions, campaign_id) == [(2, "+12125550101"), (4, "+12125550102")]


def test_a_dedupe_key_gives_both_appointments_of_one_phone_their_reminder(
    sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    report, campaign_id = run(sessions, clock, dedupe_key=KEY)
    assert report["rows_accepted"] == 4 and report["rows_duplicate"] == 0
    assert events(sessions, campaign_id) == [
        (2, "+12125550101"), (3, "+12125550101"), (4, "+12125550102"), (5, "+12125550102"),
    ]  # fmt: skip
    # The same appointment twice is still one reminder.
    twice = APPOINTMENTS + b"212-555-0101,Ana,2026-05-08,2:30 PM,2026-05-07T18:00:00Z\r\n"
    report, _ = run(sessions, clock, dry_run=True, data=twice, dedupe_key=KEY, allow_duplicate_upload=True)
    assert [(i["row_number"], i["column"], i["reason"]) for i in report["issues"] if i["kind"] == "duplicate"] == [
        (6, "dedupe_key", "same dedupe key as row 2")
    ]


def test_a_dedupe_key_naming_a_column_the_file_lacks_is_refused(
    sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    with pytest.raises(SettingsMismatch) as caught:
        run(sessions, clock, dry_run=True, dedupe_key=["phone", "visit_id"])
    assert caught.value.setting == "dedupe_key" and "'visit_id'" in str(caught.value)


def test_two_reminders_of_one_phone_due_together_obey_the_frequency_cap(
    sessions: sessionmaker[Session], clock: FrozenClock, runtime: Runtime
) -> None:
    """Both of Ana's reminders are due now: under a campaign cap of one attempt a day the second is deferred by
    the cap (a day after the first), never dropped; without a cap both are claimed together."""
    data = (
        b"phone,appointment_date\r\n"
        b"+12125550101,2026-05-08\r\n"
        b"+12125550101,2026-05-09\r\n"
    )  # fmt: skip
    for cap, claimed_count in ((1, 1), (None, 2)):
        _report, campaign_id = run(sessions, clock, data=data, dedupe_key=KEY, mapping=None, cap_max_attempts=cap,
                                   allow_duplicate_upload=True)  # fmt: skip
        with unit_of_work(sessions) as s:
            claimed = lifecycle.claim_due_events(
                s, now=clock.now(), limit=50, lease=timedelta(minutes=2), providers=runtime.providers
            )
        with sessions() as s:
            mine = [c for c in claimed if s.get(ScheduledEvent, c.event_id).campaign_id == campaign_id]  # type: ignore[union-attr]
        assert len(mine) == claimed_count
        with sessions() as s:
            mine_pending = (ScheduledEvent.campaign_id == campaign_id, ScheduledEvent.status == "pending")
            waiting = s.scalars(select(ScheduledEvent).where(*mine_pending)).all()
        if cap:
            (deferred,) = waiting
            assert deferred.deferred_reason is not None and deferred.deferred_reason.startswith("frequency cap")
            assert deferred.scheduled_at_fixed_datetime == clock.now() + timedelta(days=1)
        else:
            assert waiting == []


# --- late_policy ----------------------------------------------------------------------------------------------


def test_late_rows_are_sent_now_by_default_and_reported(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    report, campaign_id = run(sessions, clock, dedupe_key=KEY)
    assert report["rows_late_sent"] == 2 and report["late"] == {"policy": "send_now", "sent_rows": [3, 4],
                                                               "skipped_rows": []}  # fmt: skip
    assert len(events(sessions, campaign_id)) == 4


def test_skip_drops_late_rows_and_says_so(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    report, campaign_id = run(sessions, clock, dedupe_key=KEY, late_policy="skip")
    assert report["rows_late_skipped"] == 2 and report["late"]["skipped_rows"] == [3, 4]
    assert report["rows_accepted"] == 2 and report["rows_rejected"] == 2
    assert events(sessions, campaign_id) == [(2, "+12125550101"), (5, "+12125550102")]
    with sessions() as s:
        issues = s.scalars(select(ImportIssue).where(ImportIssue.campaign_id == campaign_id)).all()
    assert {(i.row_number, i.column, i.kind) for i in issues} == {(3, "Reminder At", "rejected"),
                                                                  (4, "Reminder At", "rejected")}  # fmt: skip
    assert all("late_policy skip" in i.reason for i in issues)


def test_send_now_if_before_sends_a_late_row_only_while_the_appointment_is_ahead(
    sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    """Row 3's appointment is at 16:00 in New York (ahead): sent now. Row 4's was at 09:00 (passed): skipped."""
    policy = "send_now_if_before: appointment_date appointment_time"
    report, campaign_id = run(sessions, clock, dedupe_key=KEY, late_policy=policy)
    assert report["late"] == {"policy": policy, "sent_rows": [3], "skipped_rows": [4]}
    assert report["rows_late_sent"] == 1 and report["rows_late_skipped"] == 1
    assert events(sessions, campaign_id) == [(2, "+12125550101"), (3, "+12125550101"), (5, "+12125550102")]
    reasons = {i["row_number"]: (i["kind"], i["reason"]) for i in report["issues"]}
    assert reasons[3][0] == "late_sent" and "sent now" in reasons[3][1]
    assert reasons[4][0] == "rejected" and "2026-05-07T13:00:00Z" in reasons[4][1] and "skipped" in reasons[4][1]
    # With a margin: at least 6 h before the appointment, row 3 (5.5 h ahead) is skipped too.
    report, _ = run(sessions, clock, dry_run=True, dedupe_key=KEY, late_policy=policy + " - 6h",
                    allow_duplicate_upload=True)  # fmt: skip
    assert report["late"]["skipped_rows"] == [3, 4]


@pytest.mark.parametrize(
    ("policy", "field", "words"),
    [
        ("later", "late_policy", "not a late policy"),
        ("send_now_if_before:", "late_policy", "name the column"),
        ("send_now_if_before: a b c", "late_policy", "a date column and a time column"),
        ({"send_now_if_before": 3}, "late_policy", "must be"),
    ],
)
def test_bad_late_policies_are_400s(clock: FrozenClock, policy: object, field: str, words: str) -> None:
    with pytest.raises(Exception) as caught:
        settings(clock, late_policy=policy)
    assert any(e.pointer == f"/campaign/{field}" and words in e.detail for e in caught.value.errors)  # type: ignore[attr-defined]


def test_send_now_if_before_naming_a_missing_column_is_refused(
    sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    with pytest.raises(SettingsMismatch) as caught:
        run(sessions, clock, dry_run=True, late_policy="send_now_if_before: visit_at")
    assert caught.value.setting == "late_policy" and "'visit_at'" in str(caught.value)


# --- the re-upload guard ----------------------------------------------------------------------------------------


def test_a_re_upload_is_flagged_in_the_dry_run_and_refused_unless_allowed(
    sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    _report, first = run(sessions, clock, dedupe_key=KEY)
    report, _ = run(sessions, clock, dry_run=True, dedupe_key=KEY)
    assert report["duplicate_upload"] == {"campaign_id": str(first), "name": "reminders", "match": "content"}
    with pytest.raises(DuplicateUpload) as caught:
        run(sessions, clock, dedupe_key=KEY)
    assert caught.value.campaign_id == first and str(first) in str(caught.value)
    # The same reminders written differently (other number formats, another column order) are caught too.
    reordered = (
        b"Reminder At,Phone Number,First Name,Appointment Date,Appointment Time\r\n"
        b"2026-05-08T13:00:00Z,+12125550102,Cleo,2026-05-09,11:00 AM\r\n"
        b"2026-05-07T18:00:00Z,+12125550101,Ana,2026-05-08,2:30 PM\r\n"
        b"2026-05-07T13:00:00Z,+12125550101,Ana,2026-05-07,4:00 PM\r\n"
        b"2026-05-07T13:00:00Z,+12125550102,Ben,2026-05-07,9:00 AM\r\n"
    )
    report, _ = run(sessions, clock, dry_run=True, data=reordered, dedupe_key=KEY)
    assert report["duplicate_upload"] == {"campaign_id": str(first), "name": "reminders", "match": "reminders"}
    _report, again = run(sessions, clock, dedupe_key=KEY, allow_duplicate_upload=True)
    assert again is not None and len(events(sessions, again)) == 4
    # The same list texted as well as called is no accident.
    report, _ = run(sessions, clock, dry_run=True, dedupe_key=KEY, telnyx_conversation_channel="sms_chat", text="Hi")
    assert report["duplicate_upload"] is None
    # A canceled campaign's file may be uploaded again.
    with unit_of_work(sessions) as s:
        for campaign_id in (first, again):
            found = s.get(Campaign, campaign_id)
            assert found is not None
            campaign_service.cancel(s, found, now=clock.now())
    report, _ = run(sessions, clock, dry_run=True, dedupe_key=KEY)
    assert report["duplicate_upload"] is None


# --- over HTTP ----------------------------------------------------------------------------------------------------


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as c:
        yield c


def post(client: TestClient, *, dry_run: bool = False, **overrides: Any) -> Any:
    return client.post(
        "/v1/campaigns" + ("?dry_run=true" if dry_run else ""),
        files={"file": ("list.csv", APPOINTMENTS, "text/csv")},
        data={"campaign": json.dumps({**BASE, "mapping": MAPPING, **overrides})},
    )


def test_over_http_a_missing_key_column_is_a_400_and_a_re_upload_a_409(client: TestClient) -> None:
    missing = post(client, dry_run=True, dedupe_key=["phone", "visit_id"])
    assert missing.status_code == 400
    (error,) = missing.json()["errors"]
    assert error["source"]["pointer"] == "/campaign/dedupe_key" and "'visit_id'" in error["detail"]
    created = post(client, dedupe_key=KEY, late_policy="send_now_if_before: appointment_date appointment_time")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["dedupe_key"] == KEY and body["allow_duplicate_upload"] is False
    assert body["import"]["rows_late_sent"] == 1 and body["import"]["rows_late_skipped"] == 1
    flagged = post(client, dry_run=True, dedupe_key=KEY)
    assert flagged.status_code == 200 and flagged.json()["import"]["duplicate_upload"]["campaign_id"] == body["id"]
    refused = post(client, dedupe_key=KEY)
    assert refused.status_code == 409 and body["id"] in refused.json()["errors"][0]["detail"]
    assert post(client, dedupe_key=KEY, allow_duplicate_upload=True).status_code == 201

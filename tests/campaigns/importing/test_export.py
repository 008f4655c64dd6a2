"""The exports that update records: ``export.csv`` joins back to the upload on the number as written,
``attempts.csv`` has one row per attempt, dispatch times are each request's own, held rows say why."""

from __future__ import annotations

import csv
import io
import threading
import uuid
from datetime import datetime, timedelta

import respx
from sqlalchemy import null, update

from campaigns import campaign as campaign_service
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.dispatch import dispatch_attempts
from campaigns.importing import export_attempts, export_results, import_new_campaign
from campaigns.importing.export import neutralize
from campaigns.models import Campaign, ScheduledEvent
from campaigns.windows import HOLD_UNTIL
from tests.campaigns.lifecycle.harness import TEXML, claim, texml_callback, texml_ok
from worker.runtime import Runtime

# Headers with capitals and a space, numbers in four national and international formats, a formula in a name.
UPLOAD = (
    "Phone_Number,First Name,Clinic\r\n"
    "(212) 555-0101,Ana,Midtown\r\n"
    '212.555.0102,=HYPERLINK("http://evil"),Midtown\r\n'
    "+1 212 555 0103,Bo,Uptown\r\n"
    "1-212-555-0104,-3,Uptown\r\n"
)


def make_campaign(rt: Runtime, data: str = UPLOAD, **overrides: object) -> uuid.UUID:
    body = {"name": "records", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none",
            "default_region": "US", **overrides}  # fmt: skip
    settings = campaign_service.validate_settings(body, now=rt.clock.now())
    with unit_of_work(rt.sessions) as s:
        result = import_new_campaign(s, settings, io.BytesIO(data.encode()), now=rt.clock.now())
        assert result.campaign is not None
        return result.campaign.id


def export(rt: Runtime, campaign_id: uuid.UUID, produce: object = export_results) -> list[dict[str, str]]:
    with rt.sessions() as s:
        found = s.get(Campaign, campaign_id)
        assert found is not None and callable(produce)
        text = "".join(produce(s, found))
    return list(csv.DictReader(io.StringIO(text)))


def test_the_export_joins_back_to_the_upload_on_the_number_as_written(runtime: Runtime) -> None:
    campaign_id = make_campaign(runtime)
    rows = export(runtime, campaign_id)
    uploaded = list(csv.DictReader(io.StringIO(UPLOAD)))
    # Text that starts like a formula keeps its guard ("+1 212 555 0103" is not E.164): a join strips it.
    by_written = {r["phone_as_written"].removeprefix("'"): r for r in rows}
    assert sorted(by_written) == sorted(u["Phone_Number"] for u in uploaded)  # every row joins, none twice
    assert by_written["+1 212 555 0103"]["phone_as_written"] == "'+1 212 555 0103"
    for original in uploaded:
        exported = by_written[original["Phone_Number"]]
        for header, value in original.items():  # every column of the upload, as written
            assert exported[f"row.{header}"] == neutralize(value)
    assert [r["phone"] for r in rows] == ["+12125550101", "+12125550102", "+12125550103", "+12125550104"]
    assert by_written["212.555.0102"]["row.First Name"] == '\'=HYPERLINK("http://evil")'  # text: guarded
    assert by_written["1-212-555-0104"]["row.First Name"] == "-3"  # a plain number: left alone
    assert by_written["(212) 555-0101"]["row.Clinic"] == "Midtown"


def test_an_event_without_an_uploaded_row_exports_empty_row_cells(runtime: Runtime) -> None:
    campaign_id = make_campaign(runtime)
    with unit_of_work(runtime.sessions) as s:  # as imported before the row was kept
        s.execute(update(ScheduledEvent).where(ScheduledEvent.source_row == 2).values(source_values=null()))
    rows = export(runtime, campaign_id)
    assert (rows[0]["phone"], rows[0]["phone_as_written"], rows[0]["row.Clinic"]) == ("+12125550101", "", "")
    assert rows[1]["phone_as_written"] == "212.555.0102"


def test_formula_guard_spares_numbers_and_e164_only() -> None:
    assert neutralize("+12125550101") == "+12125550101"
    assert neutralize("-12") == "-12" and neutralize("+3.5") == "+3.5" and neutralize("42") == "42"
    for formula in ("=1+2", "+1 212 555", "-2+3", "@SUM(A1)", "+12125550101;=1", "\t=1", "-", "+"):
        assert neutralize(formula) == "'" + formula


def test_held_rows_show_the_reason_not_the_far_future(runtime: Runtime) -> None:
    campaign_id = make_campaign(runtime)
    reason = "held: the recipient's time zone could not be determined"
    with unit_of_work(runtime.sessions) as s:
        s.execute(
            update(ScheduledEvent)
            .where(ScheduledEvent.source_row == 2)
            .values(scheduled_at_fixed_datetime=HOLD_UNTIL, deferred_until=HOLD_UNTIL, deferred_reason=reason)
        )
    rows = export(runtime, campaign_id)
    assert (rows[0]["deferred_until"], rows[0]["hold_reason"], rows[0]["deferred_reason"]) == ("", reason, reason)
    assert "9999" not in "".join(rows[0].values())
    assert rows[1]["hold_reason"] == ""


@respx.mock
def test_attempts_csv_has_the_no_answer_before_the_answered_call(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    campaign_id = make_campaign(runtime, "phone\n(212) 555-0101\n", max_retries_client_errors=1,
                                retry_interval_secs=600)  # fmt: skip

    def attempt(outcome: str) -> uuid.UUID:
        (attempt_id,) = claim(runtime)
        assert dispatch_attempts(
            runtime.sessions, [attempt_id], providers=runtime.providers, clock=clock, settings=runtime.settings
        ) == ["sent"]
        clock.advance(5)
        texml_callback(runtime, attempt_id, "initiated", 0)
        if outcome == "completed":
            clock.advance(10)
            texml_callback(runtime, attempt_id, "in-progress", 2)
        clock.advance(42)
        texml_callback(runtime, attempt_id, outcome, 3, duration="42" if outcome == "completed" else "0")
        return attempt_id

    first_sent = clock.now()
    attempt("no-answer")
    clock.advance(601)
    second_sent = clock.now()
    attempt("completed")

    rows = export(runtime, campaign_id, export_attempts)
    assert [(r["attempt_number"], r["call_status"], r["outcome"]) for r in rows] == [
        ("1", "no-answer", "no-answer"),
        ("2", "completed", "answered"),
    ]
    assert {r["phone"] for r in rows} == {"+12125550101"} and {r["phone_as_written"] for r in rows} == {
        "(212) 555-0101"
    }
    iso = "%Y-%m-%dT%H:%M:%SZ"
    assert rows[0]["dispatched_at"] == first_sent.strftime(iso) and rows[0]["answered_at"] == ""
    assert rows[1]["dispatched_at"] == second_sent.strftime(iso)
    assert rows[1]["answered_at"] == (second_sent + timedelta(seconds=15)).strftime(iso)
    assert rows[1]["ended_at"] == (second_sent + timedelta(seconds=57)).strftime(iso)

    (result,) = export(runtime, campaign_id)
    assert (result["first_attempt_at"], result["last_attempt_at"]) == (
        rows[0]["dispatched_at"],
        rows[1]["dispatched_at"],
    )
    assert (result["answered_at"], result["ended_at"]) == (rows[1]["answered_at"], rows[1]["ended_at"])
    assert (result["attempt_outcomes"], result["call_duration"], result["status"]) == ("no-answer;answered", "42",
                                                                                      "completed")  # fmt: skip


class TickingClock(FrozenClock):
    """Each reading is a millisecond after the last, as a real clock is between two requests of one batch."""

    def __init__(self, at: datetime) -> None:
        super().__init__(at)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self.advance(0.001)


@respx.mock
def test_each_event_of_a_batch_has_its_own_dispatch_time(runtime: Runtime, clock: FrozenClock) -> None:
    """The issue saw one ``first_attempt_at`` for a whole batch: the time the batch was marked ``sending``."""
    respx.post(TEXML).mock(side_effect=texml_ok)
    campaign_id = make_campaign(runtime)
    attempt_ids = claim(runtime)
    assert len(attempt_ids) == 4
    ticking = TickingClock(clock.now())
    sent = dispatch_attempts(
        runtime.sessions, attempt_ids, providers=runtime.providers, clock=ticking, settings=runtime.settings
    )
    assert sent == ["sent"] * 4
    rows = export(runtime, campaign_id)
    times = [r["first_attempt_at"] for r in rows]
    assert all(times) and len(set(times)) == 4, times
    with runtime.sessions() as s:
        dispatched = [e.dispatched_at for e in s.query(ScheduledEvent).order_by(ScheduledEvent.source_row)]
        assert len(set(dispatched)) == 4

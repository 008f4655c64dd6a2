"""Recurring reminder campaigns on real PostgreSQL with the injected clock: DST-correct ticks, exactly one run per
tick under competition, one catch-up run after downtime, cross-run dedupe, due times and the calling window."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from campaigns import lifecycle, recurring
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.errors import Conflict, ValidationFailed
from campaigns.models import (
    Campaign,
    ImportIssue,
    RecurringDefinition,
    RecurringReminder,
    RecurringRun,
    ScheduledEvent,
    Suppression,
)
from worker.runtime import Runtime

NY = ZoneInfo("America/New_York")
HEADER = "phone,name,appointment_at\n"
TEMPLATE = {"assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none"}


def Z(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def body(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "appointments",
        "cron": "0 7 * * *",
        "timezone": "America/New_York",
        "source": "appointments-*.csv",
        "due": "appointment_at - 24h",
        "campaign": dict(TEMPLATE),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def define(sessions: sessionmaker[Session], directory: Path, now: datetime, **overrides: Any) -> uuid.UUID:
    definition = recurring.validate_definition(
        body(**overrides), now=now, origin="file", base_dir=directory, origin_path=str(directory / "def.toml")
    )
    with unit_of_work(sessions) as s:
        row, status = recurring.upsert_definition(s, definition, now=now)
        assert status == "created"
        return row.id


def runs(sessions: sessionmaker[Session], definition_id: uuid.UUID) -> list[RecurringRun]:
    with sessions() as s:
        return list(
            s.scalars(
                select(RecurringRun)
                .where(RecurringRun.definition_id == definition_id)
                .order_by(RecurringRun.started_at, RecurringRun.tick_at)
            )
        )


def definition_row(sessions: sessionmaker[Session], definition_id: uuid.UUID) -> RecurringDefinition:
    with sessions() as s:
        return s.get_one(RecurringDefinition, definition_id)


def count(sessions: sessionmaker[Session], model: Any, *where: Any) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# --- schedules (pure) -----------------------------------------------------------------------------------------


def test_daily_seven_am_new_york_in_utc_across_both_dst_changes() -> None:
    spring = recurring.upcoming("0 7 * * *", "America/New_York", Z("2026-03-06T00:00Z"), 4)
    assert spring == [Z("2026-03-06T12:00Z"), Z("2026-03-07T12:00Z"), Z("2026-03-08T11:00Z"), Z("2026-03-09T11:00Z")]
    fall = recurring.upcoming("0 7 * * *", "America/New_York", Z("2026-10-30T00:00Z"), 4)
    assert fall == [Z("2026-10-30T11:00Z"), Z("2026-10-31T11:00Z"), Z("2026-11-01T12:00Z"), Z("2026-11-02T12:00Z")]


def test_wall_times_in_the_gap_run_after_it_and_repeated_ones_run_once() -> None:
    # 02:30 does not exist on 2026-03-08 in New York: that day it runs at 03:30 EDT (07:30Z), right after the gap.
    assert recurring.upcoming("30 2 * * *", "America/New_York", Z("2026-03-07T00:00Z"), 3) == [
        Z("2026-03-07T07:30Z"),
        Z("2026-03-08T07:30Z"),
        Z("2026-03-09T06:30Z"),
    ]
    # 01:30 happens twice on 2026-11-01: it runs once, at the first (EDT) one.
    assert recurring.upcoming("30 1 * * *", "America/New_York", Z("2026-10-31T00:00Z"), 3) == [
        Z("2026-10-31T05:30Z"),
        Z("2026-11-01T05:30Z"),
        Z("2026-11-02T06:30Z"),
    ]
    # Asking again from inside the repeated hour does not run it a second time.
    assert recurring.next_fire("30 1 * * *", "America/New_York", Z("2026-11-01T06:15Z")) == Z("2026-11-02T06:30Z")


@settings(max_examples=200, deadline=None)
@given(
    after=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    zone=st.sampled_from(["America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata", "UTC"]),
)
def test_next_fire_is_the_first_matching_wall_time_after(after: datetime, hour: int, minute: int, zone: str) -> None:
    fire = recurring.next_fire(f"{minute} {hour} * * *", zone, after)
    assert after < fire <= after + timedelta(days=2)
    local = fire.astimezone(ZoneInfo(zone))
    wanted = time(hour, minute)
    # Either the wall time matches, or it did not exist that day and this is the instant right after the gap.
    exists = datetime.combine(local.date(), wanted, tzinfo=ZoneInfo(zone)).astimezone(UTC)
    assert local.time() == wanted or exists == fire
    # No fire time was skipped: the day before's occurrence (if after `after`) would have come first.
    earlier = recurring.local_instant(local.date() - timedelta(days=1), wanted, zone)
    assert earlier <= after or earlier >= fire


def test_latest_fire_counts_the_missed_ticks() -> None:
    tick, missed = recurring.latest_fire(
        "0 7 * * *", "America/New_York", Z("2026-11-20T12:00Z"), Z("2026-11-22T13:00Z")
    )
    assert (tick, missed) == (Z("2026-11-22T12:00Z"), 2)
    assert recurring.latest_fire("0 7 * * *", "America/New_York", Z("2026-11-20T12:00Z"), Z("2026-11-20T12:00Z")) == (
        Z("2026-11-20T12:00Z"),
        0,
    )


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


# --- definition files --------------------------------------------------------------------------------------------


def test_a_definition_file_with_every_problem_names_file_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        """
name = "x"
cron = "0 7 * *"
timezone = "America/Nowhere"
due = "appointment_at - 24q"
colour = "blue"

[campaign]
assistant_id = "a1"
telnyx_agent_target = "+15553456789"
max_retries_client_errors = 2
start_at = "2026-01-01T00:00:00Z"
"""
    )
    with pytest.raises(recurring.DefinitionFileError) as caught:
        recurring.load_definition_file(path, now=Z("2026-11-21T00:00Z"))
    message = str(caught.value)
    assert all(line.startswith(f"{path}: ") for line in message.splitlines())
    for fragment in (
        "colour: is not a known field",
        "cron: '0 7 * *' must have 5 fields",
        "timezone: 'America/Nowhere' is not an IANA time zone",
        "source: is required",
        "due: '24q' is not a duration",
        "campaign.start_at: cannot be set",
        "campaign.retry_interval_secs:",
    ):
        assert fragment in message, message


def test_invalid_toml_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\ncron = \n')
    with pytest.raises(recurring.DefinitionFileError, match=r"broken.toml: invalid TOML: .*line 2"):
        recurring.load_definition_file(path, now=Z("2026-11-21T00:00Z"))


def test_the_example_definition_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "recurring" / "appointment-reminders.toml"
    definition = recurring.load_definition_file(example, now=Z("2026-11-21T00:00Z"))
    assert definition.cron == "0 7 * * *" and definition.timezone == "America/New_York"
    assert definition.source == str(example.parent / "appointments-*.csv")
    assert recurring.matching_files(definition.source)  # the sample file is there


def test_the_readme_example_is_a_valid_definition(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Recurring reminders", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme.toml").write_text(block)
    definition = recurring.load_definition_file(tmp_path / "readme.toml", now=Z("2026-11-21T00:00Z"))
    assert (definition.due, definition.campaign["ruleset"]) == ("appointment_at - 24h", "us")


def test_now_needs_an_explicit_dedupe_key_and_relative_defaults_to_phone_and_column(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as caught:
        recurring.validate_definition(body(due="now"), now=Z("2026-11-21T00:00Z"), origin="api", base_dir=tmp_path)
    assert [e.pointer for e in caught.value.errors] == ["/dedupe_key"]
    relative = recurring.validate_definition(body(), now=Z("2026-11-21T00:00Z"), origin="api", base_dir=tmp_path)
    assert relative.dedupe_key == ("phone", "appointment_at")


def test_an_api_source_must_stay_inside_the_recurring_directory(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as caught:
        recurring.validate_definition(
            body(source="../elsewhere/*.csv"), now=Z("2026-11-21T00:00Z"), origin="api", base_dir=tmp_path,
            allowed_root=tmp_path,
        )  # fmt: skip
    assert caught.value.errors[0].pointer == "/source" and "must be inside" in caught.value.errors[0].detail


# --- ticks on the injected clock -------------------------------------------------------------------------------


def step_through(
    sessions: sessionmaker[Session], clock: FrozenClock, until: datetime, step: timedelta
) -> list[recurring.RunResult]:
    results: list[recurring.RunResult] = []
    while clock.now() < until:
        clock.advance(step.total_seconds())
        results += recurring.run_due(sessions, now=clock.now)
    return results


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ("2026-03-06T00:00Z", ["2026-03-06T12:00Z", "2026-03-07T12:00Z", "2026-03-08T11:00Z", "2026-03-09T11:00Z"]),
        ("2026-10-30T00:00Z", ["2026-10-30T11:00Z", "2026-10-31T11:00Z", "2026-11-01T12:00Z", "2026-11-02T12:00Z"]),
    ],
)
def test_the_clock_driven_tick_fires_at_the_right_utc_instants(
    sessions: sessionmaker[Session], tmp_path: Path, start: str, expected: list[str]
) -> None:
    clock = FrozenClock(Z(start))
    definition_id = define(sessions, tmp_path, clock.now())
    step = timedelta(minutes=20)
    results = step_through(sessions, clock, Z(start) + timedelta(days=4), step)
    assert [r.tick_at for r in results] == [Z(e) for e in expected]
    assert all(r.kind == "scheduled" and r.status == "no_new_file" for r in results)
    history = runs(sessions, definition_id)
    assert [r.tick_at for r in history] == [Z(e) for e in expected]
    # Each ran at the first look after its tick, never before it.
    assert all(timedelta(0) <= r.started_at - r.tick_at < step for r in history if r.tick_at is not None)
    assert "nothing matches" in history[0].message


def test_downtime_over_three_ticks_yields_one_catch_up_run(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    clock = FrozenClock(Z("2026-11-20T10:00Z"))
    definition_id = define(sessions, tmp_path, clock.now())
    assert definition_row(sessions, definition_id).next_run_at == Z("2026-11-20T12:00Z")
    (tmp_path / "appointments-1.csv").write_text(HEADER + "+12125550101,Ana,2026-11-25 10:00\n")
    clock.set(Z("2026-11-22T13:30Z"))  # the 20th, 21st and 22nd 07:00 ticks passed while nothing ran
    results = recurring.run_due(sessions, now=clock.now)
    assert [(r.kind, r.tick_at) for r in results] == [("catch_up", Z("2026-11-22T12:00Z"))]
    assert results[0].status == "completed" and len(results[0].campaign_ids) == 1
    history = runs(sessions, definition_id)
    assert len(history) == 1 and history[0].missed_ticks == 2 and "3 ticks" in history[0].message
    assert definition_row(sessions, definition_id).next_run_at == Z("2026-11-23T12:00Z")
    assert recurring.run_due(sessions, now=clock.now) == []  # looking again changes nothing
    clock.set(Z("2026-11-23T12:00Z"))
    assert [r.kind for r in recurring.run_due(sessions, now=clock.now)] == ["scheduled"]
    assert count(sessions, Campaign) == 1  # the second run found no new file


def compete(sessions: sessionmaker[Session], clock: FrozenClock, *, workers: int) -> list[recurring.RunResult]:
    """``run_due`` from several threads at the same instant, each on its own database connections."""
    barrier = threading.Barrier(workers)
    results: list[recurring.RunResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            barrier.wait(10)
            mine = recurring.run_due(sessions, now=clock.now)
        except BaseException as exc:
            errors.append(exc)
            return
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and not any(t.is_alive() for t in threads)
    return results


def test_competing_processes_never_double_run_a_tick(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    clock = FrozenClock(Z("2026-11-23T11:00Z"))
    definition_ids = [define(sessions, tmp_path, clock.now(), name=f"def-{i}") for i in range(3)]
    rows = "".join(f"+1212555{i:04d},P{i},2026-11-25 10:00\n" for i in range(300))
    (tmp_path / "appointments-1.csv").write_text(HEADER + rows)
    for tick in ("2026-11-23T12:00Z", "2026-11-24T12:00Z"):
        clock.set(Z(tick))
        results = compete(sessions, clock, workers=6)
        assert sorted(r.definition for r in results) == ["def-0", "def-1", "def-2"]
    for definition_id in definition_ids:
        history = runs(sessions, definition_id)
        assert [r.tick_at for r in history] == [Z("2026-11-23T12:00Z"), Z("2026-11-24T12:00Z")]
        assert [r.status for r in history] == ["completed", "no_new_file"]
    # Each definition scheduled each reminder once: 3 campaigns of 300 events.
    assert count(sessions, Campaign) == 3 and count(sessions, ScheduledEvent) == 900
    assert count(sessions, RecurringReminder) == 900


COMPETITOR = """
import sys, time
from datetime import datetime
from pathlib import Path
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from campaigns import recurring

engine = create_engine(sys.argv[1])
at = datetime.fromisoformat(sys.argv[2])
go = Path(sys.argv[3])
with engine.connect():
    pass  # connected before the start signal
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
results = recurring.run_due(sessionmaker(bind=engine, expire_on_commit=False), now=lambda: at)
print(sum(len(r.campaign_ids) for r in results), flush=True)
"""


def test_competing_os_processes_never_double_run_a_tick(
    sessions: sessionmaker[Session], tmp_path: Path, database_url: str
) -> None:
    clock = FrozenClock(Z("2026-11-23T11:00Z"))
    definition_id = define(sessions, tmp_path, clock.now())
    rows = "".join(f"+1212555{i:04d},P{i},2026-11-25 10:00\n" for i in range(2000))
    (tmp_path / "appointments-1.csv").write_text(HEADER + rows)
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", COMPETITOR, database_url, "2026-11-23T12:00:00+00:00", str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        go.touch()
        created = [int(process.communicate(timeout=90)[0].strip()) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert sorted(created) == [0, 0, 1]  # one process ran the tick; the others found it taken or done
    assert [r.tick_at for r in runs(sessions, definition_id)] == [Z("2026-11-23T12:00Z")]
    assert count(sessions, Campaign) == 1 and count(sessions, ScheduledEvent) == 2000


def test_a_tick_already_recorded_is_not_run_again(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """The unique (definition, tick) constraint is the second guard behind the row lock."""
    clock = FrozenClock(Z("2026-11-23T11:00Z"))
    definition_id = define(sessions, tmp_path, clock.now())
    (tmp_path / "appointments-1.csv").write_text(HEADER + "+12125550101,Ana,2026-11-25 10:00\n")
    with unit_of_work(sessions) as s:
        s.add(RecurringRun(definition_id=definition_id, kind="scheduled", tick_at=Z("2026-11-23T12:00Z"),
                           missed_ticks=0, started_at=clock.now(), finished_at=clock.now(), status="completed",
                           message="ran elsewhere", files=[]))  # fmt: skip
    clock.set(Z("2026-11-23T12:00Z"))
    assert recurring.run_due(sessions, now=clock.now) == []
    assert count(sessions, Campaign) == 0
    assert definition_row(sessions, definition_id).next_run_at == Z("2026-11-24T12:00Z")


# --- what a run creates -------------------------------------------------------------------------------------------


def test_a_run_schedules_relative_reminders_and_reports_past_and_bad_rows(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    clock = FrozenClock(Z("2026-11-23T11:00Z"))
    definition_id = define(sessions, tmp_path, clock.now(), campaign={**TEMPLATE, "timezone": "America/New_York"})
    (tmp_path / "appointments-2026-11-23.csv").write_text(
        HEADER
        + "+12125550101,Ana,2026-11-24 10:00\n"  # reminder 2026-11-23 10:00 EST
        + "+13105550102,Ben,2026-11-24T15:30:00-08:00\n"  # an explicit offset wins
        + "+12125550103,Cy,2026-11-23 09:00\n"  # reminder yesterday 09:00: already past
        + "+12125550104,Di,soon\n"  # not a date
        + "+12125550101,Ana again,2026-11-24 10:00\n"  # same number twice in one campaign
    )
    clock.set(Z("2026-11-23T12:00Z"))
    (result,) = recurring.run_due(sessions, now=clock.now)
    assert result.status == "completed"
    assert result.counts == {"rows_total": 5, "rows_created": 2, "rows_rejected": 1, "rows_past": 1,
                             "rows_duplicate": 1, "rows_suppressed": 0}  # fmt: skip
    with sessions() as s:
        campaign = s.get_one(Campaign, result.campaign_ids[0])
        assert campaign.recurring_run_id == result.run_id
        assert campaign.name == "appointments 2026-11-23 07:00 EST"
        assert (campaign.ruleset, campaign.timezone, campaign.rows_accepted) == ("none", "America/New_York", 2)
        events = {e.telnyx_end_user_target: e for e in s.scalars(select(ScheduledEvent))}
        assert events["+12125550101"].scheduled_at_fixed_datetime == Z("2026-11-23T15:00Z")
        assert events["+13105550102"].scheduled_at_fixed_datetime == Z("2026-11-23T23:30Z")
        assert events["+12125550101"].dynamic_variables == {"name": "Ana", "appointment_at": "2026-11-24 10:00"}
        issues = {
            i.row_number: (i.column, i.kind, i.reason)
            for i in s.scalars(select(ImportIssue).where(ImportIssue.campaign_id == campaign.id))
        }
        assert issues[4] == ("appointment_at", "rejected",
                             "reminder time 2026-11-22 09:00 EST (appointment_at - 24h) is already past")  # fmt: skip
        assert issues[5][:2] == ("appointment_at", "rejected") and "not a date" in issues[5][2]
        assert issues[6] == ("phone", "duplicate", "duplicate of row 2")
    (run,) = runs(sessions, definition_id)
    assert (run.rows_total, run.rows_created, run.rows_past, run.rows_rejected) == (5, 2, 1, 1)
    assert run.files[0]["path"].endswith("appointments-2026-11-23.csv") and run.files[0]["rows_created"] == 2


def test_the_same_reminder_is_never_scheduled_twice_across_runs(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    clock = FrozenClock(Z("2026-11-23T11:00Z"))
    definition_id = define(sessions, tmp_path, clock.now())
    day1 = "+12125550101,Ana,2026-11-25 10:00\n+12125550102,Ben,2026-11-25 11:00\n"
    (tmp_path / "appointments-1.csv").write_text(HEADER + day1)
    clock.set(Z("2026-11-23T12:00Z"))
    assert recurring.run_due(sessions, now=clock.now)[0].counts["rows_created"] == 2

    # The same file again: nothing new to read, nothing created, and the run says so.
    clock.set(Z("2026-11-24T12:00Z"))
    (again,) = recurring.run_due(sessions, now=clock.now)
    assert again.status == "no_new_file" and "already read" in again.message

    # Forced re-read of the same file: every row is a duplicate of a reminder already scheduled.
    forced = recurring.run_now(sessions, "appointments", now=clock.now(), force=True)
    assert forced.status == "completed"
    assert forced.counts["rows_created"] == 0 and forced.counts["rows_duplicate"] == 2

    # The next export repeats yesterday's appointments and adds one; Ben moved his (a new reminder).
    (tmp_path / "appointments-2.csv").write_text(
        HEADER + day1.replace("2026-11-25 11:00", "2026-11-26 09:00") + "+12125550103,Cy,2026-11-26 10:00\n"
    )
    clock.set(Z("2026-11-25T12:00Z"))
    (third,) = recurring.run_due(sessions, now=clock.now)
    assert (third.counts["rows_created"], third.counts["rows_duplicate"]) == (2, 1)
    with sessions() as s:
        issue = s.scalars(select(ImportIssue).where(ImportIssue.campaign_id == third.campaign_ids[0])).one()
        assert issue.column == "phone,appointment_at" and "already scheduled by an earlier run" in issue.reason
        reminders = s.execute(
            select(ScheduledEvent.telnyx_end_user_target, ScheduledEvent.scheduled_at_fixed_datetime).order_by(
                ScheduledEvent.scheduled_at_fixed_datetime
            )
        ).all()
    assert [tuple(r) for r in reminders] == [
        ("+12125550101", Z("2026-11-24T15:00Z")),
        ("+12125550102", Z("2026-11-24T16:00Z")),
        ("+12125550102", Z("2026-11-25T14:00Z")),
        ("+12125550103", Z("2026-11-25T15:00Z")),
    ]
    assert [r.kind for r in runs(sessions, definition_id)] == ["scheduled", "scheduled", "manual", "scheduled"]


def test_a_reminder_computed_at_three_am_waits_for_the_calling_window(
    sessions: sessionmaker[Session], tmp_path: Path, runtime: Runtime
) -> None:
    clock = FrozenClock(Z("2026-11-23T11:00Z"))
    define(sessions, tmp_path, clock.now(), campaign={**TEMPLATE, "ruleset": "us"})
    (tmp_path / "appointments-1.csv").write_text(
        "phone,name,appointment_at,timezone\n+12125550101,Ana,2026-11-25 03:00,America/New_York\n"
    )
    clock.set(Z("2026-11-23T12:00Z"))
    (result,) = recurring.run_due(sessions, now=clock.now)
    with sessions() as s:
        event = s.scalars(select(ScheduledEvent)).one()
        assert event.scheduled_at_fixed_datetime == Z("2026-11-24T08:00Z")  # 03:00 EST, as computed
        assert (event.ruleset, event.campaign_id) == ("us", result.campaign_ids[0])
    with unit_of_work(sessions) as s:
        claimed = lifecycle.claim_due_events(
            s, now=Z("2026-11-24T08:00Z"), limit=10, lease=timedelta(minutes=2), providers=runtime.providers
        )
    assert claimed == []
    with sessions() as s:
        event = s.scalars(select(ScheduledEvent)).one()
        assert event.status == "pending"
        assert event.scheduled_at_fixed_datetime == Z("2026-11-24T13:00Z")  # deferred to 08:00 EST
        assert event.deferred_until == Z("2026-11-24T13:00Z") and event.deferred_reason


def test_numbers_on_the_do_not_contact_list_are_reported_not_scheduled(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    clock = FrozenClock(Z("2026-11-23T11:00Z"))
    define(sessions, tmp_path, clock.now())
    with unit_of_work(sessions) as s:
        s.add(Suppression(phone="+12125550102", reason="manual", created_at=clock.now()))
    (tmp_path / "appointments-1.csv").write_text(
        HEADER + "+12125550101,Ana,2026-11-25 10:00\n+12125550102,Ben,2026-11-25 10:00\n"
    )
    clock.set(Z("2026-11-23T12:00Z"))
    (result,) = recurring.run_due(sessions, now=clock.now)
    assert (result.counts["rows_created"], result.counts["rows_suppressed"]) == (1, 1)
    # A suppressed row claims no dedupe key: it can be scheduled once the number is allowed again.
    assert count(sessions, RecurringReminder) == 1


def test_each_new_file_becomes_its_own_campaign_and_a_bad_file_is_recorded(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    clock = FrozenClock(Z("2026-11-23T11:00Z"))
    definition_id = define(sessions, tmp_path, clock.now())
    (tmp_path / "appointments-a.csv").write_text(HEADER + "+12125550101,Ana,2026-11-25 10:00\n")
    (tmp_path / "appointments-b.csv").write_text("phone,name\n+12125550102,Ben\n")  # no appointment_at column
    (tmp_path / "appointments-c.csv").write_text(HEADER + "+12125550103,Cy,2026-11-25 10:00\n")
    clock.set(Z("2026-11-23T12:00Z"))
    (result,) = recurring.run_due(sessions, now=clock.now)
    assert result.status == "completed" and len(result.campaign_ids) == 2
    assert "appointments-b.csv: not imported: column 'appointment_at' named in due is not in the file" in result.message
    (run,) = runs(sessions, definition_id)
    assert [Path(f["path"]).name for f in run.files] == [
        "appointments-a.csv",
        "appointments-b.csv",
        "appointments-c.csv",
    ]
    assert run.files[1]["campaign_id"] is None and "appointment_at" in run.files[1]["error"]
    with sessions() as s:
        names = sorted(s.scalars(select(Campaign.name)))
    assert names == ["appointments 2026-11-23 07:00 EST appointments-a.csv",
                     "appointments 2026-11-23 07:00 EST appointments-c.csv"]  # fmt: skip
    # The bad file is not retried every tick; fixing it (new content) makes it new again.
    (tmp_path / "appointments-b.csv").write_text(HEADER + "+12125550102,Ben,2026-11-26 10:00\n")
    clock.set(Z("2026-11-24T12:00Z"))
    (fixed,) = recurring.run_due(sessions, now=clock.now)
    assert fixed.counts["rows_created"] == 1 and len(fixed.campaign_ids) == 1


def test_run_now_while_a_run_holds_the_definition_is_a_conflict(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    clock = FrozenClock(Z("2026-11-23T11:00Z"))
    define(sessions, tmp_path, clock.now())
    with sessions() as holder:
        holder.execute(text("SELECT 1 FROM recurring_definitions FOR UPDATE"))
        with pytest.raises(Conflict, match="in progress"):
            recurring.run_now(sessions, "appointments", now=clock.now())
        holder.rollback()
    assert recurring.run_now(sessions, "appointments", now=clock.now()).status == "no_new_file"


# --- the definition directory ------------------------------------------------------------------------------------


def toml(name: str, cron: str = "0 7 * * *", extra: str = "") -> str:
    return f"""name = "{name}"
cron = "{cron}"
timezone = "America/New_York"
source = "lists/*.csv"
due = "appointment_at - 24h"
{extra}
[campaign]
assistant_id = "a1"
telnyx_agent_target = "+15553456789"
"""


def test_directory_sync_creates_updates_keeps_good_versions_and_disables(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    now = Z("2026-11-23T11:00Z")
    (tmp_path / "a.toml").write_text(toml("alpha"))
    (tmp_path / "b.toml").write_text(toml("beta", cron="30 8 * * 1-5"))
    (tmp_path / "notes.txt").write_text("ignored")
    report = recurring.sync_directory(sessions, tmp_path, now=now)
    assert (sorted(report.created), report.updated, report.errors) == (["alpha", "beta"], [], [])
    with sessions() as s:
        beta = recurring.get_definition(s, "beta")
        assert beta.next_run_at == Z("2026-11-23T13:30Z") and beta.source == str(tmp_path / "lists" / "*.csv")
    assert recurring.sync_directory(sessions, tmp_path, now=now) == recurring.SyncReport()  # unchanged: no-op

    (tmp_path / "a.toml").write_text(toml("alpha", cron="0 6 * * *"))
    (tmp_path / "b.toml").write_text(toml("beta", cron="99 8 * * *"))
    (tmp_path / "c.toml").write_text(toml("alpha"))
    report = recurring.sync_directory(sessions, tmp_path, now=now)
    assert report.updated == ["alpha"]
    assert any("b.toml: cron: '99 8 * * *' is not a valid cron expression" in e for e in report.errors)
    assert any("c.toml: name: 'alpha' is already defined by" in e for e in report.errors)
    with sessions() as s:
        assert recurring.get_definition(s, "alpha").next_run_at == Z("2026-11-24T11:00Z")  # 06:00 EST, rescheduled
        assert recurring.get_definition(s, "beta").cron == "30 8 * * 1-5"  # the last good version keeps running

    (tmp_path / "b.toml").unlink()
    (tmp_path / "c.toml").unlink()
    report = recurring.sync_directory(sessions, tmp_path, now=now)
    assert report.disabled == ["beta"]
    with sessions() as s:
        beta = recurring.get_definition(s, "beta")
        assert (beta.enabled, beta.next_run_at) == (False, None)
    (tmp_path / "b.toml").write_text(toml("beta", cron="30 8 * * 1-5"))
    assert recurring.sync_directory(sessions, tmp_path, now=now).updated == ["beta"]
    with sessions() as s:
        assert recurring.get_definition(s, "beta").next_run_at == Z("2026-11-23T13:30Z")


def mount_configmap(directory: Path, version: int, files: dict[str, str]) -> None:
    """Lay ``files`` out as the kubelet's atomic writer does for a ConfigMap volume, version ``version``.

    Each file is a symlink ``name -> ..data/name``; ``..data`` points to a timestamped directory holding this
    version, swapped by a rename, and the previous version's directory is then deleted.
    """
    versioned = directory / f"..2026_11_23_11_00_00.{version:09d}"
    versioned.mkdir()
    for name, text_ in files.items():
        (versioned / name).write_text(text_)
    (directory / "..data_tmp").symlink_to(versioned.name)
    os.replace(directory / "..data_tmp", directory / "..data")
    for link in directory.glob("*.toml"):
        if link.name not in files:
            link.unlink()
    for name in files:
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")
    for old in directory.glob("..2026_*"):
        if old != versioned:
            shutil.rmtree(old)


def test_a_configmap_update_updates_its_definitions_instead_of_disabling_them(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """A Kubernetes ConfigMap mounted at CAMPAIGNS_RECURRING_DIR (deploy/k8s): every update moves the files'
    symlink targets. A definition is known by its path in the directory, so an update is an update."""
    now = Z("2026-11-23T11:00Z")
    mount_configmap(tmp_path, 1, {"a.toml": toml("alpha")})
    report = recurring.sync_directory(sessions, tmp_path, now=now)
    assert (report.created, report.errors) == (["alpha"], [])
    with sessions() as s:
        alpha = recurring.get_definition(s, "alpha")
        assert alpha.origin_path == str(tmp_path / "a.toml")
        assert alpha.source == str(tmp_path / "lists" / "*.csv")  # not inside the versioned directory

    mount_configmap(tmp_path, 2, {"a.toml": toml("alpha", cron="0 6 * * *")})
    report = recurring.sync_directory(sessions, tmp_path, now=now)
    assert (report.updated, report.disabled, report.errors) == (["alpha"], [], [])
    with sessions() as s:
        alpha = recurring.get_definition(s, "alpha")
        assert (alpha.enabled, alpha.cron, alpha.next_run_at) == (True, "0 6 * * *", Z("2026-11-24T11:00Z"))

    mount_configmap(tmp_path, 3, {"a.toml": toml("alpha", cron="0 6 * * *"), "b.toml": toml("beta")})
    assert recurring.sync_directory(sessions, tmp_path, now=now) == recurring.SyncReport(created=["beta"])
    assert recurring.sync_directory(sessions, tmp_path, now=now) == recurring.SyncReport()

    mount_configmap(tmp_path, 4, {"b.toml": toml("beta")})
    assert recurring.sync_directory(sessions, tmp_path, now=now).disabled == ["alpha"]


@pytest.mark.parametrize("old_version", ["still mounted", "replaced since"])
def test_a_definition_stored_under_its_resolved_path_is_taken_over_by_its_file(
    sessions: sessionmaker[Session], tmp_path: Path, old_version: str
) -> None:
    """Earlier versions stored the file's symlink target; their rows are adopted, not reported as conflicts."""
    now = Z("2026-11-23T11:00Z")
    mount_configmap(tmp_path, 1, {"a.toml": toml("alpha")})
    recurring.sync_directory(sessions, tmp_path, now=now)
    with unit_of_work(sessions) as s:
        recurring.get_definition(s, "alpha").origin_path = os.path.realpath(tmp_path / "a.toml")
    if old_version == "replaced since":
        mount_configmap(tmp_path, 2, {"a.toml": toml("alpha")})
    report = recurring.sync_directory(sessions, tmp_path, now=now)
    assert (report.updated, report.disabled, report.errors) == (["alpha"], [], [])
    with sessions() as s:
        alpha = recurring.get_definition(s, "alpha")
        assert (alpha.enabled, alpha.origin_path) == (True, str(tmp_path / "a.toml"))
        assert alpha.next_run_at == Z("2026-11-23T12:00Z")  # kept: 07:00 in New York, the schedule did not change
    assert recurring.sync_directory(sessions, tmp_path, now=now) == recurring.SyncReport()


def test_a_definition_still_defined_by_another_file_is_not_taken_over(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    now = Z("2026-11-23T11:00Z")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "a.toml").write_text(toml("alpha"))
    (tmp_path / "two" / "a.toml").write_text(toml("alpha", cron="0 6 * * *"))
    assert recurring.sync_directory(sessions, tmp_path / "one", now=now).created == ["alpha"]
    report = recurring.sync_directory(sessions, tmp_path / "two", now=now)
    assert report.errors == [f"{tmp_path / 'two' / 'a.toml'}: recurring definition 'alpha' is already defined by "
                             f"the file {tmp_path / 'one' / 'a.toml'}"]  # fmt: skip
    (tmp_path / "one" / "a.toml").unlink()  # its file is gone: the other one may define it now
    assert recurring.sync_directory(sessions, tmp_path / "two", now=now).updated == ["alpha"]


def test_a_file_definition_cannot_be_replaced_through_the_api(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    now = Z("2026-11-23T11:00Z")
    (tmp_path / "a.toml").write_text(toml("alpha"))
    recurring.sync_directory(sessions, tmp_path, now=now)
    api = recurring.validate_definition(body(name="alpha"), now=now, origin="api", base_dir=tmp_path)
    with unit_of_work(sessions) as s, pytest.raises(Conflict, match="defined by the file"):
        recurring.upsert_definition(s, api, now=now)

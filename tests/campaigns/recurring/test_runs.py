"""Runs on real PostgreSQL with the injected clock: exactly one run per tick under competition, one catch-up
run after downtime, cross-run dedupe, due times and the calling window."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from campaigns import lifecycle, recurring
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.errors import Conflict
from campaigns.models import Campaign, ImportIssue, RecurringReminder, RecurringRun, ScheduledEvent, Suppression
from tests.campaigns.recurring.support import HEADER, TEMPLATE, Z, count, define, definition_row, runs
from worker.runtime import Runtime

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


# --- issue #19 item 11 ----------------------------------------------------------------------------------------


def test_a_run_does_not_read_again_a_file_it_has_read(
    sessions: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from campaigns.recurring import runs as run_module

    read: list[str] = []
    snapshot = run_module._snapshot

    def counting(path: Path) -> object:
        read.append(path.name)
        return snapshot(path)

    monkeypatch.setattr(run_module, "_snapshot", counting)
    clock = FrozenClock(Z("2026-11-23T11:00Z"))
    define(sessions, tmp_path, clock.now())
    (tmp_path / "appointments-1.csv").write_text(HEADER + "+12125550101,Ana,2026-11-25 10:00\n")
    clock.set(Z("2026-11-23T12:00Z"))
    assert recurring.run_due(sessions, now=clock.now)[0].status == "completed"
    assert read == ["appointments-1.csv"]
    clock.set(Z("2026-11-24T12:00Z"))
    (again,) = recurring.run_due(sessions, now=clock.now)
    assert again.status == "no_new_file" and read == ["appointments-1.csv"]  # not opened, not hashed again
    forced = recurring.run_now(sessions, "appointments", now=clock.now(), force=True)
    assert forced.counts["rows_duplicate"] == 1 and read == ["appointments-1.csv"] * 2  # --force reads it
    (tmp_path / "appointments-1.csv").write_text(HEADER + "+12125550102,Ben,2026-11-26 10:00\n")  # rewritten
    clock.set(Z("2026-11-25T12:00Z"))
    (changed,) = recurring.run_due(sessions, now=clock.now)
    assert changed.counts["rows_created"] == 1 and read == ["appointments-1.csv"] * 3


def test_a_tick_sooner_than_the_minimum_interval_after_the_last_run_is_skipped(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    clock = FrozenClock(Z("2026-11-23T11:00Z"))
    definition_id = define(sessions, tmp_path, clock.now())
    (tmp_path / "appointments-1.csv").write_text(HEADER + "+12125550101,Ana,2026-11-25 10:00\n")
    clock.set(Z("2026-11-23T11:58Z"))
    assert recurring.run_now(sessions, "appointments", now=clock.now()).status == "completed"
    clock.set(Z("2026-11-23T12:00Z"))  # the 07:00 tick, two minutes after that run
    assert recurring.run_due(sessions, now=clock.now) == []
    assert [r.kind for r in runs(sessions, definition_id)] == ["manual"]
    assert definition_row(sessions, definition_id).next_run_at == Z("2026-11-24T12:00Z")  # the next tick runs


def test_a_minutely_schedule_is_refused_with_the_minimum() -> None:
    from campaigns.errors import ValidationFailed
    from tests.campaigns.recurring.support import body

    with pytest.raises(ValidationFailed) as failed:
        recurring.validate_definition(body(cron="* * * * *"), now=Z("2026-11-23T11:00Z"), origin="api",
                                      base_dir=Path("/tmp"))  # fmt: skip
    (error,) = failed.value.errors
    assert error.pointer == "/cron" and "can fire 1 min apart" in error.detail
    assert recurring.schedule.shortest_interval("0,30 8-17 * * 1-5") == timedelta(minutes=30)
    assert recurring.schedule.shortest_interval("55 23 * * *") == timedelta(days=1)
    assert recurring.schedule.shortest_interval("0,58 0,23 * * *") == timedelta(minutes=2)  # 23:58 → 00:00

"""The operator CLI against the test database: import (dry run and real), status, export."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from campaigns import campaign as campaign_service
from campaigns.db import unit_of_work
from campaigns.importing.export import ATTEMPT_COLUMNS
from campaigns.models import Campaign, ScheduledEvent
from campaigns.windows import HOLD_UNTIL
from worker.cli import app

DATA = Path(__file__).resolve().parents[2] / "data" / "campaigns"


def run(*args: str, columns: int = 220) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})
    return result.exit_code, result.stdout, result.stderr


def import_campaign(name: str = "cli") -> str:
    """The sample file as a campaign; again and again (the re-upload guard allows it when told)."""
    code, out, err = run(*IMPORT[:3], name, *IMPORT[4:], "--allow-duplicate-upload")
    assert code == 0, err
    return out.strip().splitlines()[-1]


IMPORT = ["import", str(DATA / "mixed.csv"), "--name", "cli", "--assistant-id", "a1", "--from", "+15553456789",
          "--retries", "1", "--retry-interval", "600", "--ruleset", "none"]  # fmt: skip


def test_dry_run_reports_and_creates_nothing(cli_env: None, sessions: sessionmaker[Session]) -> None:
    code, _, err = run(*IMPORT, "--dry-run")
    assert code == 0, err
    assert "dry run" in err and "duplicate of row 2" in err and "not a phone number" in err
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 0


def test_import_status_export(cli_env: None, sessions: sessionmaker[Session]) -> None:
    code, out, err = run(*IMPORT)
    assert code == 0, err
    campaign_id = out.strip().splitlines()[-1]
    with sessions() as s:
        assert (
            s.scalar(select(func.count()).select_from(ScheduledEvent).where(ScheduledEvent.campaign_id == campaign_id))
            == 4
        )

    code, out, err = run("status", campaign_id)
    assert code == 0, err
    assert "cli" in out and "completed" in out  # the import column

    code, out, err = run("export", campaign_id)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 4 and rows[0]["phone"] == "+12125550101"  # E.164: no formula guard
    assert rows[1]["phone_as_written"] == "(312) 555-0102"

    code, out, err = run("export", campaign_id[:8], "--attempts")
    assert code == 0, err
    assert out.splitlines() == [",".join(ATTEMPT_COLUMNS)]  # nothing dispatched yet


def test_bad_settings_and_missing_campaign(cli_env: None) -> None:
    code, _, err = run(*IMPORT[:-6], "--retries", "2")
    assert code == 2 and "retry_interval_secs" in err
    assert run("status", "00000000-0000-0000-0000-000000000000")[0] == 1
    assert run("export", "nope")[0] == 1


def test_file_level_error_is_one_clear_message(cli_env: None, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"name,city\nAna,Paris\n")
    code, _, err = run("import", str(bad), "--name", "x", "--assistant-id", "a", "--from", "+15553456789")
    assert code == 2 and "no phone column" in err


EHR = Path(__file__).resolve().parents[2] / "data" / "csv" / "ehr_appointments.csv"
EHR_IMPORT = ["create", str(EHR), "--name", "ehr", "--assistant-id", "a1", "--from", "+15553456789",
              "--ruleset", "none"]  # fmt: skip


def test_create_maps_columns_and_the_dry_run_shows_what_goes_out(
    cli_env: None, sessions: sessionmaker[Session]
) -> None:
    code, _, err = run(*EHR_IMPORT, "--map", "First Name=patient", "--map", "Email=-", "--variables", "patient",
                       "--dry-run")  # fmt: skip
    assert code == 0, err
    assert "patient" in err and '{"patient": "Ana"}' in err and "ana@example.com" not in err
    assert "dropped" in err and "+12125550101" in err
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 0


def test_an_unknown_placeholder_refuses_the_campaign_naming_it(cli_env: None, sessions: sessionmaker[Session]) -> None:
    code, _, err = run(*EHR_IMPORT, "--channel", "sms_chat", "--text", "Hi {{first_name}} on {{Appointment_Day}}")
    assert code == 2
    assert "text" in err and "{{Appointment_Day}}" in err
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 0


def test_a_bad_map_option_is_named(cli_env: None) -> None:
    code, _, err = run(*EHR_IMPORT, "--map", "Phone Number")
    assert code == 2 and "--map 'Phone Number'" in err


def test_status_is_a_table_per_campaign_that_fits_80_columns(cli_env: None, sessions: sessionmaker[Session]) -> None:
    first = import_campaign("a campaign whose name is long enough to need wrapping inside an eighty column tty")
    second = import_campaign("second")
    retry_at = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)
    due_at = datetime(2026, 6, 1, 14, 0, tzinfo=UTC)
    with unit_of_work(sessions) as s:
        events = {
            e.source_row: e.id for e in s.scalars(select(ScheduledEvent).where(ScheduledEvent.campaign_id == first))
        }
        edits = {
            2: {"scheduled_at_fixed_datetime": HOLD_UNTIL, "deferred_reason": "held: no zone"},
            3: {"scheduled_at_fixed_datetime": retry_at, "retry_count": 1},
            6: {"scheduled_at_fixed_datetime": due_at, "deferred_reason": "outside the calling window"},
            8: {"scheduled_at_fixed_datetime": datetime(2026, 6, 2, tzinfo=UTC)},
        }  # fmt: skip
        for row, values in edits.items():
            s.execute(update(ScheduledEvent).where(ScheduledEvent.id == events[row]).values(**values))

    code, out, err = run("status", columns=80)
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert first in out and second in out  # full ids, both campaigns
    code, out, err = run("status", first[:6], columns=80)
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert second not in out
    lines = [line.split() for line in out.splitlines()]
    assert ["waiting", "1", "held,", "1", "deferred"] in lines
    assert ["next", "due", "2026-06-01T14:00:00Z"] in lines and ["next", "retry", "2026-06-01T15:00:00Z"] in lines
    assert "4 pending, 0 in progress" in out and "7 rows, 4 accepted, 2 rejected, 1 duplicate" in out


def campaign_with_id(sessions: sessionmaker[Session], campaign_id: str, name: str) -> None:
    body = {"name": name, "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none"}
    now = datetime(2026, 5, 7, tzinfo=UTC)
    with unit_of_work(sessions) as s:
        created = campaign_service.create_campaign(s, campaign_service.validate_settings(body, now=now), now=now)
        s.execute(update(Campaign).where(Campaign.id == created.id).values(id=uuid.UUID(campaign_id)))


def test_ids_are_taken_by_unique_prefix(cli_env: None, sessions: sessionmaker[Session]) -> None:
    campaign_with_id(sessions, "abcd1234-0000-4000-8000-000000000001", "one")
    campaign_with_id(sessions, "abcd1299-0000-4000-8000-000000000002", "two")
    code, out, err = run("status", "abcd12")
    assert code == 1 and "ambiguous" in err
    assert "abcd1234-0000-4000-8000-000000000001  one" in err and "abcd1299-0000-4000-8000-000000000002  two" in err
    code, out, err = run("status", "ABCD1234")  # any case
    assert code == 0 and "abcd1234-0000-4000-8000-000000000001  one" in out and "two" not in out
    assert run("export", "abcd12990000")[0] == 0  # dashes optional
    for verb in ("status", "export", "pause", "resume", "cancel"):
        code, _, err = run(verb, "abcd5")
        assert (code, err.strip()) == (1, "no campaign abcd5")
        code, _, err = run(verb, "abcd12")
        assert code == 1 and "ambiguous" in err, verb
    code, _, err = run("pause", "nope!")
    assert code == 1 and "hexadecimal" in err


def test_pause_resume_cancel_do_what_the_http_routes_do(cli_env: None, sessions: sessionmaker[Session]) -> None:
    campaign_id = import_campaign()

    def state() -> tuple[str, dict[str, int]]:
        with sessions() as s:
            found = s.get(Campaign, uuid.UUID(campaign_id))
            assert found is not None
            return found.status, campaign_service.event_counts(s, found.id)

    code, out, err = run("pause", campaign_id[:8])
    assert (code, out.strip()) == (0, f"campaign {campaign_id} paused"), err
    assert state()[0] == "paused"
    code, _, err = run("pause", campaign_id)
    assert code == 1 and "only an active campaign can be paused" in err
    code, out, err = run("resume", campaign_id)
    assert (code, out.strip()) == (0, f"campaign {campaign_id} resumed"), err
    assert state()[0] == "active"
    code, _, err = run("resume", campaign_id)
    assert code == 1 and "only a paused campaign can be resumed" in err
    code, out, err = run("cancel", campaign_id)
    assert code == 0 and "4 pending events canceled" in out, err
    status, counts = state()
    assert (status, counts["canceled"], counts["pending"]) == ("canceled", 4, 0)
    code, _, err = run("cancel", campaign_id)
    assert code == 1 and "already canceled" in err


def test_dedupe_key_late_policy_and_the_re_upload_guard(
    cli_env: None, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Two appointments of one phone both get a reminder with --dedupe-key; a reminder time that passed long ago
    is skipped under --late-policy skip; the same file again is refused naming the campaign, unless allowed."""
    path = tmp_path / "two.csv"
    path.write_text("phone,appointment_date,scheduled_at\n"
                    "+12125550101,2026-12-15,2026-12-14T18:00:00Z\n"
                    "+12125550101,2026-12-16,2026-12-15T18:00:00Z\n"
                    "+12125550102,2020-01-02,2020-01-01T18:00:00Z\n")  # fmt: skip
    base = ["import", str(path), "--name", "two", "--assistant-id", "a1", "--from", "+15553456789", "--ruleset",
            "none", "--dedupe-key", "phone,appointment_date", "--late-policy", "skip"]  # fmt: skip
    code, out, err = run(*base)
    assert code == 0, err
    assert "1 skipped [4]" in err
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(ScheduledEvent)) == 2
    code, _, err = run(*base)
    assert code == 2 and out.strip() in err and "allow-duplicate-upload" in err
    code, _, err = run(*base, "--allow-duplicate-upload")
    assert code == 0, err
    code, _, err = run(*base, "--dedupe-key", "phone,visit")
    assert code == 2 and "dedupe_key" in err and "'visit'" in err

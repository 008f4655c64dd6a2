"""The operator CLI against the test database: import (dry run and real), status, export."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from campaigns.models import Campaign, ScheduledEvent
from worker.cli import app

DATA = Path(__file__).resolve().parents[2] / "data" / "campaigns"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "220"})
    return result.exit_code, result.stdout, result.stderr


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
    assert len(rows) == 4 and rows[0]["phone"] == "'+12125550101"


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

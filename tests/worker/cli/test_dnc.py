"""``campaigns dnc``: add, remove, import, list against the test database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from campaigns.models import ScheduledEvent, Suppression
from tests.worker.cli.test_campaigns import run


def listed(sessions: sessionmaker[Session]) -> dict[str, str]:
    with sessions() as s:
        return {phone: reason for phone, reason in s.execute(select(Suppression.phone, Suppression.reason))}


def test_add_remove(cli_env: None, sessions: sessionmaker[Session]) -> None:
    code, out, err = run("dnc", "add", "(212) 555-0147", "--note", "asked on the phone")
    assert code == 0, err
    assert "+12125550147 added" in out
    code, out, _ = run("dnc", "add", "+12125550147")
    assert code == 0 and "already listed (manual)" in out
    assert listed(sessions) == {"+12125550147": "manual"}
    with sessions() as s:
        entry = s.get(Suppression, "+12125550147")
        assert entry is not None and entry.note == "asked on the phone"

    code, _, err = run("dnc", "add", "12345")
    assert code == 2 and "'12345'" in err and "too short" in err

    code, out, _ = run("dnc", "remove", "212-555-0147")
    assert code == 0 and "+12125550147 removed" in out
    code, _, err = run("dnc", "remove", "+12125550147")
    assert code == 1 and "not on the list" in err
    assert listed(sessions) == {}


def test_import_reports_counts_and_bad_lines(cli_env: None, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    run("dnc", "add", "+12125550103")
    file = tmp_path / "registry.txt"
    file.write_text("# extract\n2125550101\n\n212,5550102\nbogus\n2125550103\n2125550101\n")
    code, out, err = run("dnc", "import", str(file), "--note", "registry")
    assert code == 0, err
    assert "2 added, 1 already listed, 1 invalid line(s)" in out
    assert "5" in err and "bogus" in err and "not a phone number" in err  # line 5 is reported
    assert listed(sessions) == {"+12125550101": "file", "+12125550102": "file", "+12125550103": "manual"}

    code, out, _ = run("dnc", "list", "--reason", "file")
    assert code == 0
    assert "+12125550101" in out and "+12125550102" in out and "+12125550103" not in out
    code, out, _ = run("dnc", "list")
    assert "(3 of 3)" in out
    code, _, err = run("dnc", "list", "--reason", "nope")
    assert code == 2 and "manual, file, sms_opt_out, provider_block" in err


def test_missing_file_and_bad_region(cli_env: None, tmp_path: Path) -> None:
    code, _, _ = run("dnc", "import", str(tmp_path / "missing.txt"))
    assert code == 2
    file = tmp_path / "numbers.txt"
    file.write_text("2125550101\n")
    code, _, err = run("dnc", "import", str(file), "--region", "XX")
    assert code == 2 and "unknown default region 'XX'" in err


def test_campaign_import_skips_listed_numbers(cli_env: None, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    run("dnc", "add", "+12125550147")
    calls = tmp_path / "calls.csv"
    calls.write_text("phone,name\n+12125550101,Ana\n+12125550147,Bo\n")
    code, _, err = run("import", str(calls), "--name", "x", "--assistant-id", "a", "--from", "+15553456789",
                       "--ruleset", "none")  # fmt: skip
    assert code == 0, err
    assert "on the do-not-contact list (manual)" in err
    with sessions() as s:
        targets = s.scalars(select(ScheduledEvent.telnyx_end_user_target)).all()
    assert targets == ["+12125550101"]

"""`campaigns windows check|list|show` explain decisions the way the engine makes them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaigns import windows
from campaigns.settings import get_settings
from worker.cli import app


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "220", **(env or {})})
    return result.exit_code, result.output


def test_florida_evening_is_blocked_with_the_rule_citation_and_next_opening() -> None:
    code, out = run("windows", "check", "+13055550123", "--at", "2025-07-15T00:30Z", "--ruleset", "us")
    assert code == 1, out
    assert "candidate zones: America/New_York  (from phone number exchange (phonenumbers))" in out
    assert "states whose rules apply: FL" in out
    assert "Fla. Stat. §501.616(6)" in out and "outside 08:00-20:00" in out
    assert "frequency cap (FL): 3 attempts per 24 h" in out
    assert "BLOCKED" in out
    assert "next opening: 2025-07-15T12:00:00Z  (Tue 08:00 EDT America/New_York)" in out


def test_allowed_and_held_and_none() -> None:
    code, out = run("windows", "check", "+12125550101", "--at", "2025-07-15T16:00Z")
    assert code == 0 and "ALLOWED" in out
    code, out = run("windows", "check", "+18005550123", "--at", "2025-07-15T16:00Z")
    assert code == 1 and "HELD" in out and "candidate zones: none" in out
    code, out = run("windows", "check", "+18005550123", "--at", "2025-07-15T16:00Z", "--timezone", "America/Denver")
    assert code == 0 and "from timezone column" in out
    code, out = run("windows", "check", "+12125550101", "--at", "2025-07-15T03:00Z", "--ruleset", "none")
    assert code == 0 and "ruleset none has no calling window" in out


def test_custom_hours_and_canada() -> None:
    code, out = run("windows", "check", "+447400123456", "--at", "2025-07-15T07:00Z", "--ruleset", "custom",
                    "--hours", "mon-fri=09:00-17:30", "--default-zone", "Europe/London")  # fmt: skip
    assert code == 1 and "next opening: 2025-07-15T08:00:00Z" in out
    code, out = run("windows", "check", "+14165550123", "--at", "2025-07-12T22:00Z", "--ruleset", "ca")
    assert code == 1 and "outside 10:00-18:00" in out


def test_windows_check_applies_the_more_specific_day() -> None:
    code, out = run("windows", "check", "+447400123456", "--at", "2025-07-18T17:00Z", "--ruleset", "custom",
                    "--hours", "mon-fri=09:00-20:00,fri=09:00-17:00", "--default-zone", "Europe/London")  # fmt: skip
    assert code == 1 and "outside 09:00-17:00" in out, out
    overlap = "mon-fri=09:00-20:00,thu-fri=09:00-17:00"
    code, out = run("windows", "check", "+447400123456", "--at", "2025-07-18T17:00Z", "--ruleset", "custom",
                    "--hours", overlap, "--default-zone", "Europe/London")  # fmt: skip
    assert code == 2 and "'mon-fri' and 'thu-fri' both set thu" in out, out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--at", "yesterday"), "is not an ISO 8601 date-time"),
        (("--ruleset", "mars"), "unknown ruleset 'mars'"),
        (("--ruleset", "custom"), "ruleset custom needs --hours"),
        (("--ruleset", "custom", "--hours", "mon=9-5"), "custom.hours.mon: '9-5' is not"),
        (("--timezone", "Mars/Olympus"), "not an IANA time zone"),
    ],
)
def test_bad_options_are_named(args: tuple[str, ...], message: str) -> None:
    code, out = run("windows", "check", "+12125550101", *args)
    assert code == 2
    assert message in " ".join(out.split()).replace("│", "").replace("  ", " ") or message in out


def test_list_and_show_the_rulesets_in_effect(tmp_path: Path) -> None:
    code, out = run("windows", "list")
    assert code == 0 and "campaigns/rulesets/us.toml" in out and "custom" in out
    code, out = run("windows", "show", "us")
    assert code == 0 and "Miss. Code §77-3-723" in out and "Etc/GMT+6" in out and "(unverified)" in out
    (tmp_path / "us.toml").write_text(
        'name = "us"\nversion = "local-7"\n[[rule]]\nid = "federal"\ncitation = "47 CFR 64.1200(c)(1)"\n'
        'hours = { daily = "08:00-21:00" }\n'
    )
    get_settings.cache_clear()
    try:
        code, out = run("windows", "list", env={"CAMPAIGNS_RULESETS_DIR": str(tmp_path)})
        assert code == 0 and "local-7" in out and str(tmp_path / "us.toml") in out
    finally:
        get_settings.cache_clear()
        windows.load_rulesets.cache_clear()


def test_import_with_custom_hours_and_a_campaign_cap(
    database_url: str, monkeypatch: pytest.MonkeyPatch, sessions: object
) -> None:
    from sqlalchemy import select

    from campaigns.models import Campaign
    from tests.worker.cli.test_campaigns import DATA
    from worker.runtime import reset_runtime

    monkeypatch.setenv("CAMPAIGNS_DATABASE_URL", database_url)
    reset_runtime()
    try:
        base = ["import", str(DATA / "mixed.csv"), "--name", "uk", "--assistant-id", "a1", "--from", "+15553456789"]
        code, out = run(*base, "--ruleset", "custom", "--custom-hours", "mon-fri=9-5")
        assert code == 2 and "custom_windows: custom_windows.hours.mon-fri: '9-5' is not" in out
        code, out = run(*base, "--ruleset", "custom", "--custom-hours", "mon-fri=09:00-17:30",
                        "--cap-max-attempts", "2", "--timezone", "Europe/London")  # fmt: skip
        assert code == 0, out
        with sessions() as s:  # type: ignore[operator]
            campaign = s.scalars(select(Campaign)).one()
            assert campaign.custom_windows == {"hours": {"mon-fri": "09:00-17:30"}}
            assert (campaign.cap_max_attempts, campaign.cap_window_secs) == (2, 86400)
    finally:
        reset_runtime()


@pytest.mark.parametrize("written", ["(212) 555-0101", "212.555.0101", "1-212-555-0101", "+1 212 555 0101"])
def test_check_reads_the_number_as_the_import_does(written: str) -> None:
    code, out = run("windows", "check", written, "--at", "2025-07-15T16:00Z")
    assert code == 0 and "ALLOWED" in out and "+12125550101 at 2025-07-15T16:00:00Z" in out, out
    assert "candidate zones: America/New_York" in out


def test_check_reads_national_numbers_in_the_region_given() -> None:
    london = ("--ruleset", "custom", "--hours", "mon-fri=09:00-17:00", "--default-zone", "Europe/London")
    code, out = run("windows", "check", "07400 123456", "--region", "GB", "--at", "2025-07-15T12:00Z", *london)
    assert code == 0 and "+447400123456" in out, out
    code, out = run("windows", "check", "07400 123456", "--at", "2025-07-15T12:00Z")
    assert code == 2 and "'07400 123456'" in out and "region US" in out, out
    code, out = run("windows", "check", "555-0101", "--at", "2025-07-15T12:00Z")
    assert code == 2 and "'555-0101'" in out, out

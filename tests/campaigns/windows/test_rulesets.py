"""Rulesets as data: the shipped files, a local directory replacing them, errors named with the key."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from campaigns import windows
from campaigns.windows import Recipient
from tests.campaigns.windows.test_engine import NY, US, at, ruleset


def test_shipped_rulesets_have_versions_and_a_citation_per_rule() -> None:
    for name in ("us", "ca", "au"):
        rs = ruleset(name)
        assert rs.version and rs.source.endswith(f"{name}.toml")
        assert all(rule.citation for rule in rs.rules)
    assert {r.id for r in US.rules if not r.verified} == {"AL", "TX", "CT", "RI"}
    assert windows.ruleset_names() >= {"none", "us", "ca", "au", "custom"}


def test_a_ruleset_file_in_the_rulesets_dir_replaces_the_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "us.toml").write_text(
        'name = "us"\nversion = "local-1"\n'
        '[[rule]]\nid = "federal"\ncitation = "47 CFR 64.1200(c)(1)"\nhours = { daily = "08:00-21:00" }\n'
        '[[rule]]\nid = "NY"\nstate = "NY"\ncitation = "a local correction"\nhours = { daily = "10:00-19:00" }\n'
    )
    (tmp_path / "uk.toml").write_text(
        'name = "uk"\nversion = "1"\n[[rule]]\nid = "ofcom"\ncitation = "house rules"\n'
        'hours = { mon-fri = "09:00-20:00", sat = "10:00-16:00" }\nholidays = { country = "GB", subdiv = "ENG" }\n'
    )
    found = windows.load_rulesets(str(tmp_path))
    assert found["us"].version == "local-1" and found["us"].source == str(tmp_path / "us.toml")
    new_yorker = Recipient(("America/New_York",), ("NY",))
    assert not windows.is_allowed(at(NY, 2025, 7, 15, 9, 30), new_yorker, found["us"])
    assert windows.is_allowed(at(NY, 2025, 7, 15, 9, 30), new_yorker, US)
    london = Recipient(("Europe/London",))
    assert not windows.is_allowed(at(ZoneInfo("Europe/London"), 2025, 12, 25, 12, 0), london, found["uk"])
    assert found["ca"] is not None  # shipped rulesets not overridden stay


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('version = "1"\n[[rule]]\nid = "a"\ncitation = "c"\nhours = { daily = "08:00-21:00" }', "name: required"),
        ('name = "x"\nversion = "1"', "at least one [[rule]]"),
        ('name = "x"\nversion = "1"\n[[rule]]\nid = "a"\nhours = { daily = "08:00-21:00" }', "rule a.citation"),
        ('name = "x"\nversion = "1"\n[[rule]]\nid = "a"\ncitation = "c"\nhours = { daily = "8-21" }', "hours.daily"),
        ('name = "x"\nversion = "1"\n[[rule]]\nid = "a"\ncitation = "c"\nhours = { funday = "08:00-09:00" }',
         "unknown day 'funday'"),
        ('name = "x"\nversion = "1"\n[[rule]]\nid = "a"\ncitation = "c"\nhours = { daily = "21:00-08:00" }',
         "non-empty span"),
        ('name = "x"\nversion = "1"\n[[rule]]\nid = "a"\ncitation = "c"\nstate = "ZZ"\n'
         'hours = { daily = "08:00-21:00" }',
         "rule a.state"),
        ('name = "x"\nversion = "1"\n[[rule]]\nid = "a"\ncitation = "c"\nzone = "Mars/Olympus"\n'
         'hours = { daily = "08:00-21:00" }',
         "rule a.zone"),
        ('name = "x"\nversion = "1"\n[[rule]]\nid = "a"\ncitation = "c"\nhours = { daily = "08:00-21:00" }\n'
         'holidays = { country = "XX" }', "holidays.country"),
        ('name = "x"\nversion = "1"\n[[rule]]\nid = "a"\ncitation = "c"\nhours = { daily = "08:00-21:00" }\n'
         "cap = { attempts = 0, hours = 24 }", "cap.attempts"),
        ('name = "none"\nversion = "1"\n[[rule]]\nid = "a"\ncitation = "c"\nhours = { daily = "08:00-21:00" }',
         "reserved"),
        ("name = ", "not valid TOML"),
    ],
)  # fmt: skip
def test_bad_ruleset_files_are_named_with_the_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(windows.RulesetError) as error:
        windows.load_rulesets(str(tmp_path))
    assert str(tmp_path / "bad.toml") in str(error.value)
    assert message in str(error.value)


def test_custom_window_errors() -> None:
    with pytest.raises(windows.RulesetError, match=r"custom_windows.hours.mon: '9-5' is not"):
        windows.custom_ruleset({"hours": {"mon": "9-5"}})
    with pytest.raises(windows.RulesetError, match="unknown key"):
        windows.custom_ruleset({"hours": {"mon": "09:00-17:00"}, "zone": "Europe/London"})


def test_the_more_specific_day_key_wins_in_any_order() -> None:
    friday = 4
    for hours in ({"daily": "08:00-21:00", "mon-fri": "09:00-20:00", "fri": "09:00-17:00"},
                  {"fri": "09:00-17:00", "mon-fri": "09:00-20:00", "daily": "08:00-21:00"}):  # fmt: skip
        week = windows.parse_hours(hours, "hours")
        assert week[friday] == ((9 * 3600, 17 * 3600),)
        assert week[0] == ((9 * 3600, 20 * 3600),)  # Monday: the range
        assert week[6] == ((8 * 3600, 21 * 3600),)  # Sunday: daily
    assert windows.parse_hours({"mon-fri": "09:00-17:00", "fri": "closed"}, "hours")[friday] == ()


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ({"mon-wed": "09:00-17:00", "wed-fri": "10:00-12:00"}, "'mon-wed' and 'wed-fri' both set wed"),
        ({"daily": "09:00-17:00", "all": "10:00-12:00"}, "'all' and 'daily' both set mon"),
        ({"fri": "09:00-17:00", " FRI": "10:00-12:00"}, "both set fri"),
    ],
)
def test_overlapping_keys_of_one_specificity_are_an_error_naming_both(hours: dict[str, str], message: str) -> None:
    with pytest.raises(windows.RulesetError, match=message):
        windows.custom_ruleset({"hours": hours})

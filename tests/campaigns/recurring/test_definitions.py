"""Definition validation and TOML definition files: every problem named, with its file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaigns import recurring
from campaigns.errors import ValidationFailed
from tests.campaigns.recurring.support import Z, body

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
    example = Path(__file__).resolve().parents[3] / "examples" / "recurring" / "appointment-reminders.toml"
    definition = recurring.load_definition_file(example, now=Z("2026-11-21T00:00Z"))
    assert definition.cron == "0 7 * * *" and definition.timezone == "America/New_York"
    assert definition.source == str(example.parent / "appointments-*.csv")
    assert recurring.matching_files(definition.source)  # the sample file is there


def test_the_readme_example_is_a_valid_definition(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
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

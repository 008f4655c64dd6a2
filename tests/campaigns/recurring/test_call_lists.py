"""Recurring runs read call lists as operators really have them (issue #18 item 1): spaced headers, a mapping,
the ``variables`` allow-list, a date column and a time column in ``due``; real PostgreSQL, the injected clock."""

from __future__ import annotations

import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from campaigns import recurring
from campaigns.clock import FrozenClock
from campaigns.errors import ValidationFailed
from campaigns.models import ImportIssue, ScheduledEvent
from tests.campaigns.recurring.support import TEMPLATE, Z, body, define, definition_row, runs

# An EHR export: spaced headers, a BOM, CRLF, mixed number formats, a date and a time column, an Email column.
EHR = (
    "\ufeffPhone Number,First Name,Last Name,Appointment Date,Appointment Time,Clinic,Email\r\n"
    "(212) 555-0101,Ana,Alvarez,11/25/2026,2:30 PM,Midtown,ana@example.com\r\n"
    "+1 310 555 0102,Ben,Brown,2026-11-25,09:15,Westside,ben@example.com\r\n"
    "212.555.0103,Cy,Chen,11/31/2026,10:00,Midtown,cy@example.com\r\n"
    "212-555-0104,Di,Diaz,11/26/2026,half past,Midtown,di@example.com\r\n"
)
ALLOWED = ["first_name", "appointment_date", "appointment_time", "clinic"]


def _run(
    sessions: sessionmaker[Session], tmp_path: Path, csv: str = EHR, **overrides: Any
) -> tuple[recurring.RunResult, uuid.UUID]:
    clock = FrozenClock(Z("2026-11-23T11:00Z"))
    settings: dict[str, Any] = {"campaign": {**TEMPLATE, "timezone": "America/New_York"}, **overrides}
    definition_id = define(sessions, tmp_path, clock.now(), **settings)
    (tmp_path / "appointments-2026-11-23.csv").write_bytes(csv.encode())
    clock.set(Z("2026-11-23T12:00Z"))
    (result,) = recurring.run_due(sessions, now=clock.now)
    return result, definition_id


def _events(sessions: sessionmaker[Session]) -> dict[str, ScheduledEvent]:
    with sessions() as s:
        return {e.telnyx_end_user_target: e for e in s.scalars(select(ScheduledEvent))}


def _issues(sessions: sessionmaker[Session]) -> dict[int, tuple[str, str, str]]:
    with sessions() as s:
        return {i.row_number: (i.column, i.value, i.reason) for i in s.scalars(select(ImportIssue))}


def test_an_ehr_export_runs_with_normalized_headers_and_only_allowed_variables_go_out(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    result, definition_id = _run(
        sessions, tmp_path, due="appointment_date appointment_time - 2h", variables=ALLOWED, drop_columns=["Email"]
    )
    assert result.status == "completed", result.message
    assert (result.counts["rows_total"], result.counts["rows_created"], result.counts["rows_rejected"]) == (4, 2, 2)
    events = _events(sessions)
    # The row's zone (the template's) reads the date and the time together; then 2 hours before.
    assert events["+12125550101"].scheduled_at_fixed_datetime == Z("2026-11-25T17:30Z")  # 14:30 EST - 2h
    assert events["+13105550102"].scheduled_at_fixed_datetime == Z("2026-11-25T12:15Z")  # 09:15 EST - 2h
    for event in events.values():
        assert set(event.dynamic_variables) <= set(ALLOWED)  # Last Name and Email never reach the provider
    assert events["+12125550101"].dynamic_variables == {
        "first_name": "Ana", "appointment_date": "11/25/2026", "appointment_time": "2:30 PM", "clinic": "Midtown"
    }  # fmt: skip
    issues = _issues(sessions)
    # A bad date names its column as written, with the row number; a bad time names the time column.
    assert issues[4][:2] == ("Appointment Date", "11/31/2026") and "not a date" in issues[4][2]
    assert issues[5][:2] == ("Appointment Time", "half past") and "not a time of day" in issues[5][2]
    # The default dedupe key is the phone with both due columns.
    assert definition_row(sessions, definition_id).dedupe_key == ["phone", "appointment_date", "appointment_time"]


def test_a_wall_clock_due_on_a_normalized_date_column_with_a_mapping(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    result, _ = _run(
        sessions,
        tmp_path,
        due="visit_day - 1d 18:00 local",
        mapping={"Appointment Date": "visit_day", "First Name": "patient", "Last Name": "-", "Email": "-"},
        dedupe_key=["Phone Number", "Appointment Date"],  # headers as written name the mapped columns too
        variables=["patient"],  # the due column is read, though it is not sent
    )
    assert result.status == "completed", result.message
    assert result.counts["rows_created"] == 3  # Cy's 11/31 is not a date
    events = _events(sessions)
    assert events["+12125550101"].scheduled_at_fixed_datetime == Z("2026-11-24T23:00Z")  # 18:00 EST the day before
    assert events["+12125550104"].scheduled_at_fixed_datetime == Z("2026-11-25T23:00Z")
    assert all(e.dynamic_variables == {"patient": e.source_values["First Name"]} for e in events.values())
    assert _issues(sessions)[4][0] == "Appointment Date"


def test_date_order_reads_day_first_dates(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    csv = "Phone Number,Appointment Date,Appointment Time\n+12125550101,05/12/2026,14:30\n+12125550102,5.12.26,9:00\n"
    result, _ = _run(sessions, tmp_path, csv, due="appointment_date appointment_time", date_order="dmy")
    assert result.counts["rows_created"] == 2, result.message
    events = _events(sessions)
    assert events["+12125550101"].scheduled_at_fixed_datetime == Z("2026-12-05T19:30Z")
    assert events["+12125550102"].scheduled_at_fixed_datetime == Z("2026-12-05T14:00Z")


def test_an_ambiguous_day_first_date_without_date_order_is_reported(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    csv = "phone,appointment_date\n+12125550101,05.12.2026\n+12125550102,12/05/2026\n"
    result, _ = _run(sessions, tmp_path, csv, due="appointment_date 09:00 local")
    # Slashes are read month first, as recurring definitions always have; a dotted date asks for date_order.
    assert result.counts["rows_created"] == 1
    assert _events(sessions)["+12125550102"].scheduled_at_fixed_datetime == Z("2026-12-05T14:00Z")
    column, value, reason = _issues(sessions)[2]
    assert (column, value) == ("appointment_date", "05.12.2026") and "ambiguous date" in reason
    assert "date_order" in reason


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"mapping": {"Mobile": "phone"}}, "'Mobile'"),
        ({"drop_columns": ["Fax"]}, "'Fax'"),
        ({"variables": ["first_name", "insurance_id"]}, "'insurance_id'"),
        ({"due": "appointment_date - 1d 18:00 local", "drop_columns": ["Appointment Date"]}, "'appointment_date'"),
        ({"due": "visit_date - 1d 18:00 local"}, "'visit_date'"),
    ],
)
def test_a_setting_naming_what_the_file_lacks_is_reported_on_the_run(
    sessions: sessionmaker[Session], tmp_path: Path, overrides: dict[str, Any], named: str
) -> None:
    result, definition_id = _run(sessions, tmp_path, **{"due": "appointment_date appointment_time", **overrides})
    assert result.status == "failed"
    assert named in result.message
    (run,) = runs(sessions, definition_id)
    assert named in run.files[0]["error"] and run.files[0]["campaign_id"] is None
    assert _events(sessions) == {}


# --- definitions ---------------------------------------------------------------------------------------------


def test_a_toml_definition_takes_a_mapping_table(tmp_path: Path) -> None:
    path = tmp_path / "ehr.toml"
    path.write_text(
        """
name = "ehr"
cron = "0 7 * * *"
timezone = "America/New_York"
source = "exports/*.csv"
due = "appointment_date appointment_time - 2h"
variables = ["first_name", "appointment_date", "appointment_time"]
date_order = "mdy"

[mapping]
"Phone Number" = "phone"
"Email" = "-"
"Patient ID" = "metadata.patient_id"

[campaign]
assistant_id = "a1"
telnyx_agent_target = "+15553456789"
"""
    )
    definition = recurring.load_definition_file(path, now=Z("2026-11-21T00:00Z"))
    assert definition.call_list == {
        "mapping": {"Phone Number": "phone", "Email": None, "Patient ID": "metadata.patient_id"},
        "variables": ["first_name", "appointment_date", "appointment_time"],
        "date_order": "mdy",
    }
    assert definition.dedupe_key == ("phone", "appointment_date", "appointment_time")


def test_bad_call_list_settings_are_named_by_field() -> None:
    with pytest.raises(ValidationFailed) as caught:
        recurring.validate_definition(
            body(
                mapping={"Phone Number": "phone", "Clinic": "telnyx_clinic", "Email": 3},
                variables="first_name",
                date_order="ymd",
                campaign={**TEMPLATE, "drop_columns": ["Email"]},
                drop_columns=["Fax"],
            ),
            now=Z("2026-11-21T00:00Z"),
            origin="file",
            base_dir=Path("/tmp"),
        )
    problems = {e.pointer: e.detail for e in caught.value.errors}
    assert "reserved" in problems["/mapping/Clinic"]
    assert "must be a target name or null" in problems["/mapping/Email"]
    assert "list of variable names" in problems["/variables"]
    assert "mdy, dmy" in problems["/date_order"]
    assert "set drop_columns in one place" in problems["/campaign/drop_columns"]


@pytest.mark.parametrize(
    ("expression", "column", "time_column"),
    [
        ("appointment_date appointment_time - 2h", "appointment_date", "appointment_time"),
        ('"Appointment Date" - 1d 18:00 local', "Appointment Date", None),
        ("appointment_date - 1d 18:00 local", "appointment_date", None),
    ],
)
def test_due_names_a_date_column_and_a_time_column(expression: str, column: str, time_column: str | None) -> None:
    rule = recurring.parse_due(expression)
    assert (rule.column, rule.time_column) == (column, time_column)


def test_due_explains_spaced_headers_written_bare() -> None:
    with pytest.raises(ValueError, match="normalized name"):
        recurring.parse_due("Appointment Date - 1d 18:00 local")


def test_a_date_and_a_time_column_are_read_together_in_the_rows_zone() -> None:
    rule = recurring.parse_due("appointment_date appointment_time - 2h")
    assert recurring.due_time(rule, "12/05/2026", "America/Chicago", "2:30 PM") == Z("2026-12-05T18:30Z")
    assert recurring.due_time(rule, "05/12/2026", "UTC", "14:30", "dmy") == Z("2026-12-05T12:30Z")
    with pytest.raises(ValueError, match="a date and a time are both needed"):
        recurring.due_time(rule, "12/05/2026", "UTC", "")


def test_both_appointments_of_one_phone_with_the_campaigns_dedupe_key(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    csv = (
        "Phone Number,Appointment Date,Appointment Time\n"
        "+12125550101,11/25/2026,9:00 AM\n+12125550101,11/27/2026,9:00 AM\n+12125550101,11/25/2026,9:00 AM\n"
    )
    key = ["phone", "appointment_date", "appointment_time"]
    campaign = {**TEMPLATE, "timezone": "America/New_York", "dedupe_key": key}
    result, _ = _run(sessions, tmp_path, csv, due="appointment_date appointment_time - 1d", campaign=campaign)
    assert (result.counts["rows_created"], result.counts["rows_duplicate"]) == (2, 1), result.message
    with sessions() as s:
        times = sorted(e.scheduled_at_fixed_datetime for e in s.scalars(select(ScheduledEvent)))
    assert times == [Z("2026-11-24T14:00Z"), Z("2026-11-26T14:00Z")]


def test_the_documented_ehr_definition_validates() -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "recurring.md").read_text()
    toml = text.split("### An EHR export", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    definition = recurring.validate_definition(
        tomllib.loads(toml), now=Z("2026-11-21T00:00Z"), origin="file", base_dir=Path(__file__).parent
    )
    assert definition.dedupe_key == ("phone", "appointment_date", "appointment_time")
    assert definition.call_list is not None and definition.call_list["mapping"]["Email"] is None

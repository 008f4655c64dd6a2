"""Call lists as operators have them (issue 18): an EHR export with spaced headers, a BOM, CRLF, numbers with and
without extensions, a date and a time column and an Email column; mapping, the variables allow-list, templates
checked against the header, dates read in the row's zone."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from campaigns import campaign as campaign_service
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.errors import ValidationFailed
from campaigns.importing import SettingsMismatch, import_new_campaign, open_call_list
from campaigns.importing.dates import parse_date, parse_time
from campaigns.mapping import ListSettings, normalize_header, parse_map_options
from campaigns.models import ScheduledEvent

EHR = (Path(__file__).resolve().parents[2] / "data" / "csv" / "ehr_appointments.csv").read_bytes()
SENT = ["first_name", "appointment_date", "appointment_time", "clinic"]
TEMPLATE = "Hi {{first_name}}, your visit at {{clinic}} is on {{appointment_date}} at {{appointment_time}}."


def settings(clock: FrozenClock, **overrides: Any) -> campaign_service.CampaignSettings:
    body = {"name": "ehr", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none"}
    return campaign_service.validate_settings({**body, **overrides}, now=clock.now())


def dry_run(sessions: sessionmaker[Session], clock: FrozenClock, data: bytes = EHR, **overrides: Any) -> Any:
    with unit_of_work(sessions) as s:
        result = import_new_campaign(s, settings(clock, **overrides), io.BytesIO(data), now=clock.now(), dry_run=True)
    assert result.report is not None
    return result.report.as_dict()


def test_the_file_really_is_an_ehr_export() -> None:
    assert EHR.startswith(b"\xef\xbb\xbf") and b"\r\n" in EHR and b"ext. 12" in EHR


def test_the_dry_run_maps_the_export_without_options_and_shows_what_will_be_sent(
    sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    report = dry_run(sessions, clock)
    assert report["mapping"] == [
        {"column": "Phone Number", "target": "phone"},
        {"column": "First Name", "target": "first_name"},
        {"column": "Last Name", "target": "last_name"},
        {"column": "Appointment Date", "target": "appointment_date"},
        {"column": "Appointment Time", "target": "appointment_time"},
        {"column": "Clinic", "target": "clinic"},
        {"column": "Email", "target": "email"},
    ]
    assert report["sent_variables"] == report["variables"] == [*SENT[:1], "last_name", *SENT[1:], "email"]
    assert report["rows_accepted"] == 4 and report["rows_rejected"] == 2
    assert {(i["row_number"], i["reason"]) for i in report["issues"]} == {
        (5, "number has an extension, which cannot be dialed"),
        (7, "number has an extension, which cannot be dialed"),
    }
    first = report["preview"][0]
    assert first["row_number"] == 2 and first["phone"] == "+12125550101"
    assert first["dynamic_variables"]["email"] == "ana@example.com"  # no allow-list: everything goes out
    assert [row["phone"] for row in report["preview"]] == ["+12125550101", "+12125550102", "+12125550103",
                                                           "+12125550105"]  # fmt: skip


def test_with_variables_set_email_is_never_sent(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    report = dry_run(sessions, clock, variables=SENT)
    assert report["sent_variables"] == SENT
    assert all(set(row["dynamic_variables"]) == set(SENT) for row in report["preview"])
    with unit_of_work(sessions) as s:
        created = import_new_campaign(s, settings(clock, variables=SENT), io.BytesIO(EHR), now=clock.now())
        assert created.campaign is not None
        campaign_id = created.campaign.id
    with sessions() as s:
        stored = s.scalars(select(ScheduledEvent).where(ScheduledEvent.campaign_id == campaign_id)).all()
        assert len(stored) == 4
        assert all("email" not in e.dynamic_variables and "last_name" not in e.dynamic_variables for e in stored)
        assert {e.dynamic_variables["first_name"] for e in stored} == {"Ana", "Ben", "Chloé", ""}


def test_drop_columns_and_a_mapping_name_the_columns_as_written_or_normalized(
    sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    report = dry_run(
        sessions, clock, mapping={"phone number": "phone", "First Name": "patient", "EMAIL": None},
        drop_columns=["last_name"],
    )  # fmt: skip
    assert report["variables"] == ["patient", "appointment_date", "appointment_time", "clinic"]
    assert {"column": "Email", "target": "-"} in report["mapping"]
    assert {"column": "Last Name", "target": "-"} in report["mapping"]


@pytest.mark.parametrize(
    ("overrides", "setting", "named"),
    [
        ({"mapping": {"Mobile": "phone"}}, "mapping", "'Mobile'"),
        ({"variables": ["first_name", "insurance_id"]}, "variables", "'insurance_id'"),
        ({"drop_columns": ["SSN"]}, "drop_columns", "'SSN'"),
        (
            {"telnyx_conversation_channel": "sms_chat", "text": "Hi {{first_name}} {{apointment_date}}"},
            "text",
            "{{apointment_date}}",
        ),
    ],
    ids=["mapping", "variables", "drop_columns", "template"],
)
def test_a_setting_that_does_not_fit_the_file_refuses_it_naming_what(
    sessions: sessionmaker[Session], clock: FrozenClock, overrides: dict[str, Any], setting: str, named: str
) -> None:
    with pytest.raises(SettingsMismatch) as caught, unit_of_work(sessions) as s:
        import_new_campaign(s, settings(clock, **overrides), io.BytesIO(EHR), now=clock.now(), dry_run=True)
    assert caught.value.setting == setting and named in str(caught.value)


def test_every_sms_is_fully_rendered_and_a_row_missing_a_used_value_is_rejected(
    sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    report = dry_run(sessions, clock, telnyx_conversation_channel="sms_chat", text=TEMPLATE, variables=SENT)
    texts = [row["text"] for row in report["preview"]]
    assert texts == [
        "Hi Ana, your visit at Midtown Clinic is on 12/15/2026 at 2:30 PM.",
        "Hi Ben, your visit at Midtown Clinic is on 2026-12-15 at 14:30.",
        "Hi Chloé, your visit at Uptown Clinic is on 12/16/2026 at 9:00 AM.",
    ]
    assert (6, "First Name", "empty value for 'first_name', which the text uses (or give a default in the "
            "template)") in {(i["row_number"], i["column"], i["reason"]) for i in report["issues"]}  # fmt: skip
    defaulted = TEMPLATE.replace("{{first_name}}", '{{ first_name | default("there") }}')
    report = dry_run(sessions, clock, telnyx_conversation_channel="sms_chat", text=defaulted)
    assert "Hi there, your visit at Uptown Clinic is on 12/17/2026 at 11:00 AM." in [
        r["text"] for r in report["preview"]
    ]


def test_a_date_and_a_time_column_are_read_together_in_the_rows_zone(
    sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    report = dry_run(
        sessions,
        clock,
        mapping={"Appointment Date": "scheduled_at.date", "Appointment Time": "scheduled_at.time"},
        timezone="America/New_York",
    )
    when = {row["row_number"]: datetime.fromisoformat(row["scheduled_at"]) for row in report["preview"]}
    assert when[2] == when[3] == datetime(2026, 12, 15, 19, 30, tzinfo=UTC)  # 2:30 PM and 14:30 in New York
    assert when[4] == datetime(2026, 12, 16, 14, 0, tzinfo=UTC)


def test_an_ambiguous_date_is_a_row_error_unless_the_date_order_is_given(
    sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    data = b"phone,day,at\n+12125550101,05/12/2026,09:00\n+12125550102,25/12/2026,09:00\n+12125550103,1/2/3/4,9\n"
    mapping = {"day": "scheduled_at.date", "at": "scheduled_at.time"}
    report = dry_run(sessions, clock, data, mapping=mapping)
    reasons = {(i["row_number"], i["column"]): i["reason"] for i in report["issues"]}
    assert reasons[(2, "day")].startswith("ambiguous date '05/12/2026'") and "date_order" in reasons[(2, "day")]
    assert reasons[(4, "day")] == "not a date (expected e.g. 2026-12-05 or 12/05/2026)"
    assert [r["row_number"] for r in report["preview"]] == [3]  # 25/12 can only be day/month
    report = dry_run(sessions, clock, data, mapping=mapping, date_order="dmy")
    first = next(r for r in report["preview"] if r["row_number"] == 2)
    assert datetime.fromisoformat(first["scheduled_at"]) == datetime(2026, 12, 5, 14, 0, tzinfo=UTC)  # New York


@pytest.mark.parametrize(
    ("value", "order", "expected"),
    [("2026-12-05", None, (2026, 12, 5)), ("12/05/2026", "mdy", (2026, 12, 5)), ("12/05/2026", "dmy", (2026, 5, 12)),
     ("5.12.26", "dmy", (2026, 12, 5)), ("12/13/2026", None, (2026, 12, 13)), ("20261205", None, (2026, 12, 5))],
)  # fmt: skip
def test_dates(value: str, order: str | None, expected: tuple[int, int, int]) -> None:
    assert parse_date(value, order).timetuple()[:3] == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("14:30", (14, 30)), ("2:30 PM", (14, 30)), ("2:30pm", (14, 30)), ("12:05 a.m.", (0, 5)), ("9 AM", (9, 0)),
     ("09:00:30", (9, 0))],
)  # fmt: skip
def test_times(value: str, expected: tuple[int, int]) -> None:
    assert (parse_time(value).hour, parse_time(value).minute) == expected


@pytest.mark.parametrize("value", ["25:00", "13:00 PM", "14", "noon", ""])
def test_not_times(value: str) -> None:
    with pytest.raises(ValueError, match="not a time of day"):
        parse_time(value)


def test_normalization_and_map_options() -> None:
    assert normalize_header(" Phone-Number ") == "phone_number"
    assert normalize_header("\ufeffAppointment  Date") == "appointment_date"
    assert normalize_header("Metadata.Customer ID") == "metadata.customer_id"
    assert parse_map_options(["Phone Number=phone", "Email=-", "a=b=c"]) == {
        "Phone Number": "phone", "Email": None, "a=b": "c"
    }  # fmt: skip
    with pytest.raises(ValueError, match="'Phone Number'"):
        parse_map_options(["Phone Number"])


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"mapping": {"Phone": "metadata."}}, "/campaign/mapping/Phone"),
        ({"mapping": {"Phone": "First Name"}}, "/campaign/mapping/Phone"),
        ({"mapping": {"A": "phone", "B": "phone"}}, "/campaign/mapping"),
        ({"mapping": {"A": "scheduled_at.date"}}, "/campaign/mapping"),
        ({"mapping": {"A": "telnyx_x"}}, "/campaign/mapping/A"),
        ({"variables": "email"}, "/campaign/variables"),
        ({"date_order": "ymd"}, "/campaign/date_order"),
        ({"text": "Hi {{ first_name"}, "/campaign/text"),
    ],
)
def test_bad_call_list_settings_are_400s_naming_the_field(
    clock: FrozenClock, body: dict[str, Any], pointer: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        settings(clock, **body)
    assert [e.pointer for e in caught.value.errors] == [pointer]


def test_a_mapped_phone_column_picks_the_delimiter_and_the_settings_round_trip() -> None:
    listed = ListSettings(mapping={"Mobil": "phone"}, variables=("name",), drop_columns=("x",), date_order="dmy")
    assert ListSettings.from_json(listed.as_json()) == listed
    layout, rows = open_call_list(io.BytesIO(b"Name;Mobil;x\nAnn;+12125550101;1\n"), settings=listed)
    assert layout.delimiter == ";" and layout.phone_column == "Mobil" and layout.sent_variables == ("name",)
    assert [r.variables for r in rows if not hasattr(r, "reason")] == [{"name": "Ann"}]

"""The New campaign form's call-list settings (mapping, variables, date order) and retry policy, and the Check
step's columns and first rows, behind TestClient on real PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.worker.ui.test_console_pages import create

EHR = (Path(__file__).resolve().parents[2] / "data" / "csv" / "ehr_appointments.csv").read_bytes()


def _cells(html: str, table: str) -> list[list[str]]:
    body = html.split(f'<table id="{table}">', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def test_check_shows_the_columns_found_what_each_maps_to_and_the_first_rows(signed_in: TestClient) -> None:
    answer = create(
        signed_in,
        EHR,
        action="check",
        mapping="First Name = patient\n\nEmail = -\n# a comment",
        variables="patient, clinic",
        date_order="mdy",
        **{"retry_policy.busy.max_retries": "3", "retry_policy.busy.retry_interval_secs": "900"},
    )
    html = answer.text  # type: ignore[attr-defined]
    assert answer.status_code == 200, html  # type: ignore[attr-defined]
    columns = {row[0]: row[1:] for row in _cells(html, "mapping")}
    assert columns["Phone Number"] == ["phone", "field of the event"]
    assert columns["First Name"] == ["patient", "variable, sent to the provider"]
    assert columns["Last Name"] == ["last_name", "variable, not sent (not in Variables sent)"]
    assert columns["Email"] == ["-", "dropped: never read"]
    assert re.search(r"Sent to the provider: <code>patient</code>, <code>clinic</code>; kept back", html)
    first = _cells(html, "preview-rows")[0]
    assert first[:2] == ["2", "+12125550101"]
    assert "patient Ana" in first[3] and "clinic Midtown Clinic" in first[3] and "Ruiz" not in first[3]
    # The form keeps what was typed, the policy's details open.
    assert "First Name = patient" in html and 'value="patient, clinic"' in html
    assert '<option value="mdy" selected>' in html
    assert 'name="retry_policy.busy.max_retries" id="f-retry_policy.busy.max_retries" value="3"' in html
    assert '<details class="wide" open>' in html


def test_bad_mapping_lines_and_policy_numbers_are_named(signed_in: TestClient) -> None:
    answer = create(
        signed_in,
        EHR,
        action="check",
        mapping="First Name = patient\nLast Name",
        **{"retry_policy.no-answer.max_retries": "many", "retry_policy.busy.max_retries": "11"},
    )
    html = answer.text  # type: ignore[attr-defined]
    assert answer.status_code == 400  # type: ignore[attr-defined]
    assert "<strong>Column mapping</strong>: line 2: &#39;Last Name&#39; is not HEADER = TARGET" in html
    assert "<strong>Retry policy, no-answer (max retries)</strong>: &#39;many&#39; is not a whole number" in html


def test_the_api_refuses_a_mapping_to_a_missing_header_named_by_its_label(signed_in: TestClient) -> None:
    answer = create(signed_in, EHR, action="check", mapping="Mobile = phone")
    html = answer.text  # type: ignore[attr-defined]
    assert answer.status_code == 400, html  # type: ignore[attr-defined]
    assert "<strong>Column mapping" in html and "Mobile" in html


TWO_VISITS = (
    b"phone,appointment_date,scheduled_at\n"
    b"+12125550101,2027-12-15,2027-12-14T18:00:00Z\n"
    b"+12125550101,2027-12-16,2027-12-15T18:00:00Z\n"
)


def test_one_reminder_per_appointment_and_the_re_upload_guard_from_the_form(signed_in: TestClient) -> None:
    """The call-list settings of issue 18 on the form: two appointments of one phone get two events with
    ``One reminder per``; the same file again is refused naming the campaign, unless the box is ticked."""
    first = create(signed_in, TWO_VISITS, dedupe_key="phone, appointment_date", late_policy="skip")
    assert first.status_code == 303, first.text  # type: ignore[attr-defined]
    page = first.headers["location"].split("?", 1)[0]  # type: ignore[attr-defined]
    live = signed_in.get(f"{page}/live.json", params={"events": "1"}).json()
    assert live["events_total"] == 2  # both appointments of the one phone
    again = create(signed_in, TWO_VISITS, dedupe_key="phone, appointment_date")
    html = again.text  # type: ignore[attr-defined]
    assert again.status_code == 400 and "<strong>Allow a duplicate upload</strong>: " in html  # type: ignore[attr-defined]
    assert "already" in html
    assert 'name="allow_duplicate_upload"' in html
    allowed = create(signed_in, TWO_VISITS, dedupe_key="phone, appointment_date", allow_duplicate_upload="true")
    assert allowed.status_code == 303, allowed.text  # type: ignore[attr-defined]

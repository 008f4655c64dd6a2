"""The console behind TestClient on real PostgreSQL: sign-in, CSRF, the pages and their forms, page sizes."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from campaigns.models import Campaign, Suppression
from worker.runtime import Runtime

TOKEN = "console-test-token"
DATA = Path(__file__).resolve().parents[2] / "data" / "campaigns"
FORM = {
    "name": "Renewals",
    "assistant_id": "a1",
    "telnyx_agent_target": "+15553456789",
    "telnyx_conversation_channel": "phone_call",
    "max_retries_client_errors": "1",
    "retry_interval_secs": "600",
    "ruleset": "none",
    "default_region": "US",
}
PAGES = ["/ui", "/ui/campaigns/new", "/ui/do-not-contact", "/ui/recurring"]


def csrf_of(html: str) -> str:
    """The page's CSRF token; every form of the page carries the same one."""
    found = set(re.findall(r'name="csrf_token" value="([^"]*)"', html))
    assert len(found) == 1 and "" not in found, f"the page's forms carry {found}"
    return found.pop()


def sign_in(client: TestClient, token: str = TOKEN) -> str:
    page = client.get("/ui/sign-in")
    answer = client.post("/ui/sign-in", data={"csrf_token": csrf_of(page.text), "token": token})
    assert answer.status_code == 303
    return str(answer.headers["location"])


def page_csrf(client: TestClient, path: str = "/ui") -> str:
    return csrf_of(client.get(path).text)


def create(client: TestClient, content: bytes, action: str = "create", **fields: str) -> object:
    return client.post(
        "/ui/campaigns/new",
        data={**FORM, **fields, "action": action, "csrf_token": page_csrf(client, "/ui/campaigns/new")},
        files={"file": ("list.csv", content, "text/csv")},
    )


def test_root_redirects_to_the_console(browser: TestClient) -> None:
    answer = browser.get("/")
    assert answer.status_code == 307 and answer.headers["location"] == "/ui"


@pytest.mark.parametrize("path", [*PAGES, "/ui/campaigns/00000000-0000-0000-0000-000000000000"])
def test_a_signed_out_browser_is_sent_to_sign_in(browser: TestClient, path: str) -> None:
    answer = browser.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/sign-in?next=")


def test_sign_in_page_has_the_labelled_field_and_button(browser: TestClient) -> None:
    html = browser.get("/ui/sign-in").text
    assert '<label for="token">API token</label>' in html
    assert ">Sign in</button>" in html


def test_the_wrong_token_does_not_sign_in(browser: TestClient) -> None:
    assert sign_in(browser, "not-the-token") == "/ui/sign-in?error=wrong"
    assert browser.get("/ui").status_code == 303
    assert "That is not the API token" in browser.get("/ui/sign-in?error=wrong").text


def test_the_session_cookie_is_signed_httponly_and_strict(browser: TestClient) -> None:
    page = browser.get("/ui/sign-in")
    answer = browser.post("/ui/sign-in", data={"csrf_token": csrf_of(page.text), "token": TOKEN})
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and "campaigns_console=" in v)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert browser.get("/ui").status_code == 200
    # A cookie whose signature does not match is no session.
    value = browser.cookies.get("campaigns_console")
    assert value
    browser.cookies.set("campaigns_console", value[:-2] + ("AA" if not value.endswith("AA") else "BB"), path="/ui")
    assert browser.get("/ui").status_code == 303


def test_changing_the_api_token_signs_everyone_out(signed_in: TestClient, app_runtime: Runtime) -> None:
    app_runtime.settings = app_runtime.settings.model_copy(update={"api_token": "rotated"})
    assert signed_in.get("/ui").status_code == 303


def test_sign_in_without_the_form_token_is_refused(browser: TestClient) -> None:
    answer = browser.post("/ui/sign-in", data={"token": TOKEN})
    assert answer.status_code == 403
    assert browser.get("/ui").status_code == 303


def test_a_form_without_its_csrf_token_is_refused(signed_in: TestClient, sessions: object) -> None:
    for data in ({}, {"csrf_token": "forged"}):
        answer = signed_in.post("/ui/do-not-contact/add", data={**data, "phone_number": "+12125550199"})
        assert answer.status_code == 403, data
        assert "security token" in answer.text
    with signed_in.app.state.runtime.sessions() as s:  # type: ignore[attr-defined]
        assert s.scalar(select(func.count()).select_from(Suppression)) == 0


def test_sign_out_ends_the_session(signed_in: TestClient) -> None:
    answer = signed_in.post("/ui/sign-out", data={"csrf_token": page_csrf(signed_in)})
    assert answer.status_code == 303
    assert signed_in.get("/ui").status_code == 303


def test_empty_states_say_what_to_do(signed_in: TestClient) -> None:
    assert "New campaign" in signed_in.get("/ui").text and "No campaigns yet" in signed_in.get("/ui").text
    assert "The list is empty" in signed_in.get("/ui/do-not-contact").text
    assert "No recurring definitions" in signed_in.get("/ui/recurring").text


def test_check_reports_every_rejected_row_and_creates_nothing(signed_in: TestClient, app_runtime: Runtime) -> None:
    answer = create(signed_in, (DATA / "mixed.csv").read_bytes(), action="check")
    assert answer.status_code == 200, answer.text  # type: ignore[attr-defined]
    html = answer.text  # type: ignore[attr-defined]
    for kind, n in (("accepted", 4), ("rejected", 2), ("duplicate", 1), ("suppressed", 0)):
        assert f'data-report="{kind}">{n}<' in html, kind
    rows = re.findall(r'<tr class="k-(\w+)"><td>(\d+)</td><td>(\w+)</td>', html)
    assert rows == [("duplicate", "4", "phone"), ("rejected", "5", "phone"), ("rejected", "7", "timezone")]
    assert "not-a-number" in html  # the rejected row, with its value
    assert 'value="Renewals"' in html  # the form keeps what was typed
    with app_runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 0


def test_bad_settings_are_named_by_their_label(signed_in: TestClient) -> None:
    answer = create(signed_in, b"phone\n+12125550101\n", telnyx_agent_target="nobody", retry_interval_secs="soon")
    assert answer.status_code == 400  # type: ignore[attr-defined]
    html = answer.text  # type: ignore[attr-defined]
    assert "<strong>Retry interval (seconds)</strong>: &#39;soon&#39; is not a whole number" in html
    answer = create(signed_in, b"phone\n+12125550101\n", telnyx_agent_target="nobody")
    assert "<strong>From number</strong>" in answer.text  # type: ignore[attr-defined]


def test_create_pause_resume_cancel_and_downloads(signed_in: TestClient, app_runtime: Runtime) -> None:
    answer = create(signed_in, (DATA / "mixed.csv").read_bytes())
    assert answer.status_code == 303, answer.text  # type: ignore[attr-defined]
    url = answer.headers["location"].split("?")[0]  # type: ignore[attr-defined]
    campaign_id = url.rsplit("/", 1)[1]
    page = signed_in.get(url)
    assert page.status_code == 200 and "Renewals" in page.text
    assert 'data-count="pending">4<' in page.text
    for label in (">Pause<", ">Cancel<", ">Download results<", ">Download errors<"):
        assert label in page.text

    live = signed_in.get(f"{url}/live.json").json()
    assert live["counts"]["pending"] == 4 and live["progress"] == {"total": 4, "terminal": 0}

    assert signed_in.post(f"{url}/pause", data={"csrf_token": csrf_of(page.text)}).status_code == 303
    page = signed_in.get(url)
    assert ">Resume<" in page.text and ">Pause<" not in page.text
    again = signed_in.post(f"{url}/pause", data={"csrf_token": csrf_of(page.text)})
    assert "Not done: campaign is paused" in signed_in.get(again.headers["location"]).text
    signed_in.post(f"{url}/resume", data={"csrf_token": csrf_of(page.text)})
    with app_runtime.sessions() as s:
        assert s.get_one(Campaign, uuid.UUID(campaign_id)).status == "active"

    api = {"Authorization": f"Bearer {TOKEN}"}
    results = signed_in.get(f"{url}/results.csv")
    assert (
        results.status_code == 200
        and results.text == signed_in.get(f"/v1/campaigns/{campaign_id}/export.csv", headers=api).text
    )
    errors = signed_in.get(f"{url}/errors.csv")
    assert "not-a-number" in errors.text

    events = signed_in.get(url, params={"number": "(212) 555-0101"})
    assert events.text.count("/events/") == 1
    assert "is not a phone number" in signed_in.get(url, params={"number": "nope"}).text
    event_link = re.search(r'href="(/ui/campaigns/[^"]+/events/[^"]+)"', events.text)
    assert event_link
    event = signed_in.get(event_link.group(1))
    assert event.status_code == 200 and "Calling window now" in event.text and "No attempt yet" in event.text

    page = signed_in.get(url)
    assert signed_in.post(f"{url}/cancel", data={"csrf_token": csrf_of(page.text)}).status_code == 303
    assert signed_in.get(f"{url}/live.json").json()["counts"]["canceled"] == 4


def test_an_unknown_campaign_is_a_404_page(signed_in: TestClient) -> None:
    answer = signed_in.get("/ui/campaigns/not-an-id")
    assert answer.status_code == 404 and "There is no campaign not-an-id" in answer.text


def test_do_not_contact_add_search_remove(signed_in: TestClient) -> None:
    csrf = page_csrf(signed_in, "/ui/do-not-contact")
    answer = signed_in.post(
        "/ui/do-not-contact/add", data={"csrf_token": csrf, "phone_number": "(212) 555-0199", "note": "asked"}
    )
    assert answer.status_code == 303
    page = signed_in.get(answer.headers["location"])
    assert "+12125550199 is on the do-not-contact list." in page.text and "asked" in page.text
    assert "manual" in page.text  # where the entry came from
    assert "+12125550199" in signed_in.get("/ui/do-not-contact", params={"number": "212-555-0199"}).text
    bad = signed_in.post("/ui/do-not-contact/add", data={"csrf_token": csrf, "phone_number": "nope"})
    assert "Not added" in signed_in.get(bad.headers["location"]).text
    imported = signed_in.post(
        "/ui/do-not-contact/import",
        data={"csrf_token": csrf, "note": "registry"},
        files={"file": ("dnc.txt", b"+12125550198\n# comment\n", "text/plain")},
    )
    assert "Imported" in signed_in.get(imported.headers["location"]).text
    removed = signed_in.post("/ui/do-not-contact/remove", data={"csrf_token": csrf, "phone_number": "+12125550199"})
    page = signed_in.get(removed.headers["location"])
    assert "was removed" in page.text
    assert "is not on the list" in signed_in.get("/ui/do-not-contact", params={"number": "+12125550199"}).text


def test_pages_stay_under_100_kb(signed_in: TestClient) -> None:
    answer = create(signed_in, b"phone\n" + b"".join(b"+1212555%04d\n" % i for i in range(300)))
    url = answer.headers["location"].split("?")[0]  # type: ignore[attr-defined]
    for path in [*PAGES, url, "/ui/static/console.css", "/ui/static/console.js"]:
        body = signed_in.get(path).content
        assert len(body) < 100_000, (path, len(body))


@pytest.mark.parametrize(
    ("asked", "lands"),
    [("/ui/do-not-contact", "/ui/do-not-contact"), ("//evil.example/ui", "/ui"), ("/ui/\\evil", "/ui"), ("", "/ui")],
)
def test_sign_in_returns_to_the_console_page_asked_for_only(browser: TestClient, asked: str, lands: str) -> None:
    page = browser.get("/ui/sign-in", params={"next": asked})
    answer = browser.post("/ui/sign-in", data={"csrf_token": csrf_of(page.text), "token": TOKEN, "next": asked})
    assert answer.headers["location"] == lands


def test_pages_are_not_cached_nor_framed(signed_in: TestClient) -> None:
    for path in ["/ui/sign-in", *PAGES]:
        headers = signed_in.get(path).headers
        assert headers["cache-control"] == "no-store", path
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]

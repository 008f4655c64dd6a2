"""The console in a real browser (Playwright driving Debian's Chromium) against a real stack (``campaigns up`` +
simulator, clock warped 600x): sign in, check the bundled sample list and see its rejected row, create the
campaign, pause and resume it, watch the counters reach all-terminal without a reload, download the results and
compare them with ``export.csv``, list a number as do-not-contact and see the next check skip it, run a recurring
definition now; a signed-out browser is sent to sign in, and a form posted without its CSRF token is refused.

No browser is downloaded: ``/usr/bin/chromium`` is Debian's (``.ci/run`` installs it). Without it the test skips
locally and fails under ``CI=true``. ``CAMPAIGNS_CONSOLE_SCREENSHOTS=docs/console`` writes the README's screenshots.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI
from tests.e2e.stack import TOKEN, Stack, healthz, poll, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SAMPLE = resources.files("campaigns").joinpath("data/sample_contacts.csv").read_bytes()
EHR = Path(__file__).resolve().parents[1] / "data" / "csv" / "ehr_appointments.csv"  # spaced headers, a BOM
LISTED = "+12125550001"  # the sample's first row
DEFINITION = """name = "nightly"
cron = "0 3 1 1 *"
timezone = "America/New_York"
source = "lists/*.csv"
due = "appointment_at - 24h"

[campaign]
assistant_id = "assistant-console"
telnyx_agent_target = "+15553456789"
ruleset = "none"
"""


def _browser() -> Any:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium); the console's browser tests need it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    return sync_playwright


@pytest.fixture
def stack(database_url: str, redis_url: str, tmp_path: Path, sessions: object) -> Iterator[tuple[Stack, Path]]:
    recurring = tmp_path / "recurring"
    (recurring / "lists").mkdir(parents=True)
    env = {
        "CAMPAIGNS_TIME_WARP": "600",
        "CAMPAIGNS_TIME_START": "2026-11-24T15:00:00Z",
        "CAMPAIGNS_MAX_DIALS_PER_SECOND": "1000",
        "CAMPAIGNS_RECURRING_DIR": str(recurring),
        "CAMPAIGNS_RECURRING_TICK_SECS": "0.5",
    }
    with running_stack(database_url, redis_url, tmp_path, env=env) as running:
        yield running, recurring


def _shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("CAMPAIGNS_CONSOLE_SCREENSHOTS") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


def _fill_campaign(page: Any, csv: Path, name: str, start_at: str = "") -> None:
    page.goto("/ui/campaigns/new")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Assistant ID").fill("assistant-console")
    page.get_by_label("From number").fill("+15553456789")
    page.get_by_label("Ruleset").fill("none")
    page.get_by_label("Start time").fill(start_at)
    page.get_by_label("Call list").set_input_files(str(csv))


def test_the_console_runs_a_campaign_end_to_end(stack: tuple[Stack, Path], tmp_path: Path) -> None:
    running, recurring = stack
    sync_playwright = _browser()
    api = httpx.Client(base_url=running.api, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    app_now = datetime.fromisoformat(poll(lambda: healthz(api), timeout=30)["time"])
    sample = tmp_path / "sample_contacts.csv"
    sample.write_bytes(SAMPLE)
    shots = _shots(tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(base_url=running.api, accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(15_000)
            try:
                _run(page, context, api, running, recurring, sample, app_now, shots, tmp_path)
            except Exception:
                page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
                print(running.tail(8000))
                raise
            # A browser that never signed in is sent to the sign-in page.
            stranger = browser.new_context(base_url=running.api).new_page()
            stranger.goto("/ui/campaigns/new")
            assert re.search(r"/ui/sign-in\?next=", stranger.url), stranger.url
        finally:
            browser.close()


def _run(
    page: Any,
    context: Any,
    api: httpx.Client,
    running: Stack,
    recurring: Path,
    sample: Path,
    app_now: datetime,
    shots: Path,
    tmp_path: Path,
) -> None:
    page.goto("/")
    assert "/ui/sign-in" in page.url
    page.screenshot(path=str(shots / "sign-in.png"))
    page.get_by_label("API token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_text("That is not the API token").is_visible()
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui")
    assert page.get_by_text("No campaigns yet").is_visible()

    # Check: the counts and every rejected row, nothing created; the form keeps its values.
    _fill_campaign(page, sample, "Sample reminders")
    page.get_by_role("button", name="Check").click()
    report = page.locator("#report")
    assert report.locator('[data-report="rejected"]').inner_text() != "0"
    rejected = page.locator("#issues tr", has_text="not-a-number")
    assert rejected.count() == 1 and "phone" in rejected.inner_text()
    assert page.get_by_label("Name", exact=True).input_value() == "Sample reminders"
    page.locator("#report").screenshot(path=str(shots / "check.png"))
    assert api.get("/v1/campaigns").json()["meta"]["total_results"] == 0

    # Create, starting two app hours from now (12 real seconds: time to pause and resume before the calls on a
    # loaded machine), "now" read again here: signing in and checking took real seconds, app hours at 600x.
    now = datetime.fromisoformat(healthz(api)["time"])
    start = (now + timedelta(hours=2)).isoformat()
    page.get_by_label("Call list").set_input_files(str(sample))
    page.get_by_label("Start time").fill(start)
    page.get_by_role("button", name="Create campaign").click()
    page.wait_for_url(re.compile(r"/ui/campaigns/[0-9a-f-]{36}"))
    campaign_id = page.url.split("/ui/campaigns/")[1].split("?")[0]
    page.get_by_role("button", name="Pause").click()
    assert page.locator('[data-live="status"]').inner_text() == "paused"
    assert api.get(f"/v1/campaigns/{campaign_id}").json()["status"] == "paused"
    page.get_by_role("button", name="Resume").click()
    assert page.locator('[data-live="status"]').inner_text() == "active"

    # The counters reach all-terminal while the page stays as it was loaded (no reload).
    page.evaluate("window.__notReloaded = true")
    assert page.get_by_text("No attempt has been sent yet.").is_visible()
    assert "scheduled for later" in page.locator("#waiting").inner_text()
    total = page.locator('[data-live="total"]').inner_text()
    assert int(total.replace(",", "")) > 100
    page.wait_for_function(
        """() => document.querySelector('[data-live="terminal"]').textContent ===
                 document.querySelector('[data-live="total"]').textContent
              && document.querySelector('[data-count="completed"]').textContent !== "0" """,
        timeout=120_000,
    )
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator('[data-count="pending"]').inner_text() == "0"
    # The chart, the waiting list and the events table came live too.
    page.wait_for_function("() => !document.querySelector('#events .s-pending')")
    assert page.locator("#attempts-chart rect[data-outcome]").count() >= 1
    assert page.locator("#charts .legend", has_text="answered").count() == 1
    assert page.get_by_text("Nothing is waiting.").is_visible()
    assert page.locator("#by-outcome [data-outcome]").count() >= 1
    page.screenshot(path=str(shots / "campaign.png"), full_page=True)

    # Download results: the API's export.csv, byte for byte.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download results").click()
    saved = tmp_path / "results.csv"
    download.value.save_as(saved)
    assert saved.read_bytes() == api.get(f"/v1/campaigns/{campaign_id}/export.csv").content
    with page.expect_download() as download:
        page.get_by_role("link", name="Download errors").click()
    download.value.save_as(tmp_path / "errors.csv")
    assert "not-a-number" in (tmp_path / "errors.csv").read_text()

    # An event's page: its attempts, the window verdict now.
    page.get_by_label("Number").fill(LISTED)
    page.get_by_role("button", name="Filter").click()
    page.locator("#events a", has_text=LISTED).click()
    assert page.locator("#attempts tbody tr").count() >= 1
    assert page.get_by_text("ruleset none has no calling window").is_visible()
    page.screenshot(path=str(shots / "event.png"), full_page=True)

    # Do-not-contact: add a number, and the next check of the sample skips it.
    page.get_by_role("link", name="Do-not-contact").click()
    page.get_by_label("Phone number").fill(LISTED)
    page.get_by_label("Note", exact=True).fill("asked not to be called")
    page.get_by_role("button", name="Add", exact=True).click()
    assert page.locator("#dnc tr", has_text=LISTED).count() == 1
    page.screenshot(path=str(shots / "do-not-contact.png"), full_page=True)
    _fill_campaign(page, sample, "Second round")
    page.get_by_role("button", name="Check").click()
    assert page.locator('[data-report="suppressed"]').inner_text() == "1"

    # A form posted without its CSRF token is refused, even with the session cookie.
    refused = context.request.post(f"{running.api}/ui/do-not-contact/remove", form={"phone_number": LISTED})
    assert refused.status == 403
    page.goto("/ui/do-not-contact")
    page.once("dialog", lambda dialog: dialog.accept())  # the confirmation
    page.get_by_role("button", name=f"Remove {LISTED}").click()
    assert page.get_by_text(f"{LISTED} was removed").is_visible()
    assert api.get(f"/v1/suppressions/{LISTED}").status_code == 404

    # Recurring: the definition appears once beat syncs the directory; Run now runs it.
    due = (app_now + timedelta(days=3)).strftime("%Y-%m-%d %H:%M")
    (recurring / "lists" / "day-1.csv").write_text(f"phone,appointment_at\n+13125550199,{due}\n")
    (recurring / "nightly.toml").write_text(DEFINITION)
    poll(lambda: api.get("/v1/recurring/nightly").status_code == 200 or None, timeout=60)
    page.goto("/ui/recurring")
    page.get_by_role("button", name="Run nightly now").click()
    assert page.get_by_text("Ran:").is_visible()
    assert page.locator("#runs tbody tr").count() >= 1
    page.screenshot(path=str(shots / "recurring.png"), full_page=True)

    # The campaigns list: newest first, with progress.
    page.goto("/ui")
    row = page.locator("tbody tr", has_text="Sample reminders")
    assert "completed" in row.inner_text()
    page.screenshot(path=str(shots / "campaigns.png"), full_page=True)
    _check_a_mapping(page, shots)


def _check_a_mapping(page: Any, shots: Path) -> None:
    """An SMS list with spaced headers: the browser lists its columns, mapping one renames the template's variable
    (the live preview follows), and Check shows the mapping table and the first rows with their message."""
    _fill_campaign(page, EHR, "Clinic texts")
    page.get_by_label("Channel").select_option("sms_chat")
    page.get_by_label("Message template").fill("Hi {{patient}}, see you at {{clinic}}")
    assert page.locator("#columns-found tbody tr").count() == 7
    assert page.locator("#preview").inner_text() == "Hi {{patient}}, see you at Midtown Clinic"
    page.get_by_label("Map First Name to").fill("patient")
    assert page.get_by_label("Column mapping").input_value() == "First Name = patient"
    assert page.locator("#preview").inner_text() == "Hi Ana, see you at Midtown Clinic"
    page.get_by_label("Variables sent").fill("patient")
    page.get_by_role("button", name="Check").click()
    mapped = page.locator("#mapping tr", has_text="First Name")
    assert "patient" in mapped.inner_text() and "sent to the provider" in mapped.inner_text()
    assert "not sent" in page.locator("#mapping tr", has_text="Clinic").inner_text()
    first = page.locator("#preview-rows tbody tr").first
    assert "+12125550101" in first.inner_text() and "Hi Ana, see you at Midtown Clinic" in first.inner_text()
    page.locator("#report").screenshot(path=str(shots / "check-mapping.png"))

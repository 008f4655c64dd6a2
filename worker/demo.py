"""``campaigns demo``: a whole campaign on embedded servers and the simulator, in about a minute.

The clock is warped so that the demo starts at 07:55 in New York, just before calling hours open, and the
day rolls west: each time zone's recipients are called when their own 8 a.m. arrives. It holds at 07:55 until
every component is ready and the campaign is imported, so the first East-coast calls go out at 08:00.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.table import Table

from campaigns.states import CampaignStatus, Channel, EventStatus
from campaigns.telephony.signatures import private_key_b64, public_key_b64
from worker.embedded import EmbeddedServers, free_port, wait_for_port

EASTERN = ZoneInfo("America/New_York")
TOKEN = "demo-token"  # noqa: S105 (a throwaway token for the demo's loopback api)


def _start_instant() -> datetime:
    """Tomorrow at 07:55 in New York (a weekday-agnostic morning just before the window opens)."""
    tomorrow = datetime.now(EASTERN).date() + timedelta(days=1)
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day, 7, 55, tzinfo=EASTERN)


def run_demo(
    *,
    warp: float = 360.0,
    timeout: float = 240.0,
    stay: bool = False,
    results: Path | None = Path("campaigns-demo-results.csv"),
    sample: bytes | None = None,
    console: Console | None = None,
    until_stopped: Callable[[str], None] | None = None,
) -> int:
    """Run the demo; 0 once every event is terminal (with ``stay``: once stopped after that).

    The clock holds at 07:55 New York time while the stack starts (``CAMPAIGNS_TIME_WARP_ORIGIN_FILE``) and the
    campaign is imported, then runs from exactly 07:55 once the api, the scheduler and the worker answer.
    ``results`` receives the campaign's ``export.csv`` at the end (the api is gone once the demo exits).
    ``until_stopped(console_url)`` is what ``stay`` waits on (default: Ctrl-C).
    """
    console = console or Console()
    sample = (
        sample if sample is not None else resources.files("campaigns").joinpath("data/sample_contacts.csv").read_bytes()
    )
    key = Ed25519PrivateKey.generate()
    start = _start_instant()
    console.print("[bold]campaigns demo[/bold]: starting PostgreSQL, Redis, the Telnyx simulator and the components")
    with EmbeddedServers() as servers, tempfile.TemporaryDirectory(prefix="campaigns-demo-") as tmp:
        sim_port, api_port, scheduler_port = free_port(), free_port(), free_port()
        origin_file = Path(tmp) / "clock-origin"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
        env.update(
            {
                "CAMPAIGNS_DATABASE_URL": servers.database_url,
                "CAMPAIGNS_REDIS_URL": servers.redis_url,
                "CAMPAIGNS_API_TOKEN": TOKEN,
                "CAMPAIGNS_SIMULATOR_PRIVATE_KEY": private_key_b64(key),
                "CAMPAIGNS_TELNYX_PUBLIC_KEY": public_key_b64(key),
                "CAMPAIGNS_TELNYX_API_KEY": "KEY_DEMO",
                "CAMPAIGNS_TELNYX_BASE_URL": f"http://127.0.0.1:{sim_port}/v2",
                "CAMPAIGNS_TELNYX_TEXML_APP_ID": "demo-texml-app",
                "CAMPAIGNS_PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
                "CAMPAIGNS_TIME_WARP": str(warp),
                "CAMPAIGNS_TIME_START": start.isoformat(),
                "CAMPAIGNS_TIME_WARP_ORIGIN_FILE": str(origin_file),
                "CAMPAIGNS_RECONCILE_INTERVAL_SECS": "5",
            }
        )
        from worker.migrate import upgrade

        upgrade(servers.database_url)
        logs = Path(tmp)
        children = [
            _spawn(["simulator", "--port", str(sim_port), "--mix", "completed=0.55,busy=0.25,no-answer=0.2",
                    "--seed", "7", "--ring-delay", "0.3", "--talk-delay", "0.6"], env, logs / "simulator.log"),
            _spawn(["api", "--port", str(api_port)], env, logs / "api.log"),
            _spawn(["scheduler", "--metrics-port", str(scheduler_port)], env, logs / "scheduler.log"),
            _spawn(["worker", "--concurrency", "16"], env, logs / "worker.log"),
            _spawn(["beat", "--schedule", str(logs / "beat")], env, logs / "beat.log"),
        ]  # fmt: skip
        api_url = f"http://127.0.0.1:{api_port}"
        console_url = f"{api_url}/ui"
        try:
            wait_for_port(sim_port, 30)
            wait_for_port(api_port, 60)
            console.print(f"console: {console_url}  (sign in with the API token [bold]{TOKEN}[/bold])")
            _wait_until_ready(api_url, scheduler_port, servers.redis_url, READY_TIMEOUT_SECS)
            api = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            campaign = _import(console, api, sample, start)
            _start_clock(origin_file)
            console.print(f"clock starts at {start:%H:%M %Z} and runs {warp:g}x faster")
            code = _drive(console, api, campaign["id"], timeout, results)
        except Exception as exc:
            console.print(f"[red]demo failed: {exc}[/red]")
            for log in sorted(logs.glob("*.log")):
                console.print(f"--- {log.name} ---\n{log.read_text()[-2000:]}")
            return 1
        else:
            if code == 0 and stay:
                console.print(f"still serving: {console_url} (API token {TOKEN}); Ctrl-C stops everything")
                (until_stopped or _wait_for_ctrl_c)(console_url)
            return code
        finally:
            for child in children:
                child.terminate()
            for child in children:
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    child.kill()


READY_TIMEOUT_SECS = 90.0


def _wait_until_ready(api_url: str, scheduler_port: int, redis_url: str, timeout: float) -> None:
    """Until the api and the scheduler answer their ``/healthz`` and a Celery worker answers a ping."""
    from celery import Celery

    deadline = time.monotonic() + timeout
    pending = {"api", "scheduler", "worker"}
    control = Celery(broker=redis_url).control
    while pending and time.monotonic() < deadline:
        for name, url in (("api", f"{api_url}/healthz"), ("scheduler", f"http://127.0.0.1:{scheduler_port}/healthz")):
            if name in pending:
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
        if "worker" in pending and control.ping(timeout=0.5):
            pending.discard("worker")
        if pending:
            time.sleep(0.1)
    if pending:
        raise TimeoutError(f"not ready after {timeout:g}s: {', '.join(sorted(pending))}")


def _start_clock(origin_file: Path) -> None:
    """Every component's clock starts now (written whole, then renamed: no process reads half an instant)."""
    partial = origin_file.with_suffix(".partial")
    partial.write_text(datetime.now(UTC).isoformat())
    os.replace(partial, origin_file)


def _wait_for_ctrl_c(_console_url: str) -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *args], env=env, stdout=handle, stderr=subprocess.STDOUT
    )


def _import(console: Console, api: httpx.Client, sample: bytes, start: datetime) -> dict[str, Any]:
    settings = {
        "name": "Appointment reminders (demo)",
        "assistant_id": "assistant-demo",
        "telnyx_conversation_channel": Channel.PHONE_CALL,
        "telnyx_agent_target": "+15553456789",
        "max_retries_client_errors": 2,
        "retry_interval_secs": 900,
        "start_at": start.isoformat(),
        "default_region": "US",
        "ruleset": "us",
        "max_concurrent_calls": 20,
    }
    response = api.post(
        "/v1/campaigns",
        files={"file": ("sample_contacts.csv", sample, "text/csv")},
        data={"campaign": json.dumps(settings)},
    )
    response.raise_for_status()
    campaign: dict[str, Any] = response.json()
    imported = campaign["import"]
    console.print(
        f"imported {imported['rows_accepted']} of {imported['rows_total']} rows "
        f"({imported['rows_rejected']} rejected, {imported['rows_duplicate']} duplicate)"
    )
    return campaign


def _drive(console: Console, api: httpx.Client, campaign_id: str, timeout: float, results: Path | None) -> int:
    url = f"/v1/campaigns/{campaign_id}"
    deadline = time.monotonic() + timeout
    last_line = ""
    while time.monotonic() < deadline:
        body = api.get(url).json()
        app_now = datetime.fromisoformat(api.get("/healthz").json()["time"])
        counts = body["counts"]
        line = (
            f"{app_now.astimezone(EASTERN):%H:%M} ET  "
            f"pending {counts[EventStatus.PENDING]:>3}  in progress {counts[EventStatus.IN_PROGRESS]:>3}  "
            f"completed {counts[EventStatus.COMPLETED]:>3}  failed {counts[EventStatus.FAILED]:>3}  "
            f"attempts {sum(body['attempts'].values()):>3}"
        )
        if line[10:] != last_line[10:]:
            console.print(line)
            last_line = line
        if body["status"] == CampaignStatus.COMPLETED:
            _summary(console, api, body)
            if results is not None:
                results.write_bytes(api.get(f"{url}/export.csv").raise_for_status().content)
                console.print(
                    f"[green]every event is terminal[/green]; results (the campaign's export.csv) saved to {results}"
                )
            else:
                console.print("[green]every event is terminal[/green]")
            return 0
        time.sleep(0.5)
    console.print("[red]the campaign did not finish in time[/red]")
    return 1


def _summary(console: Console, api: httpx.Client, body: dict[str, Any]) -> None:
    by_status = Table(title="events by status")
    by_status.add_column("status")
    by_status.add_column("events", justify="right")
    for status, n in body["counts"].items():
        by_status.add_row(status, str(n))
    attempts = Table(title="attempts by outcome")
    attempts.add_column("call status")
    attempts.add_column("attempts", justify="right")
    for status, n in sorted(body["attempts"].items()):
        attempts.add_row(status, str(n))
    rejected = Table(title="rows not imported")
    for column in ("row", "column", "value", "reason"):
        rejected.add_column(column)
    errors = api.get(f"/v1/campaigns/{body['id']}/errors.csv").text
    for row in list(csv.DictReader(io.StringIO(errors))):
        rejected.add_row(row["row_number"], row["column"], row["value"], row["reason"])
    console.print(by_status, attempts, rejected)

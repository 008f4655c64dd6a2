"""``campaigns demo``: a whole campaign on embedded servers and the simulator, in about a minute.

The clock is warped so that the demo starts at 07:55 in New York, just before calling hours open, and the
day rolls west: each time zone's recipients are called when their own 8 a.m. arrives.
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


def run_demo(*, warp: float = 360.0, timeout: float = 240.0) -> int:
    console = Console()
    sample = resources.files("campaigns").joinpath("data/sample_contacts.csv").read_bytes()
    key = Ed25519PrivateKey.generate()
    start = _start_instant()
    console.print(f"[bold]campaigns demo[/bold]: clock starts at {start:%H:%M %Z} and runs {warp:g}x faster")
    with EmbeddedServers() as servers, tempfile.TemporaryDirectory(prefix="campaigns-demo-") as tmp:
        sim_port, api_port = free_port(), free_port()
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
                "CAMPAIGNS_TIME_WARP_ORIGIN": datetime.now(UTC).isoformat(),
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
            _spawn(["scheduler"], env, logs / "scheduler.log"),
            _spawn(["worker", "--concurrency", "16"], env, logs / "worker.log"),
            _spawn(["beat", "--schedule", str(logs / "beat")], env, logs / "beat.log"),
        ]  # fmt: skip
        try:
            wait_for_port(sim_port, 30)
            wait_for_port(api_port, 60)
            return _drive(console, f"http://127.0.0.1:{api_port}", sample, timeout)
        except Exception as exc:
            console.print(f"[red]demo failed: {exc}[/red]")
            for log in sorted(logs.glob("*.log")):
                console.print(f"--- {log.name} ---\n{log.read_text()[-2000:]}")
            return 1
        finally:
            for child in children:
                child.terminate()
            for child in children:
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    child.kill()


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *args], env=env, stdout=handle, stderr=subprocess.STDOUT
    )


def _drive(console: Console, api_url: str, sample: bytes, timeout: float) -> int:
    api = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    now = datetime.fromisoformat(api.get("/healthz").json()["time"])
    settings = {
        "name": "Appointment reminders (demo)",
        "assistant_id": "assistant-demo",
        "telnyx_conversation_channel": Channel.PHONE_CALL,
        "telnyx_agent_target": "+15553456789",
        "max_retries_client_errors": 2,
        "retry_interval_secs": 900,
        "start_at": now.isoformat(),
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
    campaign = response.json()
    imported = campaign["import"]
    console.print(
        f"imported {imported['rows_accepted']} of {imported['rows_total']} rows "
        f"({imported['rows_rejected']} rejected, {imported['rows_duplicate']} duplicate)"
    )
    url = f"/v1/campaigns/{campaign['id']}"
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
    console.print(f"[green]every event is terminal[/green]; results: GET /v1/campaigns/{body['id']}/export.csv")

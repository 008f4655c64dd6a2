"""``campaigns demo`` end to end on its own embedded servers (a three-row list, so it takes seconds)."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, time
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from worker.cli import app
from worker.demo import EASTERN, TOKEN, run_demo

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
SAMPLE = b"phone,first_name,timezone\n+12125550001,Ben,\n+16175550002,Sam,\n+13055550004,Chloe,America/New_York\n"


def test_the_clock_starts_at_0755_once_ready_the_console_is_shown_and_stay_keeps_serving(tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    results = tmp_path / "results.csv"
    seen_while_staying: list[int] = []

    def until_stopped(console_url: str) -> None:
        # After the end, with --stay: the console still answers and the demo's token signs in.
        with httpx.Client(timeout=10) as browser:
            sign_in = browser.get(console_url, follow_redirects=True)
            seen_while_staying.append(sign_in.status_code)
            assert "API token" in sign_in.text
            api = browser.get(
                console_url.removesuffix("/ui") + "/v1/campaigns", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            seen_while_staying.append(api.status_code)

    code = run_demo(sample=SAMPLE, results=results, console=console, stay=True, until_stopped=until_stopped)
    output = console.export_text()
    assert code == 0, output
    assert re.search(rf"^console: http://127\.0\.0\.1:\d+/ui  \(sign in with the API token {TOKEN}\)$", output, re.M)
    assert "clock starts at 07:55" in output
    lines = output.splitlines()
    assert lines.index(next(line for line in lines if line.startswith("console: "))) < lines.index(
        next(line for line in lines if line.startswith("imported "))
    )
    # The first progress line is read just after the clock started: the start-up ate no warped minutes.
    first_progress = next(line for line in lines if " ET  pending" in line)
    assert first_progress.startswith(("07:55", "07:56", "07:57")), first_progress
    rows = list(csv.DictReader(io.StringIO(results.read_text())))
    assert {row["status"] for row in rows} <= {"completed", "failed"} and len(rows) == 3
    first_call = min(datetime.fromisoformat(row["first_attempt_at"]) for row in rows).astimezone(EASTERN)
    # Calls go out when the window opens at 08:00, within a few warped minutes (one real second is six).
    assert time(8, 0) <= first_call.time() < time(8, 10), first_call
    assert "saved to" in output and str(results) in output.replace("\n", "")
    assert seen_while_staying == [200, 200]


def test_stay_and_results_are_options_of_campaigns_demo() -> None:
    usage = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "200"}).output
    assert "--stay" in usage and "--results" in usage

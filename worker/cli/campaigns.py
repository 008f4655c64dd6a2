"""Campaign commands: ``import`` (a CSV call list, with a progress bar and a ``--dry-run`` report), ``status``
and ``export``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from campaigns.states import Channel, EventStatus
from worker.cli.common import database_runtime, parse_hours_option, reading_progress


def import_(
    file: Annotated[Path, typer.Argument(help="The call list (CSV)", exists=True, dir_okay=False)],
    name: Annotated[str, typer.Option(help="Campaign name")],
    assistant_id: Annotated[str, typer.Option(help="Telnyx AI assistant id")],
    from_: Annotated[str, typer.Option("--from", help="Agent number the calls/texts come from (E.164)")],
    channel: Annotated[str, typer.Option(help="phone_call or sms_chat")] = Channel.PHONE_CALL,
    text: Annotated[str | None, typer.Option(help="SMS template with {{variables}}")] = None,
    retries: Annotated[int, typer.Option(help="max_retries_client_errors")] = 0,
    retry_interval: Annotated[int | None, typer.Option(help="retry_interval_secs")] = None,
    start_at: Annotated[str | None, typer.Option(help="ISO 8601 start (default: now)")] = None,
    region: Annotated[str, typer.Option(help="Default region for national numbers")] = "US",
    ruleset: Annotated[str, typer.Option(help="Calling-window ruleset")] = "us",
    timezone: Annotated[str | None, typer.Option(help="Default IANA zone for recipients")] = None,
    max_concurrent_calls: Annotated[int | None, typer.Option()] = None,
    max_dispatches_per_second: Annotated[float | None, typer.Option()] = None,
    cap_max_attempts: Annotated[int | None, typer.Option(help="Cap: attempts per recipient per window")] = None,
    cap_window_secs: Annotated[int | None, typer.Option(help="Campaign cap window (default 86400)")] = None,
    custom_hours: Annotated[
        str | None, typer.Option(help="Ruleset custom: weekly hours, e.g. 'mon-fri=09:00-17:30,sat=10:00-14:00'")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and report; create nothing")] = False,
) -> None:
    """Create a campaign from a CSV call list (progress bar; --dry-run reports without creating)."""
    from rich.console import Console

    from campaigns import campaign as campaign_service
    from campaigns import importing
    from campaigns.db import unit_of_work
    from campaigns.errors import ValidationFailed
    from campaigns.importing import CsvFileError

    rt = database_runtime()
    console = Console(stderr=True)
    body: dict[str, object] = {
        "name": name, "assistant_id": assistant_id, "telnyx_conversation_channel": channel,
        "telnyx_agent_target": from_, "text": text, "max_retries_client_errors": retries,
        "retry_interval_secs": retry_interval, "start_at": start_at, "default_region": region,
        "ruleset": ruleset, "timezone": timezone, "max_concurrent_calls": max_concurrent_calls,
        "max_dispatches_per_second": max_dispatches_per_second, "cap_max_attempts": cap_max_attempts,
        "cap_window_secs": cap_window_secs,
    }  # fmt: skip
    if custom_hours is not None:
        body["custom_windows"] = {"hours": parse_hours_option(custom_hours)}
    try:
        settings = campaign_service.validate_settings(
            {k: v for k, v in body.items() if v is not None}, now=rt.clock.now()
        )
    except ValidationFailed as exc:
        for error in exc.errors:
            console.print(f"[red]{error.pointer.removeprefix('/campaign/')}[/red]: {error.detail}")
        raise typer.Exit(2) from None
    with reading_progress(console, "rows") as progress:
        try:
            with file.open("rb") as data, unit_of_work(rt.sessions) as s:
                result = importing.import_new_campaign(
                    s, settings, data, now=rt.clock.now(), dry_run=dry_run, progress=progress
                )
        except CsvFileError as exc:
            console.print(f"[red]{file}: {exc}[/red]")
            raise typer.Exit(2) from None
    report, found = result.report, result.campaign
    assert report is not None  # an inline or dry-run import always reports
    _print_report(console, report, dry_run)
    if found is not None:
        typer.echo(str(found.id))


def _print_report(console: object, report: object, dry_run: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from campaigns.importing import ImportReport

    assert isinstance(console, Console) and isinstance(report, ImportReport)
    table = Table(title="dry run (nothing created)" if dry_run else "import")
    for col in ("rows", "accepted", "rejected", "duplicate", "suppressed"):
        table.add_column(col, justify="right")
    table.add_row(*(str(v) for v in (report.rows_total, report.rows_accepted, report.rows_rejected,
                                     report.rows_duplicate, report.rows_suppressed)))  # fmt: skip
    console.print(table)
    if report.issues:
        issues = Table(title=f"rows not imported (first {len(report.issues)})")
        for col in ("row", "column", "value", "reason"):
            issues.add_column(col)
        for issue in report.issues[:50]:
            issues.add_row(str(issue.row_number), issue.column, issue.value, issue.reason)
        console.print(issues)


def status(
    campaign_id: Annotated[str | None, typer.Argument(help="A campaign id; all campaigns when omitted")] = None,
) -> None:
    """Show campaign progress as a table."""
    from rich.console import Console
    from rich.table import Table
    from sqlalchemy import select

    from campaigns import campaign as campaign_service
    from campaigns.errors import NotFound
    from campaigns.models import Campaign

    rt = database_runtime()
    console = Console()
    with rt.sessions() as s:
        try:
            found = (
                [campaign_service.get_campaign(s, campaign_id)]
                if campaign_id
                else list(s.scalars(select(Campaign).order_by(Campaign.created_at.desc()).limit(50)))
            )
        except NotFound:
            console.print(f"[red]no campaign {campaign_id}[/red]")
            raise typer.Exit(1) from None
        table = Table(title="campaigns")
        # One column per event status, in EventStatus order (the row below fills them in that order).
        for col in ("id", "name", "status", "import", "rows", "pending", "in progress", "completed", "failed",
                    "canceled", "attempts"):  # fmt: skip
            table.add_column(col, justify="right" if col not in ("id", "name", "status", "import") else "left")
        for campaign in found:
            body = campaign_service.serialize_campaign(s, campaign)
            counts = body["counts"]
            attempts = ", ".join(f"{k} {v}" for k, v in sorted(body["attempts"].items())) or "-"
            table.add_row(
                body["id"], body["name"], body["status"], body["import"]["status"],
                str(body["import"]["rows_accepted"]), *(str(counts[status]) for status in EventStatus), attempts,
            )  # fmt: skip
    console.print(table)


def export(campaign_id: Annotated[str, typer.Argument(help="The campaign id")]) -> None:
    """Write the campaign's results CSV to standard output."""
    from campaigns import campaign as campaign_service
    from campaigns.errors import NotFound
    from campaigns.importing import export as exporter

    rt = database_runtime()
    with rt.sessions() as s:
        try:
            found = campaign_service.get_campaign(s, campaign_id)
        except NotFound:
            typer.echo(f"no campaign {campaign_id}", err=True)
            raise typer.Exit(1) from None
        out = sys.stdout
        for line in exporter.export_results(s, found):
            out.write(line)
        out.flush()

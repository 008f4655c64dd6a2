"""Campaign commands: ``import`` (a CSV call list, with a progress bar and a ``--dry-run`` report), ``status``,
``export`` (results or ``--attempts``), and ``pause``, ``resume``, ``cancel``. Every command that takes a campaign
id takes a unique prefix of it too (``common.resolve_campaign_id``)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from campaigns.states import Channel, EventStatus
from worker.cli.common import database_runtime, parse_hours_option, reading_progress, resolve_campaign_id

if TYPE_CHECKING:
    from rich.table import Table
    from sqlalchemy.orm import Session


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
    campaign_id: Annotated[
        str | None, typer.Argument(help="A campaign id or a unique prefix of one; the latest 50 when omitted")
    ] = None,
) -> None:
    """Show each campaign's progress: a table per campaign, readable at 80 columns."""
    from rich.console import Console
    from sqlalchemy import select

    from campaigns import campaign as campaign_service
    from campaigns.models import Campaign

    rt = database_runtime()
    console = Console(highlight=False)
    with rt.sessions() as s:
        if campaign_id:
            found = [campaign_service.get_campaign(s, resolve_campaign_id(s, campaign_id))]
        else:
            found = list(s.scalars(select(Campaign).order_by(Campaign.created_at.desc()).limit(50)))
        if not found:
            console.print("no campaigns")
            return
        for campaign in found:
            console.print(_status_table(s, campaign))


def _when(value: datetime | None) -> str:
    from campaigns.clock import iso

    return iso(value) or "-"


def _status_table(session: Session, campaign: object) -> Table:
    """One campaign as label / value rows: two narrow columns, so that it fits 80 columns however long the
    counts (a value wraps inside its cell)."""
    from rich import box
    from rich.table import Table

    from campaigns import campaign as campaign_service
    from campaigns.models import Campaign

    assert isinstance(campaign, Campaign)
    body = campaign_service.serialize_campaign(session, campaign)
    pending = campaign_service.pending_schedule(session, campaign.id)
    counts, imported = body["counts"], body["import"]
    table = Table(title=f"{body['id']}  {body['name']}", title_justify="left", show_header=False,
                  box=box.SIMPLE, padding=(0, 1))  # fmt: skip
    table.add_column("field", no_wrap=True, style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("status", f"{body['status']} ({campaign.telnyx_conversation_channel})")
    table.add_row(
        "import",
        f"{imported['status']}: {imported['rows_total']} rows, {imported['rows_accepted']} accepted, "
        f"{imported['rows_rejected']} rejected, {imported['rows_duplicate']} duplicate, "
        f"{imported['rows_suppressed']} suppressed",
    )
    table.add_row("events", ", ".join(f"{counts[status]} {status.replace('_', ' ')}" for status in EventStatus))
    table.add_row("waiting", f"{pending.held} held, {pending.deferred} deferred")
    table.add_row("next due", _when(pending.next_due))
    table.add_row("next retry", _when(pending.next_retry))
    table.add_row("attempts", ", ".join(f"{k} {v}" for k, v in sorted(body["attempts"].items())) or "none")
    for hold in body["provider_holds"]:
        table.add_row("provider hold", f"{hold['provider']}: {hold['reason']} since {hold['since']} ({hold['detail']})")
    return table


def export(
    campaign_id: Annotated[str, typer.Argument(help="The campaign id or a unique prefix of it")],
    attempts: Annotated[bool, typer.Option("--attempts", help="One row per attempt (attempts.csv)")] = False,
) -> None:
    """Write the campaign's results CSV (or, with --attempts, its attempts CSV) to standard output."""
    from campaigns import campaign as campaign_service
    from campaigns.importing import export as exporter

    rt = database_runtime()
    with rt.sessions() as s:
        found = campaign_service.get_campaign(s, resolve_campaign_id(s, campaign_id))
        produce = exporter.export_attempts if attempts else exporter.export_results
        out = sys.stdout
        for line in produce(s, found):
            out.write(line)
        out.flush()


def _control(verb: str, campaign_id: str) -> None:
    """``pause``, ``resume`` or ``cancel``: the domain function the HTTP route calls, in one unit of work."""
    from campaigns import campaign as campaign_service
    from campaigns.db import unit_of_work
    from campaigns.errors import Conflict

    rt = database_runtime()
    try:
        with unit_of_work(rt.sessions) as s:
            found = campaign_service.get_campaign(s, resolve_campaign_id(s, campaign_id), for_update=True)
            now = rt.clock.now()
            if verb == "cancel":
                canceled = campaign_service.cancel(s, found, now=now)
                done = f"canceled: {canceled} pending events canceled; events in progress make no further attempts"
            else:
                (campaign_service.pause if verb == "pause" else campaign_service.resume)(s, found, now=now)
                done = "paused" if verb == "pause" else "resumed"
    except Conflict as exc:
        typer.echo(f"campaign {campaign_id}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"campaign {found.id} {done}")


def pause(campaign_id: Annotated[str, typer.Argument(help="The campaign id or a unique prefix of it")]) -> None:
    """Stop dispatching the campaign's events (as POST /v1/campaigns/{id}/pause); calls under way finish."""
    _control("pause", campaign_id)


def resume(campaign_id: Annotated[str, typer.Argument(help="The campaign id or a unique prefix of it")]) -> None:
    """Dispatch a paused campaign's events again (as POST /v1/campaigns/{id}/resume)."""
    _control("resume", campaign_id)


def cancel(campaign_id: Annotated[str, typer.Argument(help="The campaign id or a unique prefix of it")]) -> None:
    """Cancel the pending events (as POST /v1/campaigns/{id}/cancel); events in progress make no further attempts."""
    _control("cancel", campaign_id)

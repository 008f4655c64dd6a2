"""Campaign commands: ``import`` (a CSV call list, with a progress bar and a ``--dry-run`` report), ``status``,
``export`` (results or ``--attempts``), and ``pause``, ``resume``, ``cancel``. Every command that takes a campaign
id takes a unique prefix of it too (``common.resolve_campaign_id``)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from campaigns.pending import pending_schedule
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
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="COLUMN=TARGET, repeatable: 'Phone Number=phone', 'First Name=first_name', 'Email=-' (dropped);"
            " targets phone, scheduled_at, scheduled_at.date, scheduled_at.time, timezone, state, text,"
            " metadata.KEY or a variable name",
        ),
    ] = None,
    variables: Annotated[
        str | None, typer.Option(help="Comma-separated allow-list of the variables sent to the provider")
    ] = None,
    drop: Annotated[list[str] | None, typer.Option("--drop", help="A column never read, repeatable")] = None,
    date_order: Annotated[str | None, typer.Option(help="mdy or dmy: how dates such as 05/12/2026 are read")] = None,
    dedupe_key: Annotated[
        str | None,
        typer.Option(help="Comma-separated columns identifying one reminder, e.g. phone,appointment_date"),
    ] = None,
    late_policy: Annotated[
        str | None,
        typer.Option(help="send_now (default), skip, or 'send_now_if_before: COLUMN [TIME COLUMN] [- DURATION]'"),
    ] = None,
    allow_duplicate_upload: Annotated[
        bool, typer.Option("--allow-duplicate-upload", help="Import a file a live campaign already has")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and report; create nothing")] = False,
) -> None:
    """Create a campaign from a CSV call list (progress bar; --dry-run reports without creating)."""
    from rich.console import Console

    from campaigns import campaign as campaign_service
    from campaigns import importing
    from campaigns.db import unit_of_work
    from campaigns.errors import ValidationFailed
    from campaigns.importing import CsvFileError, SettingsMismatch
    from campaigns.importing.guard import DuplicateUpload
    from campaigns.mapping import parse_map_options

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
        body["mapping"] = parse_map_options(map_ or []) or None
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if variables is not None:
        body["variables"] = [v.strip() for v in variables.split(",") if v.strip()]
    body["drop_columns"] = list(drop) if drop else None
    body["date_order"] = date_order
    if dedupe_key is not None:
        body["dedupe_key"] = [k.strip() for k in dedupe_key.split(",") if k.strip()]
    body["late_policy"] = late_policy
    body["allow_duplicate_upload"] = allow_duplicate_upload or None
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
        except SettingsMismatch as exc:
            console.print(f"[red]{exc.setting}[/red]: {exc}")
            raise typer.Exit(2) from None
        except DuplicateUpload as exc:
            console.print(f"[red]{file}: {exc}[/red]")
            raise typer.Exit(2) from None
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
    if dry_run and report.layout is not None:
        _print_mapping(console, report)
    table = Table(title="dry run (nothing created)" if dry_run else "import")
    for col in ("rows", "accepted", "rejected", "duplicate", "suppressed"):
        table.add_column(col, justify="right")
    table.add_row(*(str(v) for v in (report.rows_total, report.rows_accepted, report.rows_rejected,
                                     report.rows_duplicate, report.rows_suppressed)))  # fmt: skip
    console.print(table)
    late = report.late
    if late.sent_count or late.skipped_count:
        console.print(f"late rows ({late.policy}): {late.sent_count} sent now {late.sent[:20]}, "
                      f"{late.skipped_count} skipped {late.skipped[:20]}")  # fmt: skip
    if report.duplicate_upload is not None:
        found = report.duplicate_upload
        console.print(f"[yellow]re-upload: campaign {found['campaign_id']} ({found['name']!r}) already has "
                      f"{'this file' if found['match'] == 'content' else 'these reminders'}[/yellow]")  # fmt: skip
    if report.issues:
        issues = Table(title=f"rows not imported (first {len(report.issues)})")
        for col in ("row", "column", "value", "reason"):
            issues.add_column(col)
        for issue in report.issues[:50]:
            issues.add_row(str(issue.row_number), issue.column, issue.value, issue.reason)
        console.print(issues)


def _print_mapping(console: object, report: object) -> None:
    """The dry run's account of the columns: what each became, which go out, the first rows as sent."""
    import json

    from rich.console import Console
    from rich.table import Table

    from campaigns.importing import ImportReport

    assert isinstance(console, Console) and isinstance(report, ImportReport) and report.layout is not None
    layout = report.layout
    sent = set(layout.sent_variables)
    columns = Table(title="columns")
    for col in ("column", "becomes", "sent to the provider"):
        columns.add_column(col)
    for column, target in layout.mapping:
        goes = "dropped" if target == "-" else ("yes" if target in sent or target == "phone" else "no")
        if target not in layout.variables and target not in ("-", "phone"):
            goes = "yes (event field)"
        columns.add_row(column, target, goes)
    console.print(columns)
    if report.preview:
        preview = Table(title=f"first {len(report.preview)} rows as they will be sent")
        for col in ("row", "phone", "scheduled_at", "dynamic_variables", "text"):
            preview.add_column(col)
        for row in report.preview:
            preview.add_row(str(row["row_number"]), row["phone"], row["scheduled_at"],
                            json.dumps(row["dynamic_variables"], ensure_ascii=False), row["text"] or "")  # fmt: skip
        console.print(preview)


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
    pending = pending_schedule(session, campaign.id)
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

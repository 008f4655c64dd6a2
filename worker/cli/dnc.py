"""``campaigns dnc``: the do-not-contact list from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from worker.cli.common import database_runtime, reading_progress

app = typer.Typer(help="The do-not-contact list: numbers that are never called or texted.", no_args_is_help=True)

Region = Annotated[str, typer.Option(help="Region of numbers written without +country code")]


@app.command()
def add(
    number: Annotated[str, typer.Argument(help="The phone number (E.164, or national with --region)")],
    note: Annotated[str | None, typer.Option(help="Why it is listed")] = None,
    region: Region = "US",
) -> None:
    """Put a number on the list (reason: manual)."""
    from campaigns import suppression
    from campaigns.db import unit_of_work

    rt = database_runtime()
    try:
        with unit_of_work(rt.sessions) as s:
            entry, created = suppression.add(s, number, now=rt.clock.now(), note=note, default_region=region)
            phone, reason = entry.phone, entry.reason
    except (suppression.InvalidPhone, ValueError) as exc:
        typer.echo(f"not added: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{phone} added" if created else f"{phone} was already listed ({reason})")


@app.command()
def remove(
    number: Annotated[str, typer.Argument(help="The phone number")],
    region: Region = "US",
) -> None:
    """Take a number off the list (whatever its reason). Exit 1 when it was not listed."""
    from campaigns import suppression
    from campaigns.db import unit_of_work

    rt = database_runtime()
    try:
        e164 = suppression.normalize(number, default_region=region)
    except (suppression.InvalidPhone, ValueError) as exc:
        typer.echo(f"not removed: {exc}", err=True)
        raise typer.Exit(2) from None
    with unit_of_work(rt.sessions) as s:
        removed = suppression.remove(s, e164, default_region=None)
    if not removed:
        typer.echo(f"{e164} is not on the list", err=True)
        raise typer.Exit(1)
    typer.echo(f"{e164} removed")


@app.command("import")
def import_(
    file: Annotated[
        Path,
        typer.Argument(help="One number per line; blank lines and # comments ignored", exists=True, dir_okay=False),
    ],
    note: Annotated[str | None, typer.Option(help="Note stored with every new entry")] = None,
    region: Region = "US",
) -> None:
    """Add every number of a file (e.g. a national do-not-call registry download). Bad lines are reported."""
    from rich.console import Console
    from rich.table import Table

    from campaigns import suppression
    from campaigns.db import unit_of_work

    rt = database_runtime()
    console = Console(stderr=True)
    try:
        suppression.normalize("+12125550100", default_region=region)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    with reading_progress(console, "lines") as progress, file.open("rb") as data, unit_of_work(rt.sessions) as s:
        report = suppression.import_file(
            s, data, now=rt.clock.now(), note=note, default_region=region, progress=progress
        )
    table = Table(title=f"do-not-contact import: {file.name}")
    for col in ("lines", "numbers", "added", "already listed", "duplicates", "invalid"):
        table.add_column(col, justify="right")
    table.add_row(*(f"{v:,}" for v in (report.lines, report.numbers, report.added, report.already_listed,
                                        report.duplicates_in_file, report.invalid)))  # fmt: skip
    console.print(table)
    if report.errors:
        errors = Table(title=f"lines not imported (first {min(len(report.errors), 50)} of {report.invalid:,})")
        for col in ("line", "value", "reason"):
            errors.add_column(col)
        for error in report.errors[:50]:
            errors.add_row(str(error.line), error.value, error.reason)
        console.print(errors)
    typer.echo(f"{report.added} added, {report.already_listed} already listed, {report.invalid} invalid line(s)")


@app.command("list")
def list_(
    reason: Annotated[
        str | None, typer.Option(help="Only this reason: manual, file, sms_opt_out, provider_block")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many entries (newest first)")] = 100,
) -> None:
    """Show the list, newest first."""
    from rich.console import Console
    from rich.table import Table

    from campaigns import suppression

    if reason is not None and reason not in suppression.REASONS:
        typer.echo(f"--reason must be one of {', '.join(suppression.REASONS)}", err=True)
        raise typer.Exit(2)
    rt = database_runtime()
    with rt.sessions() as s:
        rows, total = suppression.list_entries(s, reason=reason, page_size=max(1, limit))
        entries = [suppression.serialize(r) for r in rows]
    table = Table(title=f"do-not-contact list ({len(entries)} of {total})")
    for col in ("phone_number", "reason", "created_at", "note"):
        table.add_column(col)
    for entry in entries:
        table.add_row(entry["phone_number"], entry["reason"], entry["created_at"], entry["note"] or "")
    Console().print(table)

"""``campaigns recurring``: list definitions, validate a definition file, run one now, delete one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli.common import database_runtime

if TYPE_CHECKING:
    from worker.runtime import Runtime

app = typer.Typer(help="Recurring reminder campaigns triggered on a cron schedule.", no_args_is_help=True)


def _local(value: object, zone: str) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    if not isinstance(value, datetime):
        return "-"
    return f"{value.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M %Z}"


@contextmanager
def _exit_1_on_missing_or_conflict(name: str) -> Iterator[None]:
    """An unknown definition or a conflict (a run holds it, a file defines it) is a message and exit status 1."""
    from campaigns.errors import Conflict, NotFound

    try:
        yield
    except NotFound:
        typer.echo(f"no recurring definition {name!r}", err=True)
        raise typer.Exit(1) from None
    except Conflict as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def _sync(rt: Runtime) -> None:
    """Read CAMPAIGNS_RECURRING_DIR into the database first, so the files just edited are what is shown."""
    from campaigns import recurring

    if rt.settings.recurring_dir:
        report = recurring.sync_directory(rt.sessions, Path(rt.settings.recurring_dir), now=rt.clock.now())
        for error in report.errors:
            typer.echo(error, err=True)


@app.command("list")
def list_() -> None:
    """Show every definition with its next run (in its own zone) and its last run."""
    from rich.console import Console
    from rich.table import Table

    from campaigns import recurring

    rt = database_runtime()
    _sync(rt)
    table = Table(title="recurring definitions")
    for col in ("name", "cron", "zone", "next run", "last run", "last result", "source", "origin"):
        table.add_column(col)
    with rt.sessions() as s:
        rows = recurring.list_definitions(s)
        last_runs = recurring.last_runs(s, [row.id for row in rows])
        for row in rows:
            last = last_runs.get(row.id)
            table.add_row(
                row.name,
                row.cron,
                row.timezone,
                _local(row.next_run_at, row.timezone) if row.enabled else "disabled",
                _local(last.started_at, row.timezone) if last else "-",
                f"{last.status}: {last.rows_created} scheduled" if last else "-",
                row.source,
                row.origin,
            )
    Console(width=200).print(table)


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="A definition file (TOML)", exists=True, dir_okay=False)],
) -> None:
    """Check a definition file and print its next five run times in its time zone."""
    from campaigns import recurring
    from campaigns.clock import clock_from_settings
    from campaigns.settings import get_settings

    now = clock_from_settings(get_settings()).now()
    try:
        definition = recurring.load_definition_file(file, now=now)
    except recurring.DefinitionFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{file}: ok: {definition.name!r}, cron {definition.cron!r} in {definition.timezone}")
    typer.echo(f"due: {definition.due}; dedupe key: {', '.join(definition.dedupe_key)}")
    for key, value in (definition.call_list or {}).items():  # mapping, variables, drop_columns, date_order
        typer.echo(f"{key}: {json.dumps(value, ensure_ascii=False)}")
    matches = recurring.matching_files(definition.source)
    typer.echo(f"source: {definition.source} ({len(matches)} matching file(s) now)")
    typer.echo("next runs:")
    for at in recurring.upcoming(definition.cron, definition.timezone, now, 5):
        typer.echo(f"  {_local(at, definition.timezone)}  ({at:%Y-%m-%d %H:%M} UTC)")


@app.command("run-now")
def run_now(
    name: Annotated[str, typer.Argument(help="The definition's name (or id)")],
    force: Annotated[
        bool, typer.Option("--force", help="Re-read files already read (reminders already scheduled are skipped)")
    ] = False,
) -> None:
    """Run a definition now; its schedule is unchanged."""
    from campaigns import recurring

    rt = database_runtime()
    _sync(rt)
    with _exit_1_on_missing_or_conflict(name):
        result = recurring.run_now(
            rt.sessions,
            name,
            now=rt.clock.now(),
            force=force,
            allowed_root=rt.settings.recurring_dir,
        )
    typer.echo(f"{result.status}: {result.message}")
    for campaign_id in result.campaign_ids:
        typer.echo(str(campaign_id))
    if result.status == "failed":
        raise typer.Exit(1)


@app.command("delete")
def delete(name: Annotated[str, typer.Argument(help="The definition's name (or id)")]) -> None:
    """Delete a definition made through the API, with its run history; the campaigns it created stay.

    A definition file's definition is deleted by removing its file from CAMPAIGNS_RECURRING_DIR.
    """
    from campaigns import recurring
    from campaigns.db import unit_of_work

    rt = database_runtime()
    with _exit_1_on_missing_or_conflict(name), unit_of_work(rt.sessions) as s:
        deleted = recurring.delete_definition(s, name)
    typer.echo(f"deleted recurring definition {deleted!r}")

"""What several command groups share: logging set-up, the database check, option parsers.

Every sub-module of ``worker.cli`` imports its helpers from here, never from another command group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from worker.runtime import Runtime


def configure_logging() -> None:
    from campaigns.logs import configure_logging as configure

    configure()


def require_database() -> None:
    """Exit 2 with a hint when no database is configured."""
    from campaigns.settings import get_settings

    if not get_settings().database_url:
        typer.echo("CAMPAIGNS_DATABASE_URL is not set (or run `campaigns up`, which starts embedded servers)", err=True)
        raise typer.Exit(2)


def database_runtime() -> Runtime:
    """The process runtime, once ``require_database`` passed."""
    from worker.runtime import get_runtime

    require_database()
    return get_runtime()


def parse_hours_option(spec: str) -> dict[str, str | list[str]]:
    """``mon-fri=09:00-17:00,sat=10:00-14:00`` → ``{"mon-fri": "09:00-17:00", "sat": "10:00-14:00"}``."""
    out: dict[str, str | list[str]] = {}
    for part in spec.split(","):
        day, sep, span = part.partition("=")
        if not sep:
            raise typer.BadParameter(f"--hours: {part!r} is not DAYS=HH:MM-HH:MM")
        out[day.strip()] = span.strip()
    return out


@contextmanager
def reading_progress(console: Console, unit: str) -> Iterator[Callable[[int], None]]:
    """A spinner counting what a file import has read ("12,000 rows read"); yields the callback to update it."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(f"reading {unit}", total=None)

        def progress(count: int) -> None:
            bar.update(task, description=f"{count:,} {unit} read")

        yield progress

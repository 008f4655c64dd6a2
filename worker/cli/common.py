"""What several command groups share: logging set-up, the database check, option parsers, campaign ids by prefix.

Every sub-module of ``worker.cli`` imports its helpers from here, never from another command group.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.orm import Session

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


ID_PREFIX = re.compile(r"^[0-9a-f-]{1,36}$")
MAX_LISTED_MATCHES = 10


def resolve_campaign_id(session: Session, ref: str) -> uuid.UUID:
    """The campaign ``ref`` names: its full id, or a prefix of it that only one campaign's id starts with (dashes
    optional, any case). Otherwise exits 1 with a message on standard error: no such campaign, or the prefix is
    ambiguous, listing the campaigns it matches."""
    from sqlalchemy import String, cast, func, select

    from campaigns.models import Campaign

    wanted = ref.strip().lower()
    if not ID_PREFIX.match(wanted) or not wanted.replace("-", ""):
        typer.echo(f"no campaign {ref}: a campaign id is hexadecimal digits and dashes (or a prefix of one)", err=True)
        raise typer.Exit(1)
    digits = wanted.replace("-", "")
    matches = session.execute(
        select(Campaign.id, Campaign.name)
        .where(func.replace(cast(Campaign.id, String), "-", "").startswith(digits, autoescape=True))
        .order_by(Campaign.created_at.desc())
        .limit(MAX_LISTED_MATCHES + 1)
    ).all()
    if len(matches) == 1:
        return uuid.UUID(str(matches[0][0]))
    if not matches:
        typer.echo(f"no campaign {ref}", err=True)
        raise typer.Exit(1)
    listed = "\n".join(f"  {found_id}  {name}" for found_id, name in matches[:MAX_LISTED_MATCHES])
    more = " (and more)" if len(matches) > MAX_LISTED_MATCHES else ""
    typer.echo(f"campaign id prefix {ref!r} is ambiguous: it matches{more}\n{listed}\ngive more digits", err=True)
    raise typer.Exit(1)

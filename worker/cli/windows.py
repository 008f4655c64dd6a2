"""`campaigns windows …`: explain calling-window decisions and show the rulesets in effect."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from worker.cli.common import parse_hours_option

app = typer.Typer(help="Calling windows: explain a decision, list and show rulesets.", no_args_is_help=True)

console = Console(highlight=False)


def _parse_at(value: str | None) -> datetime:
    from campaigns.events import parse_datetime

    if value is None:
        return datetime.now(UTC)
    parsed = parse_datetime(value)
    if parsed is None:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 date-time with an offset, e.g. 2025-07-15T00:30Z")
    return parsed.astimezone(UTC)


def _load(name: str, custom_hours: str | None) -> object:
    from campaigns import windows

    try:
        if name == windows.CUSTOM:
            if not custom_hours:
                raise typer.BadParameter("ruleset custom needs --hours, e.g. --hours 'mon-fri=09:00-17:00'")
            return windows.custom_ruleset({"hours": parse_hours_option(custom_hours)}, "custom")
        return windows.get_ruleset(name)
    except windows.RulesetError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command("check")
def check(
    phone: Annotated[str, typer.Argument(help="A number as a call list has it: +13055550123, '(305) 555-0123'")],
    at: Annotated[str | None, typer.Option("--at", help="UTC or offset instant (default: now)")] = None,
    ruleset: Annotated[str, typer.Option(help="Ruleset: us, ca, au, none, custom, or one from RULESETS_DIR")] = "us",
    timezone: Annotated[str | None, typer.Option(help="The row's IANA time zone, if the list has one")] = None,
    state: Annotated[str | None, typer.Option(help="The row's US state, if the list has one")] = None,
    default_zone: Annotated[str | None, typer.Option(help="The campaign's default zone")] = None,
    hours: Annotated[str | None, typer.Option(help="custom hours: 'mon-fri=09:00-17:00,sat=10:00-14:00'")] = None,
    region: Annotated[str, typer.Option(help="Region of national numbers, as a campaign's default_region")] = "US",
) -> None:
    """Explain whether PHONE may be contacted at an instant: zones, rules, verdict and the next opening.

    PHONE may be written in any format the import accepts; a national number is read in --region (default US).

    Exit status: 0 allowed, 1 blocked or held.
    """
    from campaigns import windows
    from campaigns.phones import InvalidPhone, to_e164

    try:  # the number as an import reads it (campaigns.phones), so '(212) 555-0101' is +12125550101
        phone = to_e164(phone, default_region=region or None)
    except InvalidPhone as exc:
        raise typer.BadParameter(f"{exc} (national numbers are read in region {region})", param_hint="PHONE") from None
    instant = _parse_at(at)
    rules = _load(ruleset, hours)
    assert isinstance(rules, windows.Ruleset)
    if timezone is not None and not windows.is_timezone(timezone):
        raise typer.BadParameter(f"--timezone: {timezone!r} is not an IANA time zone")
    result = windows.explain(instant, phone, rules, timezone=timezone, state=state, default_zone=default_zone)
    console.print(f"[bold]{phone}[/] at {instant.isoformat().replace('+00:00', 'Z')} under ruleset {rules.label}")
    console.print(f"  ruleset file: {rules.source}")
    zones = ", ".join(result.zones) or "none"
    console.print(f"  candidate zones: {zones}  (from {result.zone_source})")
    console.print(f"  states whose rules apply: {', '.join(result.states) or 'none'}")
    if not rules.needs_zone:
        console.print("  [green]ALLOWED[/]: ruleset none has no calling window")
        return
    if result.no_window is not None:
        console.print(f"  [green]ALLOWED[/]: {result.no_window}")
        return
    if result.held:
        console.print("  [red]HELD[/]: the time zone cannot be determined; give a timezone or state column")
        raise typer.Exit(1)
    table = Table("rule", "zone", "local time", "hours", "verdict", "citation")
    for v in result.verdicts:
        table.add_row(
            v.rule.id,
            v.zone,
            f"{v.local:%a %Y-%m-%d %H:%M %Z}",
            v.rule.hours_text(),
            ("[green]" if v.allowed else "[red]") + v.why + "[/]",
            v.rule.citation + ("" if v.rule.verified else " (unverified)"),
        )
    console.print(table)
    for rule, cap in result.caps:
        console.print(
            f"  frequency cap ({rule.id}): {cap.attempts} attempts per {cap.window.total_seconds() / 3600:g} h"
            + (f" — {cap.note}" if cap.note else "")
        )
    if result.allowed:
        console.print("  [green]ALLOWED[/]")
        return
    console.print("  [red]BLOCKED[/]")
    if result.next_opening is None:
        console.print(f"  next opening: none within {windows.SEARCH_DAYS} days (the event would be held)")
        raise typer.Exit(1)
    else:
        local = ", ".join(f"{result.next_opening.astimezone(ZoneInfo(z)):%a %H:%M %Z} {z}" for z in result.zones)
        console.print(f"  next opening: {result.next_opening.isoformat().replace('+00:00', 'Z')}  ({local})")
        raise typer.Exit(1)


@app.command("list")
def list_() -> None:
    """The rulesets in effect (shipped files, then CAMPAIGNS_RULESETS_DIR)."""
    from campaigns import windows

    table = Table("name", "version", "rules", "source", "description")
    for ruleset in sorted(windows.rulesets().values(), key=lambda r: r.name):
        table.add_row(ruleset.name, ruleset.version, str(len(ruleset.rules)), ruleset.source, ruleset.description)
    table.add_row("custom", "-", "1", "campaign settings", "weekly windows defined per campaign (custom_windows)")
    console.print(table)


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Ruleset name")]) -> None:
    """Every rule of a ruleset with its hours, holidays, zone, cap and citation."""
    rules = _load(name, None)
    from campaigns import windows

    assert isinstance(rules, windows.Ruleset)
    console.print(f"[bold]{rules.label}[/] — {rules.description}  ({rules.source})")
    table = Table("rule", "applies to", "hours", "zone", "cap", "citation")
    for rule in rules.rules:
        cap = f"{rule.cap.attempts}/{rule.cap.window.total_seconds() / 3600:g} h" if rule.cap else ""
        table.add_row(
            rule.id,
            rule.state or "everyone",
            rule.hours_text(),
            rule.zone or "recipient",
            cap,
            rule.citation + ("" if rule.verified else " (unverified)"),
        )
    console.print(table)

"""The ``campaigns`` command line."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Outbound campaign worker for AI voice assistants (Telnyx Scheduled Events compatible).",
                  no_args_is_help=True, add_completion=False)  # fmt: skip


def _logging() -> None:
    from campaigns.logs import configure_logging

    configure_logging()


@app.command()
def migrate() -> None:
    """Apply the database migrations (alembic upgrade head)."""
    from campaigns.settings import get_settings
    from worker.migrate import upgrade

    if not get_settings().database_url:
        raise typer.BadParameter("CAMPAIGNS_DATABASE_URL is not set")
    upgrade(get_settings().database_url)
    typer.echo("database is at the latest migration")


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="API processes sharing the port (one process is GIL-bound on webhooks)")
    ] = 1,
) -> None:
    """Run the HTTP API (Telnyx-compatible scheduled events, webhooks, /metrics)."""
    from campaigns.settings import get_settings
    from worker import metrics_server

    if workers > 1:
        metrics_server.prepare_multiprocess()  # before prometheus_client is imported: /metrics sums every process
    import uvicorn

    _logging()
    if not get_settings().api_token and host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo("refusing to bind a non-loopback address without CAMPAIGNS_API_TOKEN", err=True)
        raise typer.Exit(2)
    if workers > 1:
        uvicorn.run("worker.api:create_app", factory=True, host=host, port=port, workers=workers, log_level="warning")
        return
    from worker.api import create_app

    uvicorn.run(create_app(), host=host, port=port, log_level="warning")


MetricsPort = Annotated[
    int | None, typer.Option(help="Serve /metrics and /healthz on this port (default: CAMPAIGNS_METRICS_PORT)")
]


@app.command()
def scheduler(metrics_port: MetricsPort = None) -> None:
    """Run the scheduler loop (claims due events and hands them to the workers)."""
    from campaigns.settings import get_settings
    from worker import scheduler as loop

    _logging()
    settings = get_settings()
    loop.main(metrics_port=metrics_port or settings.metrics_port, metrics_host=settings.metrics_host)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Worker threads/processes")] = 8,
    pool: Annotated[str, typer.Option(help="Celery pool: threads or prefork")] = "threads",
    metrics_port: MetricsPort = None,
) -> None:
    """Run a Celery worker (dispatch, reconcile)."""
    from campaigns.settings import get_settings
    from worker import metrics_server

    if pool == "prefork":
        metrics_server.prepare_multiprocess()  # before prometheus_client is imported: children write files
    from worker.celery_app import app as celery

    _logging()
    settings = get_settings()
    if metrics_port or settings.metrics_port:
        metrics_server.serve_metrics(metrics_port or settings.metrics_port or 0, settings.metrics_host)
    if pool != "prefork":  # prefork children warm up after the fork (worker.celery_app)
        from worker.runtime import warm_up

        try:
            warm_up()
        except Exception as exc:  # the database may be down at start: the first task builds it and reports
            typer.echo(f"warm-up failed ({exc!r}); the first task will retry", err=True)
    celery.worker_main(["worker", "--loglevel=INFO", f"--pool={pool}", f"--concurrency={concurrency}",
                        "--without-gossip", "--without-mingle"])  # fmt: skip


@app.command()
def beat(
    schedule: Annotated[Path | None, typer.Option(help="Where beat keeps its schedule state")] = None,
) -> None:
    """Run Celery beat (periodic reconciliation)."""
    import tempfile

    from worker.celery_app import app as celery

    _logging()
    path = schedule or Path(tempfile.gettempdir()) / f"campaigns-beat-{os.getpid()}"
    celery.start(["beat", "--loglevel=INFO", f"--schedule={path}"])


@app.command()
def simulator(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8081,
    mix: Annotated[str | None, typer.Option(help="Random outcomes, e.g. completed=0.6,busy=0.2,no-answer=0.2")] = None,
    ring_delay: Annotated[float, typer.Option(help="Real seconds before the outcome")] = 0.2,
    talk_delay: Annotated[float, typer.Option(help="Real seconds a completed call lasts")] = 0.5,
    seed: Annotated[int | None, typer.Option()] = None,
    callbacks: Annotated[bool, typer.Option("--callbacks/--no-callbacks", help="Send status callbacks")] = True,
) -> None:
    """Run the Telnyx simulator (a test double speaking the Telnyx wire format)."""
    from worker import simulator as sim

    config = sim.SimulatorConfig(
        ring_delay=ring_delay,
        talk_delay=talk_delay,
        mix=sim.parse_mix(mix) if mix else None,
        seed=seed,
        callbacks=callbacks,
    )
    sim.run(host=host, port=port, config=config)


@app.command()
def up(
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    with_beat: Annotated[bool, typer.Option("--beat/--no-beat", help="Also run beat")] = True,
    data_dir: Annotated[Path, typer.Option(help="Embedded servers' data (when none configured)")] = Path(
        ".campaigns-data"
    ),
) -> None:
    """Run api + scheduler + worker (+ beat) as one supervised process group."""
    from contextlib import ExitStack

    from worker.embedded import EmbeddedServers
    from worker.migrate import upgrade
    from worker.supervisor import Child, Supervisor, component_argv

    env = dict(os.environ)
    env.setdefault("CAMPAIGNS_TIME_WARP_ORIGIN", _now_iso())
    env.setdefault("CAMPAIGNS_PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
    with ExitStack() as stack:
        if not env.get("CAMPAIGNS_DATABASE_URL") or not env.get("CAMPAIGNS_REDIS_URL"):
            servers = stack.enter_context(EmbeddedServers(directory=data_dir.resolve(), keep_data=True))
            env.setdefault("CAMPAIGNS_DATABASE_URL", servers.database_url)
            env.setdefault("CAMPAIGNS_REDIS_URL", servers.redis_url)
            typer.echo(f"embedded servers: {env['CAMPAIGNS_DATABASE_URL']} {env['CAMPAIGNS_REDIS_URL']}")
        upgrade(env["CAMPAIGNS_DATABASE_URL"])
        # One metrics port per component: the scheduler gets CAMPAIGNS_METRICS_PORT, the worker the next one.
        metrics = env.pop("CAMPAIGNS_METRICS_PORT", None)
        children = [
            Child("api", component_argv("api", "--port", str(port))),
            Child("scheduler", component_argv("scheduler", *(["--metrics-port", metrics] if metrics else []))),
            Child("worker", component_argv("worker", *(["--metrics-port", str(int(metrics) + 1)] if metrics else []))),
        ]
        if with_beat:
            children.append(Child("beat", component_argv("beat")))
        typer.echo(f"campaigns up: api on http://127.0.0.1:{port} (Ctrl-C stops everything)")
        code = Supervisor(children, env=env).run()
    raise typer.Exit(code)


def _require_database() -> None:
    from campaigns.settings import get_settings

    if not get_settings().database_url:
        typer.echo("CAMPAIGNS_DATABASE_URL is not set (or run `campaigns up`, which starts embedded servers)", err=True)
        raise typer.Exit(2)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="The call list (CSV)", exists=True, dir_okay=False)],
    name: Annotated[str, typer.Option(help="Campaign name")],
    assistant_id: Annotated[str, typer.Option(help="Telnyx AI assistant id")],
    from_: Annotated[str, typer.Option("--from", help="Agent number the calls/texts come from (E.164)")],
    channel: Annotated[str, typer.Option(help="phone_call or sms_chat")] = "phone_call",
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
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from campaigns import campaign as campaign_service
    from campaigns import importing as importer
    from campaigns.db import rolled_back, unit_of_work
    from campaigns.errors import ValidationFailed
    from campaigns.importing import CsvFileError
    from worker.runtime import get_runtime

    _require_database()
    rt = get_runtime()
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
        from worker.cli_windows import parse_hours_option

        body["custom_windows"] = {"hours": parse_hours_option(custom_hours)}
    try:
        settings = campaign_service.validate_settings(
            {k: v for k, v in body.items() if v is not None}, now=rt.clock.now()
        )
    except ValidationFailed as exc:
        for error in exc.errors:
            console.print(f"[red]{error.pointer.removeprefix('/campaign/')}[/red]: {error.detail}")
        raise typer.Exit(2) from None
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("reading rows", total=None)

        def progress(rows: int) -> None:
            bar.update(task, description=f"{rows:,} rows read")

        try:
            with file.open("rb") as data, (rolled_back if dry_run else unit_of_work)(rt.sessions) as s:
                found = campaign_service.create_campaign(s, settings, now=rt.clock.now())
                report = importer.load_call_list(s, found, data, now=rt.clock.now(), dry_run=dry_run, progress=progress)
                if not dry_run:
                    importer.apply_report(found, report, now=rt.clock.now())
        except CsvFileError as exc:
            console.print(f"[red]{file}: {exc}[/red]")
            raise typer.Exit(2) from None
    _print_report(console, report, dry_run)
    if not dry_run:
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


@app.command()
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
    from worker.runtime import get_runtime

    _require_database()
    rt = get_runtime()
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
        for col in ("id", "name", "status", "import", "rows", "pending", "in progress", "completed", "failed",
                    "canceled", "attempts"):  # fmt: skip
            table.add_column(col, justify="right" if col not in ("id", "name", "status", "import") else "left")
        for campaign in found:
            body = campaign_service.serialize_campaign(s, campaign)
            counts = body["counts"]
            attempts = ", ".join(f"{k} {v}" for k, v in sorted(body["attempts"].items())) or "-"
            table.add_row(
                body["id"], body["name"], body["status"], body["import"]["status"],
                str(body["import"]["rows_accepted"]), str(counts["pending"]), str(counts["in_progress"]),
                str(counts["completed"]), str(counts["failed"]), str(counts["canceled"]), attempts,
            )  # fmt: skip
    console.print(table)


@app.command()
def export(campaign_id: Annotated[str, typer.Argument(help="The campaign id")]) -> None:
    """Write the campaign's results CSV to standard output."""
    from campaigns import campaign as campaign_service
    from campaigns.errors import NotFound
    from campaigns.importing import export as exporter
    from worker.runtime import get_runtime

    _require_database()
    rt = get_runtime()
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


@app.command()
def demo(
    warp: Annotated[float, typer.Option(help="App seconds per real second")] = 360.0,
) -> None:
    """Run a whole campaign on embedded servers and the simulator; exits 0 when every event is terminal."""
    from worker.demo import run_demo

    raise typer.Exit(run_demo(warp=warp))


def _now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


from worker.cli_windows import app as windows_app  # noqa: E402  (sub-commands register after the main ones)

app.add_typer(windows_app, name="windows")
from worker.cli_dnc import app as dnc_app  # noqa: E402

app.add_typer(dnc_app, name="dnc")
from worker.cli_recurring import app as recurring_app  # noqa: E402

app.add_typer(recurring_app, name="recurring")


def main() -> None:
    logging.captureWarnings(True)
    app()


if __name__ == "__main__":
    main()

"""The ``campaigns`` command line."""

from __future__ import annotations

import logging
import os
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
) -> None:
    """Run the HTTP API (Telnyx-compatible scheduled events, webhooks, /metrics)."""
    import uvicorn

    from campaigns.settings import get_settings
    from worker.api import create_app

    _logging()
    if not get_settings().api_token and host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo("refusing to bind a non-loopback address without CAMPAIGNS_API_TOKEN", err=True)
        raise typer.Exit(2)
    uvicorn.run(create_app(), host=host, port=port, log_level="warning")


@app.command()
def scheduler() -> None:
    """Run the scheduler loop (claims due events and hands them to the workers)."""
    from worker import scheduler as loop

    _logging()
    loop.main()


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Worker threads/processes")] = 8,
    pool: Annotated[str, typer.Option(help="Celery pool: threads or prefork")] = "threads",
) -> None:
    """Run a Celery worker (dispatch, reconcile)."""
    from worker.celery_app import app as celery

    _logging()
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
) -> None:
    """Run the Telnyx simulator (a test double speaking the Telnyx wire format)."""
    from worker import simulator as sim

    config = sim.SimulatorConfig(
        ring_delay=ring_delay, talk_delay=talk_delay, mix=sim.parse_mix(mix) if mix else None, seed=seed
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
        children = [
            Child("api", component_argv("api", "--port", str(port))),
            Child("scheduler", component_argv("scheduler")),
            Child("worker", component_argv("worker")),
        ]
        if with_beat:
            children.append(Child("beat", component_argv("beat")))
        typer.echo(f"campaigns up: api on http://127.0.0.1:{port} (Ctrl-C stops everything)")
        code = Supervisor(children, env=env).run()
    raise typer.Exit(code)


@app.command()
def demo(
    warp: Annotated[float, typer.Option(help="App seconds per real second")] = 60.0,
) -> None:
    """Run a whole campaign on embedded servers and the simulator; exits 0 when every event is terminal."""
    from worker.demo import run_demo

    raise typer.Exit(run_demo(warp=warp))


def _now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


def main() -> None:
    logging.captureWarnings(True)
    app()


if __name__ == "__main__":
    main()

"""The commands that run a component (api, worker, scheduler, beat, simulator), all of them together (``up``,
``demo``), or the migrations.

Imports are deferred into each command so that ``campaigns --help`` and the light commands start fast and a
component loads only what it runs (``worker`` imports Celery, ``api`` FastAPI).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from worker.cli.common import configure_logging


def migrate() -> None:
    """Apply the database migrations (alembic upgrade head)."""
    from campaigns.settings import get_settings
    from worker.migrate import upgrade

    if not get_settings().database_url:
        raise typer.BadParameter("CAMPAIGNS_DATABASE_URL is not set")
    upgrade(get_settings().database_url)
    typer.echo("database is at the latest migration")


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

    configure_logging()
    if not get_settings().api_token and host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo("refusing to bind a non-loopback address without CAMPAIGNS_API_TOKEN", err=True)
        raise typer.Exit(2)
    from worker.api import server
    from worker.api.guard import InsecureConfiguration, refuse_demo_secrets

    try:
        refuse_demo_secrets(get_settings())
    except InsecureConfiguration as exc:
        typer.echo(f"refusing to start: {exc}", err=True)
        raise typer.Exit(2) from None
    if workers > 1:
        server.run("worker.api:create_app", factory=True, host=host, port=port, workers=workers)
        return
    from worker.api import create_app

    server.run(create_app(), host=host, port=port)


MetricsPort = Annotated[
    int | None, typer.Option(help="Serve /metrics and /healthz on this port (default: CAMPAIGNS_METRICS_PORT)")
]


def scheduler(metrics_port: MetricsPort = None) -> None:
    """Run the scheduler loop (claims due events and hands them to the workers)."""
    from campaigns.settings import get_settings
    from worker import scheduler as loop

    configure_logging()
    settings = get_settings()
    loop.main(metrics_port=metrics_port or settings.metrics_port, metrics_host=settings.metrics_host)


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

    configure_logging()
    settings = get_settings()
    if metrics_port or settings.metrics_port:
        port = metrics_port or settings.metrics_port or 0
        metrics_server.serve_metrics(port, settings.metrics_host, token=settings.metrics_token)
    if pool != "prefork":  # prefork children warm up after the fork (worker.celery_app)
        from worker.runtime import warm_up

        try:
            warm_up()
        except Exception as exc:  # the database may be down at start: the first task builds it and reports
            typer.echo(f"warm-up failed ({exc!r}); the first task will retry", err=True)
    celery.worker_main(["worker", "--loglevel=INFO", f"--pool={pool}", f"--concurrency={concurrency}",
                        "--without-gossip", "--without-mingle"])  # fmt: skip


def beat(
    schedule: Annotated[Path | None, typer.Option(help="Where beat keeps its schedule state")] = None,
) -> None:
    """Run Celery beat (periodic reconciliation)."""
    import tempfile

    from worker.celery_app import app as celery

    configure_logging()
    path = schedule or Path(tempfile.gettempdir()) / f"campaigns-beat-{os.getpid()}"
    celery.start(["beat", "--loglevel=INFO", f"--schedule={path}"])


def simulator(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8081,
    mix: Annotated[str | None, typer.Option(help="Random outcomes, e.g. completed=0.6,busy=0.2,no-answer=0.2")] = None,
    ring_delay: Annotated[float, typer.Option(help="Real seconds before the outcome")] = 0.2,
    talk_delay: Annotated[float, typer.Option(help="Real seconds a completed call lasts")] = 0.5,
    late_callback_delay: Annotated[
        float, typer.Option(help="Real seconds the terminal callback of a completed_late call is held back")
    ] = 5.0,
    seed: Annotated[int | None, typer.Option()] = None,
    callbacks: Annotated[bool, typer.Option("--callbacks/--no-callbacks", help="Send status callbacks")] = True,
    list_delay: Annotated[
        float, typer.Option(help="Real seconds before a placed call shows in the TeXML call list")
    ] = 0.0,
    callback_lanes: Annotated[int, typer.Option(min=1, help="Callbacks in flight at once")] = 128,
) -> None:
    """Run the Telnyx simulator (a test double speaking the Telnyx wire format)."""
    from worker import simulator as sim

    config = sim.SimulatorConfig(
        ring_delay=ring_delay,
        talk_delay=talk_delay,
        late_callback_delay=late_callback_delay,
        mix=sim.parse_mix(mix) if mix else None,
        seed=seed,
        callbacks=callbacks,
        list_delay=list_delay,
        callback_lanes=callback_lanes,
    )
    sim.run(host=host, port=port, config=config)


def provider_check(settings_overrides: dict[str, str] | None = None) -> str | None:
    """Probe the provider with the configured key once (``GET /balance``: dials nothing); a rejected key opens the
    holds, so events wait instead of failing. Returns the one line saying so, or ``None``."""
    from sqlalchemy.orm import sessionmaker

    from campaigns.clock import clock_from_settings
    from campaigns.db import make_engine
    from campaigns.lifecycle import holds
    from campaigns.settings import Settings
    from campaigns.telephony import providers_from_settings

    settings = Settings(**(settings_overrides or {}))  # type: ignore[arg-type]  # field names, values validated
    if not settings.database_url:
        return None
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        return holds.check_at_start(
            sessionmaker(engine, expire_on_commit=False),
            providers_from_settings(settings),
            clock=clock_from_settings(settings),
            settings=settings,
        )
    except Exception as exc:  # the database may be down at start: dispatch will meet the key and hold
        return f"could not check the provider's key at start ({type(exc).__name__}); dispatch will"
    finally:
        engine.dispose()


def up(
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    with_beat: Annotated[bool, typer.Option("--beat/--no-beat", help="Also run beat")] = True,
    data_dir: Annotated[Path, typer.Option(help="Embedded servers' data (when none configured)")] = Path(
        ".campaigns-data"
    ),
) -> None:
    """Run api + scheduler + worker (+ beat) as one supervised process group."""
    from contextlib import ExitStack

    from campaigns.clock import utcnow_real
    from worker.embedded import EmbeddedServers
    from worker.metrics_server import group_multiprocess_dir
    from worker.migrate import upgrade
    from worker.supervisor import Child, Supervisor, component_argv

    env = dict(os.environ)
    env.setdefault("CAMPAIGNS_TIME_WARP_ORIGIN", utcnow_real().isoformat())
    env.setdefault("CAMPAIGNS_PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
    with ExitStack() as stack:
        if not env.get("CAMPAIGNS_DATABASE_URL") or not env.get("CAMPAIGNS_REDIS_URL"):
            servers = stack.enter_context(EmbeddedServers(directory=data_dir.resolve(), keep_data=True))
            env.setdefault("CAMPAIGNS_DATABASE_URL", servers.database_url)
            env.setdefault("CAMPAIGNS_REDIS_URL", servers.redis_url)
            typer.echo(f"embedded servers: {env['CAMPAIGNS_DATABASE_URL']} {env['CAMPAIGNS_REDIS_URL']}")
        upgrade(env["CAMPAIGNS_DATABASE_URL"])
        # One metrics directory for the group: the api's /metrics shows every component's counters and gauges.
        env["PROMETHEUS_MULTIPROC_DIR"] = stack.enter_context(group_multiprocess_dir(env))
        held = provider_check({"database_url": env["CAMPAIGNS_DATABASE_URL"]})
        if held:
            typer.echo(f"campaigns up: {held}", err=True)
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


def demo(
    warp: Annotated[float, typer.Option(help="App seconds per real second")] = 360.0,
    stay: Annotated[
        bool, typer.Option("--stay", help="Keep the api, console and components serving after the end until Ctrl-C")
    ] = False,
    results: Annotated[Path, typer.Option(help="Where the campaign's export.csv is saved at the end")] = Path(
        "campaigns-demo-results.csv"
    ),
) -> None:
    """Run a whole campaign on embedded servers and the simulator; exits 0 when every event is terminal."""
    from worker.demo import run_demo

    raise typer.Exit(run_demo(warp=warp, stay=stay, results=results))

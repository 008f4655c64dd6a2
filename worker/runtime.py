"""The per-process wiring: settings, clock, database sessions and providers, built once."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import Clock, clock_from_settings
from campaigns.db import get_sessionmaker
from campaigns.settings import Settings, built_once, get_settings
from campaigns.telephony import Providers, providers_from_settings


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    sessions: sessionmaker[Session]
    providers: Providers


@built_once
def get_runtime() -> Runtime:
    settings = get_settings()
    return Runtime(
        settings=settings,
        clock=clock_from_settings(settings),
        sessions=get_sessionmaker(),
        providers=providers_from_settings(settings),
    )


def warm_up() -> Runtime:
    """Build the runtime and open a database connection before the first task.

    The first task of each worker thread otherwise paid for it, all at once and racing to build it (the cached
    builders are not locked): ~0.9 s for each of the first batches, seen as a dispatch lag spike when a stream of
    due events starts (issue 7).
    """
    from sqlalchemy import text

    from campaigns import telephony, windows

    rt = get_runtime()
    telephony.warm_up()
    windows.warm_up()
    with rt.sessions() as session:
        session.execute(text("SELECT 1"))
    return rt


def reset_runtime() -> None:
    """Forget every cached piece (tests change the environment between runs)."""
    from campaigns.db import get_engine

    get_runtime.cache_clear()
    get_sessionmaker.cache_clear()
    get_engine.cache_clear()
    get_settings.cache_clear()

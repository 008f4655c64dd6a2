"""The per-process wiring: settings, clock, database sessions and providers, built once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import Clock, clock_from_settings
from campaigns.db import get_sessionmaker
from campaigns.provider import Providers, providers_from_settings
from campaigns.settings import Settings, get_settings


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    sessions: sessionmaker[Session]
    providers: Providers


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    settings = get_settings()
    return Runtime(
        settings=settings,
        clock=clock_from_settings(settings),
        sessions=get_sessionmaker(),
        providers=providers_from_settings(settings),
    )


def reset_runtime() -> None:
    """Forget every cached piece (tests change the environment between runs)."""
    from campaigns.db import get_engine

    get_runtime.cache_clear()
    get_sessionmaker.cache_clear()
    get_engine.cache_clear()
    get_settings.cache_clear()

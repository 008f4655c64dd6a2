"""The process-wide builders (settings, engine, sessionmaker, runtime) build once, whatever the threads do."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from campaigns.db import get_engine, get_sessionmaker
from campaigns.settings import BuiltOnce, built_once, get_settings
from worker.runtime import get_runtime


def test_threads_asking_at_once_share_one_build() -> None:
    builds: list[object] = []
    start = threading.Barrier(8)

    @built_once
    def piece() -> object:
        built = object()
        builds.append(built)
        time.sleep(0.05)  # a slow build (an engine connecting): every other thread arrives meanwhile
        return built

    def ask() -> object:
        start.wait(timeout=10)
        return piece()

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: ask(), range(8)))
    assert len(builds) == 1
    assert all(g is builds[0] for g in got)
    piece.cache_clear()
    assert piece() is not builds[0] and len(builds) == 2


def test_a_failed_build_is_not_kept() -> None:
    calls = 0

    @built_once
    def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database down at start")
        return calls

    with pytest.raises(ConnectionError):
        flaky()
    assert flaky() == 2 and flaky() == 2


def test_the_process_wide_builders_are_built_once() -> None:
    for builder in (get_settings, get_engine, get_sessionmaker, get_runtime):
        assert isinstance(builder, BuiltOnce)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_during_a_build_can_build() -> None:
    entered, release = threading.Event(), threading.Event()

    @built_once
    def piece() -> int:
        entered.set()
        release.wait(timeout=10)
        return os.getpid()

    builder = threading.Thread(target=piece)
    builder.start()
    assert entered.wait(timeout=10)
    pid = os.fork()  # the lock is held by the building thread, which the child does not have
    if pid == 0:  # pragma: no cover (the child)
        signal.alarm(10)  # a child stuck on the inherited lock dies instead of hanging the test
        release.set()
        os._exit(0 if piece() == os.getpid() else 1)
    release.set()
    builder.join(timeout=10)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert piece() == os.getpid()

"""Group commit: many callers' small writes share one transaction, so one WAL flush acknowledges all of them.

The webhook receiver uses it. Each request hands its callback to the committer and waits; one background thread
takes whatever is waiting (up to ``max_batch``), applies it in one transaction, commits, and only then answers
every caller with its own result. A caller is therefore answered exactly as before, after its write is durable;
it just shares the commit with its neighbours. Under light load a batch is a single item and nothing waits for
company (there is no timer).

If the shared transaction fails (one bad item, a deadlock with another process, a lost connection), each item of
the batch is applied again in a transaction of its own, so one failure never fails the others, and a failing
item raises in its own caller only.

Up to ``threads`` batches are applied at once (each thread spends most of its time waiting for PostgreSQL's
answers, not holding the GIL). Threads start on demand and exit after ``idle_secs`` without work, so an
application object that is dropped (tests build many) leaves no thread behind. Concurrent batches take their
row locks in a fixed order (the ``apply`` function's job), so they queue behind each other instead of
deadlocking.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from contextlib import suppress
from functools import partial
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from campaigns.db import unit_of_work

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

Apply = Callable[[Session, Sequence[T]], list[R]]
"""Apply a batch in the caller's transaction; one result per item, in order."""


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        sessions: Callable[[], sessionmaker[Session]],
        apply: Apply[T, R],
        *,
        max_batch: int = 64,
        threads: int = 4,
        idle_secs: float = 2.0,
        name: str = "group-commit",
    ) -> None:
        self._sessions = sessions
        self._apply = apply
        self._max_batch = max_batch
        self._idle_secs = idle_secs
        self._name = name
        self._queue: queue.SimpleQueue[tuple[T, Future[R]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = threads
        self._running = 0
        self.batches = 0
        """Transactions committed for batches of more than one item (for tests and benchmarks)."""

    @property
    def threads_running(self) -> int:
        return self._running

    def submit(self, item: T) -> Future[R]:
        """Queue ``item``; the future resolves after the transaction that applied it committed."""
        future: Future[R] = Future()
        with self._lock:
            self._queue.put((item, future))
            if self._running < self._threads:
                self._running += 1
                threading.Thread(target=self._run, name=f"{self._name}-{self._running}", daemon=True).start()
        return future

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._idle_secs)
            except queue.Empty:
                with self._lock:  # submit() holds the same lock: an item queued now finds a thread or starts one
                    if self._queue.empty():
                        self._running -= 1
                        return
                continue
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[tuple[T, Future[R]]]) -> None:
        try:
            with unit_of_work(self._sessions()) as session:
                results = self._apply(session, [item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _answer(batch[0][1], partial(batch[0][1].set_exception, exc))
                return
            log.warning("%s: a batch of %d failed (%s); applying its items one by one", self._name, len(batch), exc)
            for entry in batch:
                self._commit([entry])
            return
        if len(batch) > 1:
            with self._lock:  # several committer threads
                self.batches += 1
        for (_, future), result in zip(batch, results, strict=True):
            _answer(future, partial(future.set_result, result))


def _answer(future: Future[Any], answer: Callable[[], None]) -> None:
    """Answer one caller. A caller that gave up (its request was cancelled, which cancels its future) is skipped:
    answering a cancelled future raises, and that killed the committer thread with the rest of its batch
    unanswered."""
    if future.cancelled():
        return
    with suppress(InvalidStateError):  # cancelled between the check and the answer
        answer()

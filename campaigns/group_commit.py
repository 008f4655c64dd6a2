"""Group commit: many callers' small writes share one transaction, so one WAL flush acknowledges all of them.

The webhook receiver uses it. Each request hands its callback to the committer and waits; one background thread
takes whatever is waiting (up to ``max_batch``), applies it in one transaction, commits, and only then answers
every caller with its own result. A caller is therefore answered exactly as before, after its write is durable;
it just shares the commit with its neighbours. Under light load a batch is a single item and nothing waits for
company (there is no timer).

If the shared transaction fails (one bad item, a deadlock with another process, a lost connection), each item of
the batch is applied again in a transaction of its own, so one failure never fails the others, and a failing
item raises in its own caller only.

The thread is started on the first ``submit`` and exits after ``idle_secs`` without work, so an application
object that is dropped (tests build many) leaves no thread behind.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

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
        self._thread: threading.Thread | None = None
        self.batches = 0
        """Transactions committed for batches of more than one item (for tests and benchmarks)."""

    def submit(self, item: T) -> Future[R]:
        """Queue ``item``; the future resolves after the transaction that applied it committed."""
        future: Future[R] = Future()
        with self._lock:
            self._queue.put((item, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        return future

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._idle_secs)
            except queue.Empty:
                with self._lock:  # submit() holds the same lock: an item queued now finds no thread and starts one
                    if self._queue.empty():
                        self._thread = None
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
                batch[0][1].set_exception(exc)
                return
            log.warning("%s: a batch of %d failed (%s); applying its items one by one", self._name, len(batch), exc)
            for entry in batch:
                self._commit([entry])
            return
        if len(batch) > 1:
            self.batches += 1
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)

"""``campaigns up``: api, scheduler, worker and beat as one supervised process group."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0


@dataclass
class Supervisor:
    """Starts children, restarts any that dies (with back-off), stops them all on SIGINT/SIGTERM."""

    children: list[Child]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    stopping: bool = False

    def start(self, child: Child) -> None:
        child.process = subprocess.Popen(child.argv, env=self.env)
        child.started_at = time.monotonic()
        log.info("started %s (pid %s)", child.name, child.process.pid)

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        for child in self.children:
            self.start(child)
        try:
            while not self.stopping:
                for child in self.children:
                    assert child.process is not None
                    code = child.process.poll()
                    if code is None or self.stopping:
                        continue
                    uptime = time.monotonic() - child.started_at
                    child.restarts = 0 if uptime > 30 else child.restarts + 1
                    delay = min(10.0, 0.5 * 2**child.restarts)
                    print(f"campaigns up: {child.name} exited with {code}; restarting in {delay:.1f}s", file=sys.stderr)
                    time.sleep(delay)
                    self.start(child)
                time.sleep(0.2)
        finally:
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        running = [c.process for c in self.children if c.process is not None and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def component_argv(name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "worker.cli", name, *extra]

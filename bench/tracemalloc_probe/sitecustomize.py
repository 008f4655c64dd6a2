"""Benchmark-only probe: tracemalloc snapshots of one process, taken on a timer (see bench_memory.py --tracemalloc).

Put this directory on ``PYTHONPATH`` and set ``BENCH_TRACEMALLOC_DIR``; every Python process whose command line
contains the word in ``BENCH_TRACEMALLOC_MATCH`` (default ``worker``) starts tracing after
``BENCH_TRACEMALLOC_DELAY`` seconds (past its start-up, which tracing would slow down many times over: only what
is allocated later is traced, which is what a leak is) and then dumps a snapshot every
``BENCH_TRACEMALLOC_EVERY`` seconds to ``<dir>/<pid>-<n>.snap``. Nothing else is changed.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import tracemalloc


def _start() -> None:
    out = os.environ.get("BENCH_TRACEMALLOC_DIR")
    if not out or os.environ.get("BENCH_TRACEMALLOC_MATCH", "worker") not in sys.orig_argv:
        return
    every = float(os.environ.get("BENCH_TRACEMALLOC_EVERY", "60"))

    def dump() -> None:
        time.sleep(float(os.environ.get("BENCH_TRACEMALLOC_DELAY", "60")))
        tracemalloc.start(int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "12")))
        n = 0
        while True:
            time.sleep(every)
            snapshot = tracemalloc.take_snapshot()  # filtered when compared: filtering here holds the GIL long
            tmp = os.path.join(out, f".{os.getpid()}-{n:04d}.tmp")
            snapshot.dump(tmp)
            os.replace(tmp, os.path.join(out, f"{os.getpid()}-{n:04d}.snap"))
            n += 1

    threading.Thread(target=dump, name="tracemalloc-probe", daemon=True).start()


_start()

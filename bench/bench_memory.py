"""Worker and scheduler memory over a long campaign: RSS sampled while ``--events`` due events are dispatched.

    .venv/bin/python bench/bench_memory.py --events 1000000 --every 5

Runs the engine exactly as bench_dispatch.py does (simulator on loopback, no callbacks), samples the resident
memory of the scheduler and of the worker (with its children) every ``--every`` seconds, and prints the
samples with the first, middle and last values.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_dispatch
import harness


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--every", type=float, default=5.0)
    parser.add_argument("--engine-worker", default="--pool threads --concurrency 8")
    args = parser.parse_args()
    harness.exit_on_sigterm()
    print(harness.machine(), flush=True)
    samples: list[dict[str, float]] = []
    result = bench_dispatch.run_engine(
        args.events, None, lead=0, workers=[args.engine_worker.split()], rss_every=args.every, rss_log=samples
    )
    start = samples[0]["t"]
    print("seconds  sent       scheduler MiB  worker MiB")
    for s in samples:
        print(f"{s['t'] - start:7.0f}  {s['sent']:>9,.0f}  {s['scheduler']:13.1f}  {s['worker0']:10.1f}")
    third = len(samples) // 3
    for name in ("scheduler", "worker0"):
        values = [s[name] for s in samples]
        early, late = harness.median(values[1 : third + 1]), harness.median(values[-third:])
        print(f"{name}: median of the first third {early:.1f} MiB, of the last third {late:.1f} MiB, "
              f"max {max(values):.1f} MiB")  # fmt: skip
    print(f"{result.events} events in {result.seconds:.0f}s ({result.events_per_s:.0f}/s)")


if __name__ == "__main__":
    main()

"""Worker and scheduler memory over a long campaign: RSS sampled while ``--events`` due events are dispatched.

    .venv/bin/python bench/bench_memory.py --events 1000000 --every 5

Runs the engine exactly as bench_dispatch.py does (simulator on loopback, no callbacks), samples the resident
memory of the scheduler and of the worker (with its children) every ``--every`` seconds, and prints the
samples with the first, middle and last values.

``--tracemalloc DIR`` also traces the worker's Python allocations (``bench/tracemalloc_probe``; it slows the worker
down) from ``--warm-up`` seconds on, and prints what grew between its first and last snapshots:

    .venv/bin/python bench/bench_memory.py --events 60000 --tracemalloc /tmp/tm --tracemalloc-every 45
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_dispatch
import harness


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--every", type=float, default=5.0)
    parser.add_argument("--engine-worker", default="--pool threads --concurrency 8")
    parser.add_argument("--tracemalloc", type=Path, help="trace the worker's allocations, snapshots in this dir")
    parser.add_argument("--tracemalloc-every", type=float, default=60.0)
    parser.add_argument("--warm-up", type=float, default=60.0, help="seconds before tracing starts")
    args = parser.parse_args()
    harness.exit_on_sigterm()
    print(harness.machine(), flush=True)
    extra_env: dict[str, str] = {}
    if args.tracemalloc:
        args.tracemalloc.mkdir(parents=True, exist_ok=True)
        extra_env = {
            "PYTHONPATH": str(Path(__file__).resolve().parent / "tracemalloc_probe"),
            "BENCH_TRACEMALLOC_DIR": str(args.tracemalloc),
            "BENCH_TRACEMALLOC_EVERY": str(args.tracemalloc_every),
            "BENCH_TRACEMALLOC_DELAY": str(args.warm_up),
        }
    samples: list[dict[str, float]] = []
    result = bench_dispatch.run_engine(
        args.events, None, lead=0, workers=[args.engine_worker.split()], rss_every=args.every, rss_log=samples,
        extra_env=extra_env,
    )  # fmt: skip
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
    if args.tracemalloc:
        report_growth(args.tracemalloc)


def report_growth(directory: Path, *, top: int = 25) -> None:
    """Print the allocation sites that grew most between the first and the last snapshot of each process."""
    by_pid: dict[str, list[Path]] = {}
    for snap in sorted(directory.glob("*.snap")):
        by_pid.setdefault(snap.name.split("-")[0], []).append(snap)
    for pid, snaps in by_pid.items():
        if len(snaps) < 2:
            continue
        first, last = snaps[0], snaps[-1]
        ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")]
        old, new = (tracemalloc.Snapshot.load(str(s)).filter_traces(ignore) for s in (first, last))
        total = sum(s.size for s in new.statistics("filename")) - sum(s.size for s in old.statistics("filename"))
        print(f"\npid {pid}: traced Python memory {total / 2**20:+.2f} MiB from {first.name} to {last.name}")
        for stat in new.compare_to(old, "traceback")[:top]:
            if stat.size_diff <= 0:
                continue
            print(f"  {stat.size_diff / 1024:+9.1f} KiB  {stat.count_diff:+7d} blocks")
            for line in stat.traceback.format(limit=6, most_recent_first=True):
                print("      " + line)


if __name__ == "__main__":
    main()

"""Parser benchmark: generate a call list, then time ``open_call_list`` + full iteration on one core.

    .venv/bin/python bench/bench_parse.py --rows 200000

The file has a phone column (E.164 and common US national formats, over ~60 area codes; ``--international``
mixes in European/Australian numbers), a timezone and three variables, like a typical upload. Generation is not
timed. Peak RSS is the whole process's (ru_maxrss).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from campaigns.importing import ParsedRow, open_call_list

AREA_CODES = (
    "201", "202", "203", "205", "206", "207", "208", "212", "213", "214", "215", "216", "217", "301", "302", "303",
    "304", "305", "310", "312", "313", "314", "315", "316", "404", "405", "406", "407", "408", "410", "412", "414",
    "415", "469", "470", "502", "503", "504", "505", "512", "513", "515", "516", "517", "602", "603", "607", "614",
    "615", "617", "702", "704", "713", "718", "720", "773", "801", "803", "813", "817", "832", "901", "904", "912",
    "913", "917", "949", "971",
)  # fmt: skip
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Phoenix")
NAMES = ("Ann", "Ben", "Chloe", "Dan", "Eve", "Femi", "Grace", "Hiro", "Ines", "José")
FORMATS = (
    "+1{a}{b}{c}",
    "+1{a}{b}{c}",
    "+1{a}{b}{c}",
    "({a}) {b}-{c}",
    "{a}-{b}-{c}",
    "+1 {a} {b} {c}",
    "{a}.{b}.{c}",
    "1{a}{b}{c}",
)


INTERNATIONAL = ("+44 20 7946 {c}", "+33 1 42 68 {d}", "+49 30 1234{c}", "+61 2 9374 {c}")


def generate(path: Path, rows: int, seed: int, international: float) -> None:
    rnd = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["phone", "timezone", "first_name", "last_name", "appointment"])
        for i in range(rows):
            a = rnd.choice(AREA_CODES)
            b = str(rnd.randint(200, 999))
            c = f"{rnd.randint(0, 9999):04d}"
            if rnd.random() < international:
                phone = rnd.choice(INTERNATIONAL).format(c=c, d=f"{c[:2]} {c[2:]}")
            else:
                phone = rnd.choice(FORMATS).format(a=a, b=b, c=c)
            writer.writerow(
                [
                    phone,
                    rnd.choice(ZONES),
                    rnd.choice(NAMES),
                    f"Surname{i % 997}",
                    f"2025-03-{1 + i % 28:02d} {9 + i % 8}:{(i * 7) % 60:02d}",
                ]
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="parse the same file this many times (warm cache)")
    parser.add_argument(
        "--international",
        type=float,
        default=0.0,
        help="share of non-North-American numbers (these take the plain phonenumbers path, ~15 µs each)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calls.csv"
        generate(path, args.rows, args.seed, args.international)
        size = os.path.getsize(path)
        print(f"file: {args.rows:,} rows, {size / 1e6:.1f} MB")
        for run in range(args.repeat):
            good = bad = 0
            started = time.perf_counter()
            with path.open("rb") as fh:
                _layout, items = open_call_list(fh, default_region="US")
                for item in items:
                    if isinstance(item, ParsedRow):
                        good += 1
                    else:
                        bad += 1
            elapsed = time.perf_counter() - started
            print(f"run {run + 1}: {args.rows / elapsed:,.0f} rows/s ({elapsed:.2f} s; {good:,} rows, {bad:,} errors)")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {peak_kib / 1024:.1f} MiB")


if __name__ == "__main__":
    main()

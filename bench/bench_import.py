"""Import benchmark: a generated call list (phone, timezone, three variables) through the real importer.

    .venv/bin/python bench/bench_import.py --rows 1000000

Uses CAMPAIGNS_DATABASE_URL when set, else an embedded PostgreSQL. Reports rows/s end to end (parse, phone
normalization, COPY, dedupe, insert, commit) and the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles", ""]
AREAS = ["212", "617", "404", "312", "214", "713", "303", "602", "415", "206"]


def generate(path: Path, rows: int) -> None:
    rng = random.Random(1)
    with path.open("w") as f:
        f.write("phone,timezone,first_name,plan,amount_due\n")
        for i in range(rows):
            area = AREAS[i % len(AREAS)]
            local = f"{2000000 + i:07d}"
            phone = f"+1{area}{local}" if i % 4 else f"({area}) {local[:3]}-{local[3:]}"
            f.write(f"{phone},{ZONES[i % len(ZONES)]},Name{i},plan-{rng.randint(1, 5)},{rng.randint(10, 999)}.00\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with ExitStack() as stack:
        url = os.environ.get("CAMPAIGNS_DATABASE_URL")
        if not url:
            from worker.embedded import EmbeddedServers

            url = stack.enter_context(EmbeddedServers()).database_url
        dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
        name = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        from sqlalchemy.engine import make_url

        bench_url = make_url(url).set(database=name).render_as_string(hide_password=False)
        try:
            run(bench_url, args.rows)
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def run(url: str, rows: int) -> None:
    from campaigns import campaign as campaign_service
    from campaigns import importer
    from campaigns.db import make_engine, unit_of_work
    from worker.migrate import upgrade

    upgrade(url)
    from sqlalchemy.orm import sessionmaker

    factory = sessionmaker(bind=make_engine(url), expire_on_commit=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.csv"
        generate(path, rows)
        size = path.stat().st_size
        now = datetime.now(UTC)
        settings = campaign_service.validate_settings(
            {"name": "bench", "assistant_id": "a", "telnyx_agent_target": "+15553456789", "ruleset": "none"}, now=now
        )
        started = time.perf_counter()
        with path.open("rb") as data, unit_of_work(factory) as s:
            campaign = campaign_service.create_campaign(s, settings, now=now)
            report = importer.load_call_list(s, campaign, data, now=now)
            importer.apply_report(campaign, report, now=now)
        elapsed = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows={rows} file={size / 1e6:.1f} MB accepted={report.rows_accepted} duplicate={report.rows_duplicate} "
          f"rejected={report.rows_rejected}")  # fmt: skip
    print(f"elapsed={elapsed:.2f}s rate={rows / elapsed:,.0f} rows/s peak_rss={peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()

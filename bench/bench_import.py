"""Import benchmark: a generated call list (phone, timezone, three variables) through the real importer.

    .venv/bin/python bench/bench_import.py --rows 1000000 --repeat 3

Uses CAMPAIGNS_DATABASE_URL when set, else an embedded PostgreSQL. Reports rows/s end to end (parse, phone
normalization, COPY, dedupe, insert, commit) and the peak RSS of this process; then, in the same run and on the
same file, two baselines:

- ``psql \\copy`` of the file into a plain table (text columns, no index): the physical limit;
- a naive row-by-row ORM import (csv.DictReader, phonenumbers, ``session.add`` and a commit per row), measured
  on the first ``--orm-sample`` rows and extrapolated (its rate does not depend on the file size).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import statistics
import subprocess
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
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--orm-sample", type=int, default=5_000)
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
            results = [run(bench_url, args.rows, args.orm_sample) for _ in range(args.repeat)]
            if len(results) > 1:
                ours, psql, orm = (statistics.median(r[i] for r in results) for i in range(3))
                print(f"median of {len(results)}: ours {ours:,.0f} rows/s = {ours / psql:.0%} of psql \\copy "
                      f"({psql:,.0f} rows/s); naive ORM {orm:,.0f} rows/s (ours is {ours / orm:.0f}x)")  # fmt: skip
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def run(url: str, rows: int, orm_sample: int) -> tuple[float, float, float]:
    from campaigns import campaign as campaign_service
    from campaigns.db import make_engine, unit_of_work
    from campaigns.importing import import_new_campaign
    from worker.migrate import upgrade

    upgrade(url)
    from sqlalchemy.orm import sessionmaker

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute("TRUNCATE scheduled_events, campaigns, import_issues CASCADE")  # each repeat starts empty

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
            report = import_new_campaign(s, settings, data, now=now).report
        assert report is not None
        elapsed = time.perf_counter() - started
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"rows={rows} file={size / 1e6:.1f} MB accepted={report.rows_accepted} duplicate={report.rows_duplicate} "
              f"rejected={report.rows_rejected}")  # fmt: skip
        ours = rows / elapsed
        print(f"ours: elapsed={elapsed:.2f}s rate={ours:,.0f} rows/s peak_rss={peak_mib:.0f} MiB", flush=True)
        psql_rate, psql_mib = psql_copy(url, path, rows)
        print(f"psql \\copy into a plain table: rate={psql_rate:,.0f} rows/s peak_rss(psql)={psql_mib:.0f} MiB; "
              f"ours is {ours / psql_rate:.0%} of it", flush=True)  # fmt: skip
        orm_rate = naive_orm(factory, path, orm_sample, now)
        print(
            f"naive ORM row by row ({orm_sample:,} rows, extrapolated): rate={orm_rate:,.0f} rows/s, "
            f"{rows / orm_rate / 60:.0f} min for {rows:,} rows; ours is {ours / orm_rate:.0f}x faster",
            flush=True,
        )
    return ours, psql_rate, orm_rate


def psql_copy(url: str, path: Path, rows: int) -> tuple[float, float]:
    """``psql \\copy`` of the same file into a fresh plain table; rows/s and psql's peak RSS."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS plain_copy")
        conn.execute("CREATE TABLE plain_copy (phone text, timezone text, first_name text, plan text, amount_due text)")
    command = ["psql", dsn, "-q", "-c", f"\\copy plain_copy FROM '{path}' WITH (FORMAT csv, HEADER true)"]
    timed = Path("/usr/bin/time").exists()
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *command] if timed else command, check=True,
                          capture_output=True, text=True)  # fmt: skip
    elapsed = time.perf_counter() - started
    peak_mib = int(done.stderr.strip().splitlines()[-1]) / 1024 if timed else float("nan")
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM plain_copy").fetchone()
        assert row is not None and row[0] == rows
        conn.execute("DROP TABLE plain_copy")
    return rows / elapsed, peak_mib


def naive_orm(factory: object, path: Path, sample: int, now: datetime) -> float:
    """What a first version often looks like: parse each row, normalize the phone, add an ORM object, commit."""
    import phonenumbers
    from sqlalchemy.orm import Session, sessionmaker

    from campaigns.models import ScheduledEvent

    assert isinstance(factory, sessionmaker)
    done = 0
    started = time.perf_counter()
    with path.open(newline="") as f, factory() as session:
        assert isinstance(session, Session)
        for number, row in enumerate(csv.DictReader(f), start=2):
            if done >= sample:
                break
            try:
                parsed = phonenumbers.parse(row["phone"], "US")
            except phonenumbers.NumberParseException:
                continue
            if not phonenumbers.is_valid_number(parsed):
                continue
            phone = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            session.add(ScheduledEvent(
                assistant_id="a", telnyx_conversation_channel="phone_call", telnyx_end_user_target=phone,
                telnyx_agent_target="+15553456789", scheduled_at_fixed_datetime=now, status="pending",
                dynamic_variables={"first_name": row["first_name"], "plan": row["plan"],
                                   "amount_due": row["amount_due"]},
                timezone=row["timezone"] or None, created_at=now, updated_at=now, source_row=number, ruleset="none",
            ))  # fmt: skip
            session.commit()
            done += 1
    return done / (time.perf_counter() - started)


if __name__ == "__main__":
    main()

"""Staged rows as reminders: what makes two rows one reminder (``dedupe_key``), what happens to a row whose time
has passed at import (``late_policy``), and the (phone, dedupe key) set the re-upload guard compares.

Each function runs SQL on the loader's temp tables (``import_staging``, ``import_staging_issues``: see
:class:`~campaigns.importing.loader.StagingHook`) with the loader's psycopg cursor, inside its transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from campaigns.mapping import LATE_IF_BEFORE, LATE_SKIP, ListSettings

LATE_SENT: Final = "late_sent"
"""Issue kind of a late row that was imported and is due at once (reported, not a rejection)."""


@dataclass
class LateRows:
    """What ``late_policy`` did with the rows whose time had passed at import."""

    policy: str = "send_now"
    sent: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    sent_count: int = 0
    skipped_count: int = 0


def mark_duplicates(cur: Any, campaign_id: uuid.UUID, keyed: bool) -> None:
    """Rows with the same reminder as an earlier row of the file, or as an event of the campaign, become
    ``duplicate`` issues. The reminder is the phone, or (``keyed``) the row's ``dedupe_key`` values."""
    column, reason = ("dedupe_key", "same dedupe key as row ") if keyed else ("phone", "duplicate of row ")
    cur.execute(
        f"""INSERT INTO import_staging_issues
            SELECT row_number, %(column)s, {"dedupe" if keyed else "phone"}, %(reason)s || first_row, 'duplicate'
            FROM (SELECT row_number, phone, dedupe,
                         min(row_number) OVER (PARTITION BY coalesce(dedupe, phone)) AS first_row
                  FROM import_staging) s
            WHERE row_number <> first_row""",
        {"column": column, "reason": reason},
    )
    cur.execute(
        """INSERT INTO import_staging_issues
           SELECT s.row_number, %(column)s, coalesce(s.dedupe, s.phone), 'already in this campaign', 'duplicate'
           FROM import_staging s
           JOIN scheduled_events e ON e.campaign_id = %(campaign)s AND e.telnyx_end_user_target = s.phone
                                  AND e.dedupe_key = coalesce(s.dedupe, '')
           WHERE NOT EXISTS (SELECT 1 FROM import_staging_issues i
                             WHERE i.row_number = s.row_number AND i.kind = 'duplicate')""",
        {"column": column, "campaign": campaign_id},
    )


def key_set_sha256(cur: Any) -> str | None:
    """SHA-256 of the sorted, distinct (phone, dedupe key) set of the staged rows; ``None`` when there are none."""
    digest = cur.execute(
        r"""SELECT CASE WHEN count(*) > 0 THEN encode(sha256(convert_to(
                   string_agg(phone || E'\x1f' || key, E'\x1e' ORDER BY phone, key), 'UTF8')), 'hex') END
            FROM (SELECT DISTINCT phone, coalesce(dedupe, '') AS key FROM import_staging) s"""
    ).fetchone()[0]
    return str(digest) if digest is not None else None


def apply_late_policy(cur: Any, settings: ListSettings, *, now: datetime, column: str, limit: int) -> LateRows:
    """Rows still staged (no issue yet) whose ``scheduled_at`` is before ``now``: under ``send_now`` (the default)
    and ``send_now_if_before`` while its instant is ahead, they stay and are reported as ``late_sent``; otherwise
    they become ``rejected`` issues on ``column`` saying why. Rows without a ``scheduled_at`` (due at the
    campaign's start) are never late."""
    policy, expression = settings.late
    result = LateRows(policy=settings.late_policy or policy)
    cur.execute(
        """CREATE TEMP TABLE import_late (
               row_number integer, scheduled_at timestamptz, send_before timestamptz, send_before_error text,
               send boolean
           ) ON COMMIT DROP"""
    )
    cur.execute(
        """INSERT INTO import_late
           SELECT s.row_number, s.scheduled_at, s.send_before, s.send_before_error,
                  CASE WHEN %(policy)s::text = %(skip)s::text THEN false
                       WHEN %(policy)s::text = %(if_before)s::text THEN coalesce(s.send_before > %(now)s, false)
                       ELSE true END AS send
           FROM import_staging s
           WHERE s.scheduled_at < %(now)s
             AND NOT EXISTS (SELECT 1 FROM import_staging_issues i WHERE i.row_number = s.row_number)""",
        {"policy": policy, "skip": LATE_SKIP, "if_before": LATE_IF_BEFORE, "now": now},
    )
    when = "to_char(scheduled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    before = "to_char(send_before AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    cur.execute(
        f"""INSERT INTO import_staging_issues (row_number, col, value, reason, kind)
            SELECT row_number, %(column)s::text, {when},
                   CASE WHEN send THEN %(late)s::text || '; sent now (late_policy ' || %(label)s::text || ')'
                        WHEN %(policy)s::text = %(skip)s::text THEN %(late)s::text || '; skipped (late_policy skip)'
                        WHEN send_before_error IS NOT NULL THEN %(late)s::text || '; skipped: ' || send_before_error
                        ELSE %(late)s::text || ', and ' || %(expression)s::text || ' (' || {before}
                             || ') has passed too; skipped (late_policy ' || %(label)s::text || ')' END,
                   CASE WHEN send THEN %(late_sent)s::text ELSE 'rejected' END
            FROM import_late""",
        {
            "column": column,
            "label": result.policy,
            "policy": policy,
            "skip": LATE_SKIP,
            "expression": expression or "",
            "late_sent": LATE_SENT,
            "late": "late: its time had passed at import",
        },
    )
    for send, count in cur.execute("SELECT send, count(*) FROM import_late GROUP BY send").fetchall():
        if send:
            result.sent_count = int(count)
        else:
            result.skipped_count = int(count)
    for send, rows in (
        (True, result.sent),
        (False, result.skipped),
    ):
        rows.extend(
            r[0]
            for r in cur.execute(
                "SELECT row_number FROM import_late WHERE send = %s ORDER BY row_number LIMIT %s", (send, limit)
            ).fetchall()
        )
    cur.execute("DROP TABLE import_late")
    return result

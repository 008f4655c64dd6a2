"""The do-not-contact list: numbers nobody may call or text.

Entries come from operators (``manual``), imported registry files (``file``), inbound SMS opt-outs
(``sms_opt_out``) and the provider refusing a send because the recipient opted out (``provider_block``,
Telnyx messaging error 40300). The list is checked twice:

- when a call list is imported (reported: the row is skipped and counted as ``suppressed``);
- authoritatively at dispatch, by ``campaigns.lifecycle.checks.DoNotContactCheck`` (which reads this table
  itself): a suppressed event fails with the reason and no
  provider request is made. A number added after its events were scheduled is therefore still never contacted.

Numbers are stored in E.164, normalized with the same rules as the CSV importer, except that a number that is
well formed but outside any assigned range (``+1 555 …``) is accepted: the Telnyx-compatible API schedules any
E.164 string, so the list must be able to hold any of them, and suppressing a number can harm nobody. National
numbers (no ``+``) must be valid in the default region, so a file imported with the wrong region is reported.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Final

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from campaigns.models import SUPPRESSION_REASONS, Suppression
from campaigns.phones import InvalidPhone, e164_or_none, to_e164

REASONS: Final = SUPPRESSION_REASONS
PROVIDER_BLOCK_CODE: Final = "40300"
"""Telnyx messaging error "Blocked due to STOP message": the recipient opted out at the carrier/profile level."""
MAX_REPORTED_LINE_ERRORS: Final = 1000
IMPORT_CHUNK_LINES: Final = 50_000


# --- numbers ----------------------------------------------------------------------------------------------

_REGISTRY_LINE = re.compile(r"^\s*(\d{3})\s*,\s*(\d{7})\s*$")
"""The FTC registry's full-list flat file writes ``area code,number`` (``201,5550123``) on each line."""


def normalize(value: str, *, default_region: str | None = "US") -> str:
    """``value`` in E.164 as the list stores it, or ``InvalidPhone`` naming the value and the reason.

    The rules of :func:`campaigns.phones.to_e164` (well-formed international numbers outside an assigned range
    are accepted, see the module docstring), and the FTC registry's ``area code,number`` form is read too.
    """
    registry = _REGISTRY_LINE.match(value)
    try:
        return to_e164(registry.group(1) + registry.group(2) if registry else value, default_region=default_region)
    except InvalidPhone as exc:
        raise InvalidPhone(value, exc.reason) from None


# --- the list ---------------------------------------------------------------------------------------------


def serialize(entry: Suppression) -> dict[str, Any]:
    return {
        "phone_number": entry.phone,
        "reason": entry.reason,
        "note": entry.note,
        "created_at": entry.created_at.isoformat().replace("+00:00", "Z"),
    }


def _check_reason(reason: str) -> None:
    if reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r} (expected one of {', '.join(REASONS)})")


def add(
    session: Session,
    phone: str,
    *,
    now: datetime,
    reason: str = "manual",
    note: str | None = None,
    default_region: str | None = "US",
) -> tuple[Suppression, bool]:
    """Put a number on the list. Returns the entry and whether it was new (an existing entry is kept as is)."""
    _check_reason(reason)
    e164 = normalize(phone, default_region=default_region)
    created = _insert(session, e164, reason=reason, note=note, now=now)
    entry = session.get(Suppression, e164, populate_existing=True)
    assert entry is not None
    return entry, created


def _insert(session: Session, e164: str, *, reason: str, note: str | None, now: datetime) -> bool:
    inserted = session.execute(
        insert(Suppression)
        .values(phone=e164, reason=reason, note=note, created_at=now)
        .on_conflict_do_nothing(index_elements=["phone"])
        .returning(Suppression.phone)
    ).scalar_one_or_none()
    return inserted is not None


def remove(
    session: Session, phone: str, *, default_region: str | None = "US", reasons: Iterable[str] | None = None
) -> bool:
    """Take a number off the list (only when its reason is in ``reasons``, if given). True when it was there."""
    e164 = normalize(phone, default_region=default_region)
    statement = delete(Suppression).where(Suppression.phone == e164)
    if reasons is not None:
        statement = statement.where(Suppression.reason.in_(tuple(reasons)))
    removed = session.execute(statement.returning(Suppression.phone)).scalar_one_or_none()
    return removed is not None


def get(session: Session, phone: str, *, default_region: str | None = "US") -> Suppression | None:
    return session.get(Suppression, normalize(phone, default_region=default_region))


def list_entries(
    session: Session, *, reason: str | None = None, page_number: int = 1, page_size: int = 20
) -> tuple[list[Suppression], int]:
    """One page of the list, newest first, and the total count."""
    where = [] if reason is None else [Suppression.reason == reason]
    total = session.scalar(select(func.count()).select_from(Suppression).where(*where)) or 0
    rows = session.scalars(
        select(Suppression)
        .where(*where)
        .order_by(Suppression.created_at.desc(), Suppression.phone)
        .offset((page_number - 1) * page_size)
        .limit(page_size)
    ).all()
    return list(rows), total


def is_suppressed(session: Session, phone: str) -> bool:
    """Whether the (already E.164) number is on the list."""
    return session.scalar(select(Suppression.phone).where(Suppression.phone == phone)) is not None


def suppressed_among(session: Session, phones: Iterable[str]) -> dict[str, str]:
    """Which of these (already E.164) numbers are on the list, with their reason: one query."""
    wanted = list(set(phones))
    if not wanted:
        return {}
    rows = session.execute(select(Suppression.phone, Suppression.reason).where(Suppression.phone.in_(wanted)))
    return {phone: reason for phone, reason in rows}


# --- CSV import hook ----------------------------------------------------------------------------------------


def mark_suppressed_rows(session: Session, campaign_id: uuid.UUID) -> None:
    """Staging hook of the importer: staged rows whose number is on the list become ``suppressed`` issues.

    One SQL statement; see ``campaigns.importing.StagingHook`` for the contract.

    Rows already reported (rejected, duplicate) keep their first issue, so each row is counted once.
    """
    session.execute(
        text(
            """INSERT INTO import_staging_issues (row_number, col, value, reason, kind)
               SELECT s.row_number, 'phone', s.phone,
                      'on the do-not-contact list (' || x.reason || ')', 'suppressed'
               FROM import_staging s JOIN suppressions x ON x.phone = s.phone
               WHERE NOT EXISTS (SELECT 1 FROM import_staging_issues i WHERE i.row_number = s.row_number)"""
        )
    )


# --- importing a file ---------------------------------------------------------------------------------------


@dataclass
class LineError:
    line: int
    value: str
    reason: str


@dataclass
class FileImportReport:
    lines: int = 0
    """Physical lines read (blank and comment lines included)."""
    numbers: int = 0
    """Valid numbers found (duplicates within the file included)."""
    added: int = 0
    already_listed: int = 0
    """Distinct valid numbers that were already on the list (kept as they were)."""
    duplicates_in_file: int = 0
    invalid: int = 0
    errors: list[LineError] = field(default_factory=list)
    """The first ``MAX_REPORTED_LINE_ERRORS`` bad lines."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "numbers": self.numbers,
            "added": self.added,
            "already_listed": self.already_listed,
            "duplicates_in_file": self.duplicates_in_file,
            "invalid": self.invalid,
            "errors": [e.__dict__ for e in self.errors],
        }


def _parse_lines(data: IO[bytes], default_region: str | None, report: FileImportReport) -> Iterator[list[str]]:
    """Chunks of E.164 numbers; bad lines go to ``report``. Blank lines and ``#`` comments are skipped."""
    chunk: list[str] = []
    for number, raw in enumerate(data, start=1):
        report.lines = number
        line = raw.decode("utf-8", errors="replace")
        if number == 1:
            line = line.removeprefix("\ufeff")
        value = line.split("#", 1)[0].strip()
        if not value:
            continue
        try:
            chunk.append(normalize(value, default_region=default_region))
        except InvalidPhone as exc:
            report.invalid += 1
            if len(report.errors) < MAX_REPORTED_LINE_ERRORS:
                report.errors.append(LineError(number, value[:200], exc.reason))
            continue
        if len(chunk) >= IMPORT_CHUNK_LINES:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_file(
    session: Session,
    data: IO[bytes],
    *,
    now: datetime,
    reason: str = "file",
    note: str | None = None,
    default_region: str | None = "US",
    progress: Callable[[int], None] | None = None,
) -> FileImportReport:
    """Add every number of a one-number-per-line file, in the caller's transaction.

    Bad lines are reported with their line number and the good ones are still imported. Numbers already on
    the list keep their entry. Millions of lines: numbers are streamed into a temporary table with ``COPY``,
    then inserted in one ``INSERT … ON CONFLICT DO NOTHING``.
    """
    _check_reason(reason)
    report = FileImportReport()
    conn: Any = session.connection().connection.driver_connection
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS dnc_staging")
        cur.execute("CREATE TEMP TABLE dnc_staging (phone text NOT NULL) ON COMMIT DROP")
        for chunk in _parse_lines(data, default_region, report):
            report.numbers += len(chunk)
            with cur.copy("COPY dnc_staging (phone) FROM STDIN") as copy:
                copy.write("\n".join(chunk) + "\n")
            if progress is not None:
                progress(report.lines)
        distinct = cur.execute("SELECT count(DISTINCT phone) FROM dnc_staging").fetchone()[0]
        # No DISTINCT: DO NOTHING also absorbs duplicates within the file, and the sort DISTINCT needs (in the
        # database's collation) costs more than the whole insert.
        cur.execute(
            """INSERT INTO suppressions (phone, reason, note, created_at)
               SELECT phone, %s, %s, %s FROM dnc_staging
               ON CONFLICT (phone) DO NOTHING""",
            (reason, note, now),
        )
        report.added = cur.rowcount
        cur.execute("DROP TABLE dnc_staging")
    if progress is not None:
        progress(report.lines)
    report.duplicates_in_file = report.numbers - int(distinct)
    report.already_listed = int(distinct) - report.added
    return report


def import_text(session: Session, content: str, **kwargs: Any) -> FileImportReport:
    """``import_file`` for a string (tests, small API bodies)."""
    return import_file(session, io.BytesIO(content.encode()), **kwargs)


# --- inbound SMS keywords -----------------------------------------------------------------------------------

OPT_OUT_MESSAGES: Final = frozenset(
    {"stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "revoke", "opt out", "optout", "opt-out"}
)
"""A message that is exactly one of these (any case, surrounding spaces and punctuation ignored) opts out."""
OPT_OUT_PHRASE: Final = re.compile(r"^stop\b|\bopt[\s-]?out\b|\bunsubscribe\b|\brevoke\b")
"""Clearly worded opt-outs inside a longer message: one starting with STOP ("Stop texting me"), or
mentioning opting out, unsubscribing or revoking consent. CANCEL, END and QUIT only count as the whole
message: "Cancel my appointment" is not an opt-out."""
OPT_IN_MESSAGES: Final = frozenset({"start", "unstop"})
"""Exactly one of these takes back an earlier SMS opt-out (and the provider block it caused)."""
OPT_IN_REMOVES: Final = ("sms_opt_out", "provider_block")
"""An opt-in never removes an operator's entry (``manual``) or a registry file's (``file``)."""


def classify_message(body: str) -> str | None:
    """``"opt_out"``, ``"opt_in"`` or ``None`` for the text of an inbound SMS."""
    words = re.sub(r"\s+", " ", body.casefold()).strip(" \t\r\n.!?,;:'\"")
    if not words:
        return None
    if words in OPT_OUT_MESSAGES or OPT_OUT_PHRASE.search(words):
        return "opt_out"
    if words in OPT_IN_MESSAGES:
        return "opt_in"
    return None


def apply_inbound_message(session: Session, sender: str | None, body: str | None, *, now: datetime) -> str:
    """An inbound SMS: STOP-like messages add the sender (``sms_opt_out``), START/UNSTOP take it back off.

    Returns a short word for the webhook receipt.
    """
    verdict = classify_message(body or "")
    if verdict is None:
        return "inbound: no keyword"
    phone = e164_or_none(sender or "")
    if phone is None:
        return "inbound: sender is not a phone number"
    if verdict == "opt_out":
        created = _insert(
            session, phone, reason="sms_opt_out", note=f"SMS reply: {(body or '').strip()[:200]}", now=now
        )
        return "opt-out: added" if created else "opt-out: already listed"
    removed = session.execute(
        delete(Suppression)
        .where(Suppression.phone == phone, Suppression.reason.in_(OPT_IN_REMOVES))
        .returning(Suppression.phone)
    ).scalar_one_or_none()
    return "opt-in: removed" if removed else "opt-in: nothing to remove"


def record_provider_block(session: Session, phone: str, detail: str, *, now: datetime) -> bool:
    """The provider refused to message ``phone`` because it opted out (40300): list it. True when new."""
    e164 = e164_or_none(phone)
    if e164 is None:
        return False
    return _insert(session, e164, reason="provider_block", note=detail[:500], now=now)


__all__ = [
    "PROVIDER_BLOCK_CODE",
    "REASONS",
    "FileImportReport",
    "InvalidPhone",
    "LineError",
    "add",
    "apply_inbound_message",
    "classify_message",
    "get",
    "import_file",
    "is_suppressed",
    "list_entries",
    "mark_suppressed_rows",
    "normalize",
    "record_provider_block",
    "remove",
    "serialize",
    "suppressed_among",
]

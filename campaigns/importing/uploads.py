"""Uploads kept in PostgreSQL, and their import in the background.

A large upload is stored as chunks (``upload_chunks``) in the transaction that creates its campaign, so that
any worker can import it; :func:`run_stored_import` is that import, safe to run twice.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import IO, Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from campaigns.db import unit_of_work
from campaigns.importing.call_list import CsvFileError
from campaigns.importing.guard import find_duplicate_upload, refuse_duplicate
from campaigns.importing.loader import DEFAULT_STAGING_HOOKS, StagingHook, apply_report, load_call_list
from campaigns.mapping import ListSettings
from campaigns.models import Campaign, UploadChunk
from campaigns.states import ImportStatus

UPLOAD_CHUNK_BYTES = 4 * 1024 * 1024


def store_upload(session: Session, campaign_id: uuid.UUID, data: IO[bytes]) -> int:
    """Keep the uploaded file in the database so that any worker can import it. Returns its size."""
    size = 0
    seq = 0
    while block := data.read(UPLOAD_CHUNK_BYTES):
        session.add(UploadChunk(campaign_id=campaign_id, seq=seq, data=block))
        size += len(block)
        seq += 1
        session.flush()
    return size


class UploadReader(io.RawIOBase):
    """Reads a stored upload back, one chunk at a time (bounded memory)."""

    def __init__(self, session: Session, campaign_id: uuid.UUID) -> None:
        self.session = session
        self.campaign_id = campaign_id
        self.seq = 0
        self.buffer = b""
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self.buffer and not self.done:
            block = self.session.scalar(
                select(UploadChunk.data).where(UploadChunk.campaign_id == self.campaign_id, UploadChunk.seq == self.seq)
            )
            if block is None:
                self.done = True
            else:
                self.buffer = bytes(block)
                self.seq += 1
        n = min(len(target), len(self.buffer))
        target[:n] = self.buffer[:n]
        self.buffer = self.buffer[n:]
        return n


def delete_upload(session: Session, campaign_id: uuid.UUID) -> None:
    """Drop a stored upload once its import has finished (or failed for good)."""
    session.execute(text("DELETE FROM upload_chunks WHERE campaign_id = :id"), {"id": campaign_id})


def run_stored_import(
    factory: sessionmaker[Session],
    campaign_id: uuid.UUID,
    *,
    now: Callable[[], datetime],
    hooks: Sequence[StagingHook] = DEFAULT_STAGING_HOOKS,
) -> str:
    """Import a campaign's stored upload. Safe to run twice: one runs, the other finds it done or busy.

    Returns what happened, for the task's log: ``completed``, ``failed`` (a file error, kept on the campaign),
    ``nothing to do`` or ``already running elsewhere``.
    """
    with unit_of_work(factory) as s:
        campaign = s.get(Campaign, campaign_id, with_for_update=True)
        if campaign is None or campaign.import_status in (ImportStatus.COMPLETED, ImportStatus.FAILED):
            return "nothing to do"
        campaign.import_status = ImportStatus.RUNNING

    def progress(rows: int) -> None:
        with unit_of_work(factory) as p:
            p.execute(text("UPDATE campaigns SET rows_total = :n WHERE id = :id"), {"n": rows, "id": campaign_id})

    try:
        with unit_of_work(factory) as s, factory() as reader_session:
            locked = s.execute(
                text("SELECT pg_try_advisory_xact_lock(hashtextextended(:id, 0))"), {"id": str(campaign_id)}
            ).scalar_one()
            if not locked:
                return "already running elsewhere"
            campaign = s.get(Campaign, campaign_id)
            assert campaign is not None
            if campaign.import_status == ImportStatus.COMPLETED:
                return "nothing to do"
            data = io.BufferedReader(UploadReader(reader_session, campaign_id), buffer_size=1024 * 1024)
            report = load_call_list(s, campaign, data, now=now(), progress=progress, hooks=hooks)
            found = find_duplicate_upload(s, campaign, None, report.keys_sha256)
            if found is not None and not ListSettings.from_json(campaign.call_list).allow_duplicate_upload:
                raise CsvFileError(str(refuse_duplicate(found)))
            apply_report(campaign, report, now=now())
            delete_upload(s, campaign_id)
    except CsvFileError as exc:
        with unit_of_work(factory) as s:
            campaign = s.get(Campaign, campaign_id, with_for_update=True)
            assert campaign is not None
            campaign.import_status = ImportStatus.FAILED
            campaign.import_error = str(exc)
            campaign.rows_total = 0
            delete_upload(s, campaign_id)
        return ImportStatus.FAILED
    return ImportStatus.COMPLETED

"""The re-upload guard: a file that a live campaign already has (the same bytes, or the same set of (phone,
dedupe key) reminders) is flagged by a dry run and refused, unless the settings say ``allow_duplicate_upload``.

"Live" is a campaign of the same channel that is ``active`` or ``paused`` and whose import did not fail: a
canceled or completed campaign's file may be uploaded again, and a call campaign's file may become an SMS
campaign (a text and a call for each appointment is a common choice, not an accident). The hashes are stored
on the campaign (``upload_sha256``, ``upload_keys_sha256``, indexed).
"""

from __future__ import annotations

import hashlib
import io
import uuid
from typing import IO, Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from campaigns.errors import Conflict
from campaigns.models import Campaign
from campaigns.states import CampaignStatus, ImportStatus


class DuplicateUpload(Conflict):
    """The file is one a live campaign already has (409). ``campaign_id`` names that campaign."""

    def __init__(self, message: str, campaign_id: uuid.UUID) -> None:
        super().__init__(message)
        self.campaign_id = campaign_id


class HashingReader(io.RawIOBase):
    """Reads ``stream`` through, keeping the SHA-256 of every byte read (the whole file, once read to the end)."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream
        self._digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        chunk = self._stream.read(len(target))
        if not chunk:
            return 0
        self._digest.update(chunk)
        target[: len(chunk)] = chunk
        return len(chunk)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def find_duplicate_upload(
    session: Session, campaign: Campaign, content: str | None, keys: str | None
) -> dict[str, Any] | None:
    """The live campaign of ``campaign``'s channel (other than it) whose file has this ``content`` hash or this
    ``keys`` set hash: ``{"campaign_id", "name", "match": "content" | "reminders"}``, or ``None``."""
    conditions = []
    if content is not None:
        conditions.append(Campaign.upload_sha256 == content)
    if keys is not None:
        conditions.append(Campaign.upload_keys_sha256 == keys)
    if not conditions:
        return None
    query = (
        select(Campaign)
        .where(
            or_(*conditions),
            Campaign.status.in_((CampaignStatus.ACTIVE, CampaignStatus.PAUSED)),
            Campaign.import_status != ImportStatus.FAILED,
            Campaign.telnyx_conversation_channel == campaign.telnyx_conversation_channel,
            Campaign.id != campaign.id,
        )
        .order_by(Campaign.created_at)
        .limit(1)
    )
    found = session.scalars(query).first()
    if found is None:
        return None
    match = "content" if content is not None and found.upload_sha256 == content else "reminders"
    return {"campaign_id": str(found.id), "name": found.name, "match": match}


def refuse_duplicate(found: dict[str, Any]) -> DuplicateUpload:
    """The error of a real upload that the guard refuses (the dry run reports ``found`` instead)."""
    what = "the same file" if found["match"] == "content" else "the same (phone, dedupe key) reminders"
    return DuplicateUpload(
        f"campaign {found['campaign_id']} ({found['name']!r}), which is live, already has {what}; set "
        "allow_duplicate_upload (CLI --allow-duplicate-upload) to import it again",
        uuid.UUID(found["campaign_id"]),
    )

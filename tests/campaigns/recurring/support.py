"""Helpers of the recurring tests: a definition body, defining it, reading its runs back."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from campaigns import recurring
from campaigns.db import unit_of_work
from campaigns.models import RecurringDefinition, RecurringRun

NY = ZoneInfo("America/New_York")
HEADER = "phone,name,appointment_at\n"
TEMPLATE = {"assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none"}


def Z(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def body(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "appointments",
        "cron": "0 7 * * *",
        "timezone": "America/New_York",
        "source": "appointments-*.csv",
        "due": "appointment_at - 24h",
        "campaign": dict(TEMPLATE),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def define(sessions: sessionmaker[Session], directory: Path, now: datetime, **overrides: Any) -> uuid.UUID:
    definition = recurring.validate_definition(
        body(**overrides), now=now, origin="file", base_dir=directory, origin_path=str(directory / "def.toml")
    )
    with unit_of_work(sessions) as s:
        row, status = recurring.upsert_definition(s, definition, now=now)
        assert status == "created"
        return row.id


def runs(sessions: sessionmaker[Session], definition_id: uuid.UUID) -> list[RecurringRun]:
    with sessions() as s:
        return list(
            s.scalars(
                select(RecurringRun)
                .where(RecurringRun.definition_id == definition_id)
                .order_by(RecurringRun.started_at, RecurringRun.tick_at)
            )
        )


def definition_row(sessions: sessionmaker[Session], definition_id: uuid.UUID) -> RecurringDefinition:
    with sessions() as s:
        return s.get_one(RecurringDefinition, definition_id)


def count(sessions: sessionmaker[Session], model: Any, *where: Any) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)

"""Recurring definitions over HTTP (``/v1/recurring``): list, create or update, detail with run history, run now."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns import events as events_service
from campaigns import recurring
from campaigns.errors import FieldError, ValidationFailed
from campaigns.models import RecurringDefinition, RecurringRun
from worker.api_campaigns import Db
from worker.runtime import Runtime


def recurring_router(rt: Callable[[], Runtime], db: Db, auth: Any) -> APIRouter:
    router = APIRouter(prefix="/v1/recurring", dependencies=[auth])

    @router.get("")
    async def list_definitions(
        page_number: Annotated[int, Query(alias="page[number]", ge=1, le=events_service.MAX_PAGE_NUMBER)] = 1,
        page_size: Annotated[int, Query(alias="page[size]", ge=1, le=250)] = 20,
    ) -> dict[str, Any]:
        now = rt().clock.now()

        def page(s: Session) -> dict[str, Any]:
            total = s.scalar(select(func.count()).select_from(RecurringDefinition)) or 0
            rows = s.scalars(
                select(RecurringDefinition)
                .order_by(RecurringDefinition.name)
                .offset((page_number - 1) * page_size)
                .limit(page_size)
            ).all()
            data = []
            for row in rows:
                body = recurring.serialize_definition(s, row, now=now)
                last = s.scalars(
                    select(RecurringRun)
                    .where(RecurringRun.definition_id == row.id)
                    .order_by(RecurringRun.started_at.desc(), RecurringRun.id.desc())
                    .limit(1)
                ).first()
                body["last_run"] = recurring.serialize_run(s, last) if last is not None else None
                data.append(body)
            return events_service.page_envelope(data, total, page_number, page_size)

        return await db(page)

    @router.post("", status_code=201)
    async def upsert_definition(request: Request) -> JSONResponse:
        """Create, or replace by name, a definition. Its ``source`` must be under ``CAMPAIGNS_RECURRING_DIR``."""
        try:
            body = json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError):
            raise ValidationFailed([FieldError("", "request body is not valid JSON")]) from None
        root = rt().settings.recurring_dir
        if not root:
            detail = "CAMPAIGNS_RECURRING_DIR is not set: API definitions may only read files under that directory"
            raise ValidationFailed([FieldError("/source", detail)])
        now = rt().clock.now()
        definition = recurring.validate_definition(
            body, now=now, origin="api", base_dir=Path(root), allowed_root=Path(root)
        )

        def save(s: Session) -> tuple[str, dict[str, Any]]:
            row, status = recurring.upsert_definition(s, definition, now=now)
            return status, recurring.serialize_definition(s, row, runs=20, now=now)

        status, result = await db(save)
        return JSONResponse(result, status_code=201 if status == "created" else 200)

    @router.get("/{ref}")
    async def get_definition(ref: str, runs: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        """A definition (by name or id) with its next runs and its run history, newest first."""
        now = rt().clock.now()
        return await db(
            lambda s: recurring.serialize_definition(s, recurring.get_definition(s, ref), runs=runs, now=now)
        )

    @router.post("/{ref}/run-now", status_code=201)
    async def run_now(ref: str, force: Annotated[bool, Query()] = False) -> dict[str, Any]:
        """Run the definition now (its schedule is unchanged). ``force`` re-reads files already read; reminders
        already scheduled are still skipped by their dedupe key."""
        runtime = rt()
        result = await run_in_threadpool(
            recurring.run_now,
            runtime.sessions,
            ref,
            now=runtime.clock.now(),
            force=force,
            allowed_root=runtime.settings.recurring_dir,
        )
        return await db(lambda s: recurring.serialize_run(s, s.get_one(RecurringRun, result.run_id)))

    return router

"""Recurring definitions over HTTP (``/v1/recurring``): list, create or update, detail with run history, run now,
delete."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from campaigns import recurring
from campaigns.db import unit_of_work
from campaigns.errors import FieldError, NotFound, ValidationFailed
from campaigns.models import RecurringRun
from campaigns.paging import page_envelope
from worker.api.deps import Auth, JsonBody, PageDep, RuntimeDep, SessionDep
from worker.api.errors import responses
from worker.api.schemas.common import json_body
from worker.api.schemas.recurring import RecurringDefinition as DefinitionBody
from worker.api.schemas.recurring import (
    RecurringDefinitionCreate,
    RecurringDefinitionPage,
)
from worker.api.schemas.recurring import RecurringRun as RunBody

router = APIRouter(prefix="/v1/recurring", tags=["recurring"], dependencies=[Auth], responses=responses(401))

MAX_RUNS_SHOWN = 500


def _checked_ref(ref: str) -> str:
    """A name or id that could be stored: a NUL character can name no definition (and PostgreSQL refuses it)."""
    if "\x00" in ref:
        raise NotFound("recurring definition", ref)
    return ref


@router.get("", response_model=RecurringDefinitionPage, response_model_exclude_unset=True)
def list_definitions(session: SessionDep, page: PageDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Definitions by name, each with its last run."""
    now = runtime.clock.now()
    rows = recurring.list_definitions(session, offset=page.offset, limit=page.size)
    last_runs = recurring.last_runs(session, [row.id for row in rows])
    data = []
    for row in rows:
        body = recurring.serialize_definition(session, row, now=now)
        last = last_runs.get(row.id)
        body["last_run"] = recurring.serialize_run(session, last) if last is not None else None
        data.append(body)
    total = recurring.count_definitions(session)
    return page_envelope(data, total, page)


@router.post(
    "",
    status_code=201,
    response_model=DefinitionBody,
    response_model_exclude_unset=True,
    responses=responses(400, 409, success={200: {"model": DefinitionBody, "description": "Replaced (same name)"}}),
    openapi_extra=json_body(RecurringDefinitionCreate),
)
def upsert_definition(body: JsonBody, response: Response, session: SessionDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Create, or replace by name, a definition. Its ``source`` must be under ``CAMPAIGNS_RECURRING_DIR``."""
    root = runtime.settings.recurring_dir
    if not root:
        detail = "CAMPAIGNS_RECURRING_DIR is not set: API definitions may only read files under that directory"
        raise ValidationFailed([FieldError("/source", detail)])
    now = runtime.clock.now()
    definition = recurring.validate_definition(
        body, now=now, origin="api", base_dir=Path(root), allowed_root=Path(root)
    )
    row, status = recurring.upsert_definition(session, definition, now=now)
    response.status_code = 201 if status == "created" else 200
    return recurring.serialize_definition(session, row, runs=20, now=now)


@router.get("/{ref}", response_model=DefinitionBody, response_model_exclude_unset=True, responses=responses(400, 404))
def get_definition(
    ref: str, session: SessionDep, runtime: RuntimeDep, runs: Annotated[int, Query(ge=1, le=MAX_RUNS_SHOWN)] = 50
) -> dict[str, Any]:
    """A definition (by name or id) with its next runs and its run history, newest first."""
    found = recurring.get_definition(session, _checked_ref(ref))
    return recurring.serialize_definition(session, found, runs=runs, now=runtime.clock.now())


@router.delete("/{ref}", status_code=204, responses=responses(400, 404, 409))
def delete_definition(ref: str, session: SessionDep) -> Response:
    """Delete a definition made through the API, with its runs and what they read; the campaigns it created
    stay (cancel them separately). A definition file's definition is 409: remove its file instead."""
    recurring.delete_definition(session, _checked_ref(ref))
    return Response(status_code=204)


@router.post("/{ref}/run-now", status_code=201, response_model=RunBody, responses=responses(400, 404, 409))
async def run_now(ref: str, runtime: RuntimeDep, force: Annotated[bool, Query()] = False) -> dict[str, Any]:
    """Run the definition now (its schedule is unchanged). ``force`` re-reads files already read; reminders
    already scheduled are still skipped by their dedupe key."""
    result = await run_in_threadpool(
        recurring.run_now,
        runtime.sessions,
        _checked_ref(ref),
        now=runtime.clock.now(),
        force=force,
        allowed_root=runtime.settings.recurring_dir,
    )

    def serialized() -> dict[str, Any]:
        with unit_of_work(runtime.sessions) as s:
            return recurring.serialize_run(s, s.get_one(RecurringRun, result.run_id))

    return await run_in_threadpool(serialized)

"""Campaign endpoints (``/v1/campaigns``): upload, preflight, progress, controls, exports."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.orm import Session

from campaigns import campaign as campaign_service
from campaigns import events, importing
from campaigns.db import unit_of_work
from campaigns.errors import FieldError, ValidationFailed
from campaigns.lifecycle import holds
from campaigns.paging import page_envelope
from campaigns.states import EVENT_STATUSES
from worker.api.deps import Auth, EnqueueDep, EnqueueImport, PageDep, RuntimeDep, SessionDep, uploaded_size
from worker.api.errors import responses
from worker.api.schemas.campaigns import Campaign, CampaignDryRun, CampaignPage
from worker.api.schemas.events import CampaignEventPage
from worker.runtime import Runtime

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], dependencies=[Auth], responses=responses(401))


def celery_enqueue_import(campaign_id: uuid.UUID) -> None:
    from worker.tasks import import_campaign

    import_campaign.delay(str(campaign_id))


def file_error(message: str) -> ValidationFailed:
    return ValidationFailed([FieldError("/file", message, title="Invalid file")])


@router.post(
    "",
    status_code=201,
    response_model=Campaign,
    responses=responses(
        400, success={200: {"model": CampaignDryRun, "description": "The dry-run report (?dry_run=true)"}}
    ),
)
async def create_campaign(
    file: Annotated[UploadFile, File(description="The call list (CSV)")],
    campaign: Annotated[str, Form(description="Campaign settings as JSON")],
    runtime: RuntimeDep,
    enqueue: EnqueueDep,
    dry_run: Annotated[bool, Query()] = False,
) -> Any:
    """Create a campaign from a CSV call list (small files are imported before the answer, large ones by a task)."""
    try:
        body = json.loads(campaign)
    except ValueError:
        raise ValidationFailed([FieldError("/campaign", "campaign settings are not valid JSON")]) from None
    settings = campaign_service.validate_settings(body, now=runtime.clock.now())
    # The file as the form parser spooled it (once: no second copy); the guard cut the body off past the cap.
    size = uploaded_size(file, runtime.settings.max_upload_bytes)
    try:
        result = await run_in_threadpool(create_from_upload, runtime, settings, file.file, size, dry_run, enqueue)
    finally:
        await file.close()
    if dry_run:
        return JSONResponse(CampaignDryRun.model_validate(result).model_dump(mode="json", by_alias=True))
    return result


@router.get("", response_model=CampaignPage)
def list_campaigns(session: SessionDep, page: PageDep) -> dict[str, Any]:
    """Campaigns, newest first."""
    rows, total = campaign_service.list_campaigns(session, page)
    held = holds.open_holds(session)  # once for the page, not once per row
    body = [campaign_service.serialize_campaign(session, c, open_holds=held) for c in rows]
    return page_envelope(body, total, page)


@router.get("/{campaign_id}", response_model=Campaign, responses=responses(404))
def get_campaign(campaign_id: str, session: SessionDep) -> dict[str, Any]:
    return campaign_service.serialize_campaign(session, campaign_service.get_campaign(session, campaign_id))


def _control(verb: Callable[..., Any], session: Session, campaign_id: str, runtime: Runtime) -> dict[str, Any]:
    found = campaign_service.get_campaign(session, campaign_id, for_update=True)
    verb(session, found, now=runtime.clock.now())
    return campaign_service.serialize_campaign(session, found)


_CONTROL_ERRORS = responses(404, 409)


@router.post("/{campaign_id}/pause", response_model=Campaign, responses=_CONTROL_ERRORS)
def pause_campaign(campaign_id: str, session: SessionDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Stop dispatching the campaign's events; calls under way finish."""
    return _control(campaign_service.pause, session, campaign_id, runtime)


@router.post("/{campaign_id}/resume", response_model=Campaign, responses=_CONTROL_ERRORS)
def resume_campaign(campaign_id: str, session: SessionDep, runtime: RuntimeDep) -> dict[str, Any]:
    return _control(campaign_service.resume, session, campaign_id, runtime)


@router.post("/{campaign_id}/cancel", response_model=Campaign, responses=_CONTROL_ERRORS)
def cancel_campaign(campaign_id: str, session: SessionDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Cancel the pending events; events in progress make no further attempts."""
    return _control(campaign_service.cancel, session, campaign_id, runtime)


@router.get("/{campaign_id}/events", response_model=CampaignEventPage, responses=responses(400, 404))
def campaign_events(
    campaign_id: str,
    session: SessionDep,
    page: PageDep,
    status: Annotated[str | None, Query(json_schema_extra={"enum": list(EVENT_STATUSES)})] = None,
) -> dict[str, Any]:
    """The campaign's events with the engine's statuses, deleted ones included."""
    found = campaign_service.get_campaign(session, campaign_id)
    rows, total = events.list_events(session, events.campaign_filter(found.id, status), page)
    return page_envelope([events.serialize_event(e) for e in rows], total, page)


_CSV = responses(404, success={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}})


@router.get("/{campaign_id}/export.csv", response_class=StreamingResponse, responses=_CSV)
def export_csv(campaign_id: str, session: SessionDep, runtime: RuntimeDep) -> StreamingResponse:
    """Every event with its outcome, one row each."""
    found = campaign_service.get_campaign(session, campaign_id)
    return _stream(runtime, lambda s: importing.export_results(s, found), f"campaign-{found.id}-results.csv")


@router.get("/{campaign_id}/attempts.csv", response_class=StreamingResponse, responses=_CSV)
def attempts_csv(campaign_id: str, session: SessionDep, runtime: RuntimeDep) -> StreamingResponse:
    """Every attempt of every event, one row each (a no-answer before the answered call is its own row)."""
    found = campaign_service.get_campaign(session, campaign_id)
    return _stream(runtime, lambda s: importing.export_attempts(s, found), f"campaign-{found.id}-attempts.csv")


@router.get("/{campaign_id}/errors.csv", response_class=StreamingResponse, responses=_CSV)
def errors_csv(campaign_id: str, session: SessionDep, runtime: RuntimeDep) -> StreamingResponse:
    """The rows of the upload that were not imported, and why."""
    found = campaign_service.get_campaign(session, campaign_id)
    return _stream(runtime, lambda s: importing.export_issues(s, found.id), f"campaign-{found.id}-errors.csv")


def _stream(rt: Runtime, produce: Callable[[Session], Iterator[str]], filename: str) -> StreamingResponse:
    def body() -> Iterator[bytes]:
        with rt.sessions() as s:
            for line in produce(s):
                yield line.encode("utf-8")

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def create_from_upload(
    rt: Runtime,
    settings: campaign_service.CampaignSettings,
    data: IO[bytes],
    size: int,
    dry_run: bool,
    enqueue_import: EnqueueImport,
) -> dict[str, Any]:
    """Create the campaign from a spooled upload (or only check it: ``dry_run``), as ``POST /v1/campaigns`` and
    the console's form do; the campaign as the API shows it, or ``{"dry_run": true, "import": report}``."""
    in_background = not dry_run and size > rt.settings.inline_import_max_bytes
    try:
        with unit_of_work(rt.sessions) as s:
            created = importing.import_new_campaign(
                s, settings, data, now=rt.clock.now(), dry_run=dry_run, in_background=in_background
            )
            if created.campaign is None:  # a dry run: nothing was created
                assert created.report is not None
                return {"dry_run": True, "import": created.report.as_dict()}
            result = campaign_service.serialize_campaign(s, created.campaign)
    except importing.SettingsMismatch as exc:  # the file is fine; a setting does not fit it
        raise ValidationFailed([FieldError(f"/campaign/{exc.setting}", str(exc))]) from None
    except importing.CsvFileError as exc:
        raise file_error(str(exc)) from None
    if not created.in_background:
        return result
    enqueue_import(created.campaign.id)  # only after the campaign and its file are committed
    return result

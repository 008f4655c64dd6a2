"""Campaign endpoints (``/v1/campaigns``): upload, preflight, progress, controls, exports."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns import campaign as campaign_service
from campaigns import events as events_service
from campaigns import importing as importer
from campaigns.db import rolled_back, unit_of_work
from campaigns.errors import FieldError, ValidationFailed
from campaigns.importing import CsvFileError, export, open_call_list
from campaigns.models import Campaign
from worker.runtime import Runtime

T = TypeVar("T")
EnqueueImport = Callable[[uuid.UUID], None]


class Db(Protocol):
    """Runs a function in a unit of work on a worker thread."""

    def __call__(self, fn: Callable[[Session], T]) -> Awaitable[T]: ...


def celery_enqueue_import(campaign_id: uuid.UUID) -> None:
    from worker.tasks import import_campaign

    import_campaign.delay(str(campaign_id))


def file_error(message: str) -> ValidationFailed:
    return ValidationFailed([FieldError("/file", message, title="Invalid file")])


def campaign_router(
    rt: Callable[[], Runtime],
    db: Db,
    auth: Any,
    enqueue_import: EnqueueImport = celery_enqueue_import,
) -> APIRouter:
    router = APIRouter(prefix="/v1/campaigns", dependencies=[auth])

    @router.post("", status_code=201)
    async def create_campaign(
        file: Annotated[UploadFile, File(description="The call list (CSV)")],
        campaign: Annotated[str, Form(description="Campaign settings as JSON")],
        dry_run: Annotated[bool, Query()] = False,
    ) -> JSONResponse:
        try:
            body = json.loads(campaign)
        except ValueError:
            raise ValidationFailed([FieldError("/campaign", "campaign settings are not valid JSON")]) from None
        now = rt().clock.now()
        settings = campaign_service.validate_settings(body, now=now)
        spooled = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 (closed below)
        try:
            size = 0
            limit = rt().settings.max_upload_bytes
            while block := await file.read(1024 * 1024):
                size += len(block)
                if size > limit:
                    raise file_error(f"the file is larger than the {limit} byte limit")
                spooled.write(block)
            spooled.seek(0)
            result = await run_in_threadpool(_create, rt(), settings, spooled, size, dry_run, enqueue_import)
        finally:
            spooled.close()
        return JSONResponse(result, status_code=200 if dry_run else 201)

    @router.get("")
    async def list_campaigns(
        page_number: Annotated[int, Query(alias="page[number]", ge=1, le=events_service.MAX_PAGE_NUMBER)] = 1,
        page_size: Annotated[int, Query(alias="page[size]", ge=1, le=250)] = 20,
    ) -> dict[str, Any]:
        def page(s: Session) -> dict[str, Any]:
            total = s.scalar(select(func.count()).select_from(Campaign)) or 0
            rows = s.scalars(
                select(Campaign)
                .order_by(Campaign.created_at.desc())
                .offset((page_number - 1) * page_size)
                .limit(page_size)
            ).all()
            return events_service.page_envelope(
                [campaign_service.serialize_campaign(s, c) for c in rows], total, page_number, page_size
            )

        return await db(page)

    @router.get("/{campaign_id}")
    async def get_campaign(campaign_id: str) -> dict[str, Any]:
        return await db(lambda s: campaign_service.serialize_campaign(s, campaign_service.get_campaign(s, campaign_id)))

    def control(verb: Callable[..., Any]) -> Callable[[str], Awaitable[dict[str, Any]]]:
        async def handler(campaign_id: str) -> dict[str, Any]:
            now = rt().clock.now()

            def run(s: Session) -> dict[str, Any]:
                found = campaign_service.get_campaign(s, campaign_id, for_update=True)
                verb(s, found, now=now)
                return campaign_service.serialize_campaign(s, found)

            return await db(run)

        return handler

    router.add_api_route("/{campaign_id}/pause", control(campaign_service.pause), methods=["POST"])
    router.add_api_route("/{campaign_id}/resume", control(campaign_service.resume), methods=["POST"])
    router.add_api_route("/{campaign_id}/cancel", control(campaign_service.cancel), methods=["POST"])

    @router.get("/{campaign_id}/events")
    async def campaign_events(
        campaign_id: str,
        page_number: Annotated[int, Query(alias="page[number]", ge=1, le=events_service.MAX_PAGE_NUMBER)] = 1,
        page_size: Annotated[int, Query(alias="page[size]", ge=1, le=250)] = 20,
        status: str | None = None,
    ) -> dict[str, Any]:
        def page(s: Session) -> dict[str, Any]:
            found = campaign_service.get_campaign(s, campaign_id)
            filters = events_service.EventFilter(campaign_id=found.id, status=status)
            rows, total = events_service.list_events(s, filters, page_number=page_number, page_size=page_size)
            return events_service.page_envelope(
                [events_service.serialize_event(e) for e in rows], total, page_number, page_size
            )

        return await db(page)

    @router.get("/{campaign_id}/export.csv")
    async def export_csv(campaign_id: str) -> StreamingResponse:
        found = await db(lambda s: campaign_service.get_campaign(s, campaign_id))
        return _stream(rt(), lambda s: export.export_results(s, found), f"campaign-{found.id}-results.csv")

    @router.get("/{campaign_id}/errors.csv")
    async def errors_csv(campaign_id: str) -> StreamingResponse:
        found = await db(lambda s: campaign_service.get_campaign(s, campaign_id))
        return _stream(rt(), lambda s: export.export_issues(s, found.id), f"campaign-{found.id}-errors.csv")

    return router


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


def _create(
    rt: Runtime,
    settings: campaign_service.CampaignSettings,
    data: Any,
    size: int,
    dry_run: bool,
    enqueue_import: EnqueueImport,
) -> dict[str, Any]:
    now = rt.clock.now()
    try:
        # Header problems are found before anything is created.
        open_call_list(data, default_region=settings.default_region or "US")
        data.seek(0)
        if dry_run:
            with rolled_back(rt.sessions) as s:
                found = campaign_service.create_campaign(s, settings, now=now)
                report = importer.load_call_list(s, found, data, now=now, dry_run=True)
            return {"dry_run": True, "import": report.as_dict()}
        if size <= rt.settings.inline_import_max_bytes:
            with unit_of_work(rt.sessions) as s:
                found = campaign_service.create_campaign(s, settings, now=now)
                report = importer.load_call_list(s, found, data, now=now)
                importer.apply_report(found, report, now=now)
                return campaign_service.serialize_campaign(s, found)
    except CsvFileError as exc:
        raise file_error(str(exc)) from None
    with unit_of_work(rt.sessions) as s:
        found = campaign_service.create_campaign(s, settings, now=now)
        found.import_status = "pending"
        importer.store_upload(s, found.id, data)
        result = campaign_service.serialize_campaign(s, found)
    enqueue_import(found.id)  # only after the campaign and its file are committed
    return result

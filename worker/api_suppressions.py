"""Do-not-contact list endpoints (``/v1/suppressions``): list, add, remove, import a registry file."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from typing import IO, Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from campaigns import events as events_service
from campaigns import suppression
from campaigns.db import unit_of_work
from campaigns.errors import FieldError, ValidationFailed
from worker.api_campaigns import Db
from worker.runtime import Runtime

MAX_PAGE_SIZE = 250


def _normalize(phone: str, pointer: str, region: str | None) -> str:
    try:
        return suppression.normalize(phone, default_region=region)
    except suppression.InvalidPhone as exc:
        raise ValidationFailed([FieldError(pointer, f"{exc.value!r} is not a phone number: {exc.reason}")]) from None


def _check_region(region: str | None, pointer: str = "/default_region") -> str | None:
    import phonenumbers

    if region is not None and region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationFailed([FieldError(pointer, f"unknown region {region!r} (expected e.g. US, CA, GB)")])
    return region


def _check_reason(reason: str | None, pointer: str) -> None:
    if reason is not None and reason not in suppression.REASONS:
        raise ValidationFailed([FieldError(pointer, f"must be one of {', '.join(suppression.REASONS)}")])


def suppression_router(rt: Callable[[], Runtime], db: Db, auth: Any) -> APIRouter:
    router = APIRouter(prefix="/v1/suppressions", dependencies=[auth])

    @router.get("")
    async def list_suppressions(
        page_number: Annotated[int, Query(alias="page[number]", ge=1, le=events_service.MAX_PAGE_NUMBER)] = 1,
        page_size: Annotated[int, Query(alias="page[size]", ge=1, le=MAX_PAGE_SIZE)] = 20,
        reason: str | None = None,
    ) -> dict[str, Any]:
        _check_reason(reason, "/reason")

        def page(s: Session) -> dict[str, Any]:
            rows, total = suppression.list_entries(s, reason=reason, page_number=page_number, page_size=page_size)
            return events_service.page_envelope([suppression.serialize(r) for r in rows], total, page_number, page_size)

        return await db(page)

    @router.post("", status_code=201)
    async def add_suppression(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError):
            raise ValidationFailed([FieldError("", "request body is not valid JSON")]) from None
        if not isinstance(body, dict):
            raise ValidationFailed([FieldError("", "request body must be a JSON object")])
        problems: list[FieldError] = []
        phone, reason, note = body.get("phone_number"), body.get("reason", "manual"), body.get("note")
        region = body.get("default_region", "US")
        if not isinstance(phone, str) or not phone.strip():
            problems.append(FieldError("/phone_number", "is required and must be a string"))
        if not isinstance(reason, str) or reason not in suppression.REASONS:
            problems.append(FieldError("/reason", f"must be one of {', '.join(suppression.REASONS)}"))
        if note is not None and (not isinstance(note, str) or len(note) > 2000 or "\x00" in note):
            problems.append(FieldError("/note", "must be a string of at most 2000 characters, without NUL"))
        if region is not None and not isinstance(region, str):
            problems.append(FieldError("/default_region", "must be a region code such as US"))
        if problems:
            raise ValidationFailed(problems)
        assert isinstance(phone, str) and isinstance(reason, str)
        e164 = _normalize(phone, "/phone_number", _check_region(region))
        now = rt().clock.now()

        def create(s: Session) -> tuple[dict[str, Any], bool]:
            entry, created = suppression.add(s, e164, now=now, reason=reason, note=note, default_region=None)
            return suppression.serialize(entry), created

        entry, created = await db(create)
        return JSONResponse(entry, status_code=201 if created else 200)

    @router.post("/import")
    async def import_suppressions(
        request: Request,
        reason: str = "file",
        note: str | None = None,
        default_region: str | None = "US",
    ) -> dict[str, Any]:
        _check_reason(reason, "/reason")
        if note is not None and (len(note) > 2000 or "\x00" in note):
            raise ValidationFailed([FieldError("/note", "must be at most 2000 characters, without NUL")])
        region = _check_region(default_region)
        limit = rt().settings.max_upload_bytes
        spooled = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 (closed below)
        try:
            content_type = request.headers.get("content-type", "")
            if content_type.startswith("multipart/form-data"):
                form = await request.form()
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise ValidationFailed(
                        [FieldError("/file", "a multipart field 'file' with the numbers is required")]
                    )
                await _spool(upload.read, spooled, limit)
            else:
                await _spool_stream(request, spooled, limit)
            spooled.seek(0)
            report = await run_in_threadpool(_import, rt(), spooled, reason, note, region)
        finally:
            spooled.close()
        return report.as_dict()

    @router.get("/{phone}")
    async def get_suppression(phone: str) -> JSONResponse:
        e164 = _normalize(phone, "/phone_number", "US")

        def fetch(s: Session) -> dict[str, Any] | None:
            entry = suppression.get(s, e164)
            return None if entry is None else suppression.serialize(entry)

        found = await db(fetch)
        return _not_listed(e164) if found is None else JSONResponse(found)

    @router.delete("/{phone}", status_code=204)
    async def delete_suppression(phone: str) -> Response:
        e164 = _normalize(phone, "/phone_number", "US")
        if not await db(lambda s: suppression.remove(s, e164)):
            return _not_listed(e164)
        return Response(status_code=204)

    return router


def _not_listed(e164: str) -> JSONResponse:
    error = {"code": "10005", "title": "Resource not found", "detail": f"{e164} is not on the do-not-contact list"}
    return JSONResponse({"errors": [error]}, status_code=404)


def _too_large(limit: int) -> ValidationFailed:
    return ValidationFailed(
        [FieldError("/file", f"the file is larger than the {limit} byte limit", title="Invalid file")]
    )


async def _spool(read: Callable[[int], Any], target: IO[bytes], limit: int) -> None:
    size = 0
    while block := await read(1024 * 1024):
        size += len(block)
        if size > limit:
            raise _too_large(limit)
        target.write(block)


async def _spool_stream(request: Request, target: IO[bytes], limit: int) -> None:
    size = 0
    async for block in request.stream():
        size += len(block)
        if size > limit:
            raise _too_large(limit)
        target.write(block)


def _import(
    rt: Runtime, data: IO[bytes], reason: str, note: str | None, region: str | None
) -> suppression.FileImportReport:
    with unit_of_work(rt.sessions) as s:
        return suppression.import_file(s, data, now=rt.clock.now(), reason=reason, note=note, default_region=region)

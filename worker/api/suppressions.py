"""Do-not-contact list endpoints (``/v1/suppressions``): list, add, remove, import a registry file."""

from __future__ import annotations

import tempfile
from typing import IO, Annotated, Any

import phonenumbers
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from campaigns import suppression
from campaigns.db import unit_of_work
from campaigns.errors import FieldError, ValidationFailed
from campaigns.paging import page_envelope
from worker.api.deps import Auth, JsonBody, PageDep, RuntimeDep, SessionDep, spool, uploaded_size
from worker.api.errors import not_found, responses
from worker.api.schemas.common import json_body
from worker.api.schemas.suppressions import Suppression, SuppressionCreate, SuppressionImport, SuppressionPage
from worker.runtime import Runtime

router = APIRouter(prefix="/v1/suppressions", tags=["suppressions"], dependencies=[Auth], responses=responses(401))

MAX_NOTE = 2000
SPOOL_IN_MEMORY = 8 * 1024 * 1024
"""Bytes of an upload kept in memory before it spills to a temporary file."""


def _reason_query() -> Any:
    return Query(json_schema_extra={"enum": list(suppression.REASONS)})


def _normalize(phone: str, pointer: str, region: str | None) -> str:
    try:
        return suppression.normalize(phone, default_region=region)
    except suppression.InvalidPhone as exc:
        raise ValidationFailed([FieldError(pointer, f"{exc.value!r} is not a phone number: {exc.reason}")]) from None


def _check_region(region: str | None, pointer: str = "/default_region") -> str | None:
    if region is not None and region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationFailed([FieldError(pointer, f"unknown region {region!r} (expected e.g. US, CA, GB)")])
    return region


def _check_reason(reason: str | None, pointer: str) -> None:
    if reason is not None and reason not in suppression.REASONS:
        raise ValidationFailed([FieldError(pointer, f"must be one of {', '.join(suppression.REASONS)}")])


def _not_listed(e164: str) -> Response:
    return not_found(f"{e164} is not on the do-not-contact list")


@router.get("", response_model=SuppressionPage, responses=responses(400))
def list_suppressions(
    session: SessionDep, page: PageDep, reason: Annotated[str | None, _reason_query()] = None
) -> dict[str, Any]:
    _check_reason(reason, "/reason")
    rows, total = suppression.list_entries(session, reason=reason, page_number=page.number, page_size=page.size)
    return page_envelope([suppression.serialize(r) for r in rows], total, page)


@router.post(
    "",
    status_code=201,
    response_model=Suppression,
    responses=responses(
        400, success={200: {"model": Suppression, "description": "Already listed: the entry as it was"}}
    ),
    openapi_extra=json_body(SuppressionCreate),
)
def add_suppression(body: JsonBody, response: Response, session: SessionDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Add a number (201), or show the entry that already lists it (200)."""
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("", "request body must be a JSON object")])
    problems: list[FieldError] = []
    phone, reason, note = body.get("phone_number"), body.get("reason", "manual"), body.get("note")
    region = body.get("default_region", "US")
    if not isinstance(phone, str) or not phone.strip():
        problems.append(FieldError("/phone_number", "is required and must be a string"))
    if not isinstance(reason, str) or reason not in suppression.REASONS:
        problems.append(FieldError("/reason", f"must be one of {', '.join(suppression.REASONS)}"))
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE or "\x00" in note):
        problems.append(FieldError("/note", f"must be a string of at most {MAX_NOTE} characters, without NUL"))
    if region is not None and not isinstance(region, str):
        problems.append(FieldError("/default_region", "must be a region code such as US"))
    if problems:
        raise ValidationFailed(problems)
    assert isinstance(phone, str) and isinstance(reason, str)
    e164 = _normalize(phone, "/phone_number", _check_region(region))
    entry, created = suppression.add(
        session, e164, now=runtime.clock.now(), reason=reason, note=note, default_region=None
    )
    response.status_code = 201 if created else 200
    return suppression.serialize(entry)


@router.post(
    "/import",
    response_model=SuppressionImport,
    responses=responses(400),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "One number a line (# comments); as the body, or as the multipart field file",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
        }
    },
)
async def import_suppressions(
    request: Request,
    runtime: RuntimeDep,
    reason: Annotated[str, _reason_query()] = "file",
    note: Annotated[str | None, Query(json_schema_extra={"maxLength": MAX_NOTE})] = None,
    default_region: str | None = "US",
) -> dict[str, Any]:
    """Add every number of a registry file."""
    _check_reason(reason, "/reason")
    if note is not None and (len(note) > MAX_NOTE or "\x00" in note):
        raise ValidationFailed([FieldError("/note", f"must be at most {MAX_NOTE} characters, without NUL")])
    region = _check_region(default_region)
    limit = runtime.settings.max_upload_bytes
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationFailed([FieldError("/file", "a multipart field 'file' with the numbers is required")])
        data: IO[bytes] = upload.file  # as the form parser spooled it: no second copy
        uploaded_size(upload, limit)
    else:
        data = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 (closed below)
        await spool(request.stream(), data, limit)
        data.seek(0)
    try:
        report = await run_in_threadpool(_import, runtime, data, reason, note, region)
    finally:
        data.close()
    return report.as_dict()


@router.get("/{phone}", response_model=Suppression, responses=responses(400, 404))
def get_suppression(phone: str, session: SessionDep) -> Any:
    e164 = _normalize(phone, "/phone_number", "US")
    entry = suppression.get(session, e164)
    return _not_listed(e164) if entry is None else suppression.serialize(entry)


@router.delete("/{phone}", status_code=204, responses=responses(400, 404))
def delete_suppression(phone: str, session: SessionDep) -> Response:
    e164 = _normalize(phone, "/phone_number", "US")
    if not suppression.remove(session, e164):
        return _not_listed(e164)
    return Response(status_code=204)


def _import(
    rt: Runtime, data: IO[bytes], reason: str, note: str | None, region: str | None
) -> suppression.FileImportReport:
    with unit_of_work(rt.sessions) as s:
        return suppression.import_file(s, data, now=rt.clock.now(), reason=reason, note=note, default_region=region)

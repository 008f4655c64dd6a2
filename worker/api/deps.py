"""What routes depend on: the runtime, a unit of work, the bearer token, paging, a JSON body, uploads."""

from __future__ import annotations

import hmac
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import IO, Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from campaigns.db import unit_of_work
from campaigns.errors import FieldError, ValidationFailed
from campaigns.events import lone_surrogates
from campaigns.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_NUMBER, MAX_PAGE_SIZE, Page
from worker.api.errors import Unauthorized
from worker.runtime import Runtime, get_runtime

EnqueueImport = Callable[[uuid.UUID], None]
"""Hands a stored upload to the import task (tests pass a list's ``append``)."""


async def app_runtime(request: Request) -> Runtime:
    """The app's runtime: the one ``create_app`` was given (tests), else the process-wide one."""
    runtime: Runtime | None = request.app.state.runtime
    return runtime if runtime is not None else get_runtime()


RuntimeDep = Annotated[Runtime, Depends(app_runtime)]


def db_session(runtime: RuntimeDep) -> Iterator[Session]:
    with unit_of_work(runtime.sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(db_session, scope="function")]
"""One unit of work per request. ``scope="function"``: it commits (or rolls back, when the route raises) before
the response is sent, so a client never sees a 201 for something a failed commit lost."""


async def require_token(request: Request, runtime: RuntimeDep) -> None:
    """``Authorization: Bearer <CAMPAIGNS_API_TOKEN>``; without a configured token the API is open."""
    token = runtime.settings.api_token
    if not token:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized


Auth = Depends(require_token)


async def paging(
    page_number: Annotated[int, Query(alias="page[number]", ge=1, le=MAX_PAGE_NUMBER)] = 1,
    page_size: Annotated[int, Query(alias="page[size]", ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> Page:
    return Page(page_number, page_size)


PageDep = Annotated[Page, Depends(paging)]


async def json_body(request: Request) -> object:
    """The body as parsed JSON; the domain validates its content (every problem at once, with pointers)."""
    raw = await request.body()
    try:
        parsed = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed([FieldError("", "request body is not valid JSON")]) from None
    except RecursionError:  # 100k-deep arrays: the parser gives up, and so do we (a 400, not a 500)
        raise ValidationFailed([FieldError("", "request body is nested too deeply")]) from None
    # No route can store or send a lone surrogate (no UTF-8 text holds one): a 400 here, not a 500 at the INSERT.
    problems = lone_surrogates(parsed, "")
    if problems:
        raise ValidationFailed(problems)
    return parsed


JsonBody = Annotated[object, Depends(json_body)]


async def enqueue_import(request: Request) -> EnqueueImport:
    enqueue: EnqueueImport = request.app.state.enqueue_import
    return enqueue


EnqueueDep = Annotated[EnqueueImport, Depends(enqueue_import)]


def too_large(limit: int) -> ValidationFailed:
    return ValidationFailed(
        [FieldError("/file", f"the file is larger than the {limit} byte limit", title="Invalid file")]
    )


def uploaded_size(upload: UploadFile, limit: int) -> int:
    """The size of a file the form parser spooled, refused past ``limit``; the file is left at its start."""
    upload.file.seek(0, os.SEEK_END)
    size = upload.file.tell()
    upload.file.seek(0)
    if size > limit:
        raise too_large(limit)
    return size


async def spool(chunks: AsyncIterator[bytes], target: IO[bytes], limit: int) -> int:
    """Copy an upload into ``target``, refusing it past ``limit`` bytes; its size."""
    size = 0
    async for block in chunks:
        size += len(block)
        if size > limit:
            raise too_large(limit)
        target.write(block)
    return size

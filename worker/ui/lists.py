"""Console pages for the do-not-contact list and the recurring definitions: the API's routes behind forms."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from campaigns import suppression
from campaigns.db import unit_of_work
from campaigns.errors import Conflict, NotFound, ValidationFailed
from campaigns.paging import Page
from worker.api.deps import RuntimeDep, SessionDep
from worker.api.recurring import get_definition, list_definitions, run_now
from worker.api.suppressions import add_suppression, delete_suppression, import_suppressions, list_suppressions
from worker.ui.common import PAGE_SIZE, PageNumber, SignedIn, back_to, checked_form, render, text_field

router = APIRouter(prefix="/ui", include_in_schema=False)


def _problem(exc: ValidationFailed) -> str:
    return "; ".join(e.detail for e in exc.errors)


# --- do-not-contact ------------------------------------------------------------------------------------------


@router.get("/do-not-contact", response_class=HTMLResponse)
def dnc_page(
    request: Request,
    _: SignedIn,
    session: SessionDep,
    number: str | None = None,
    page: PageNumber = 1,
    notice: str | None = None,
) -> HTMLResponse:
    entries: list[dict[str, Any]] = []
    total = 0
    problem = None
    if number:
        try:
            found = suppression.get(session, number)
        except suppression.InvalidPhone as exc:
            problem = f"Search: {number!r} is not a phone number ({exc.reason})"
        else:
            entries = [suppression.serialize(found)] if found else []
            total = len(entries)
    else:
        listing = list_suppressions(session, Page(page, PAGE_SIZE))
        entries, total = listing["data"], listing["meta"]["total_results"]
    return render(
        request,
        "dnc.html",
        entries=entries,
        total=total,
        number=number or "",
        page=page,
        pages=max(1, math.ceil(total / PAGE_SIZE)),
        problem=problem,
        notice=notice,
    )


@router.post("/do-not-contact/add")
async def dnc_add(request: Request, signed: SignedIn, runtime: RuntimeDep) -> Response:
    form = await checked_form(request, signed)
    body = {"phone_number": text_field(form, "phone_number"), "note": text_field(form, "note") or None}
    try:
        with unit_of_work(runtime.sessions) as s:
            entry = add_suppression(body, Response(), s, runtime)
    except ValidationFailed as exc:
        return back_to("/ui/do-not-contact", f"Not added: {_problem(exc)}")
    return back_to("/ui/do-not-contact", f"{entry['phone_number']} is on the do-not-contact list.")


@router.post("/do-not-contact/remove")
async def dnc_remove(request: Request, signed: SignedIn, runtime: RuntimeDep) -> Response:
    form = await checked_form(request, signed)
    phone = text_field(form, "phone_number")
    try:
        with unit_of_work(runtime.sessions) as s:
            answer = delete_suppression(phone, s)
    except ValidationFailed as exc:
        return back_to("/ui/do-not-contact", f"Not removed: {_problem(exc)}")
    if answer.status_code == 404:
        return back_to("/ui/do-not-contact", f"{phone} was not on the do-not-contact list.")
    return back_to("/ui/do-not-contact", f"{phone} was removed from the do-not-contact list.")


@router.post("/do-not-contact/import")
async def dnc_import(request: Request, signed: SignedIn, runtime: RuntimeDep) -> Response:
    form = await checked_form(request, signed)
    note = text_field(form, "note") or None
    try:
        report = await import_suppressions(request, runtime, reason="file", note=note)
    except ValidationFailed as exc:
        return back_to("/ui/do-not-contact", f"Not imported: {_problem(exc)}")
    parts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in report.items() if isinstance(v, int))
    return back_to("/ui/do-not-contact", f"Imported ({parts}).")


# --- recurring -----------------------------------------------------------------------------------------------


@router.get("/recurring", response_class=HTMLResponse)
def recurring_page(
    request: Request,
    _: SignedIn,
    session: SessionDep,
    runtime: RuntimeDep,
    name: str | None = None,
    page: PageNumber = 1,
    notice: str | None = None,
) -> HTMLResponse:
    listing = list_definitions(session, Page(page, PAGE_SIZE), runtime)
    detail = None
    if name:
        try:
            detail = get_definition(name, session, runtime, runs=50)
        except NotFound:
            notice = f"No recurring definition {name!r}."
    return render(
        request,
        "recurring.html",
        definitions=listing["data"],
        meta=listing["meta"],
        detail=detail,
        notice=notice,
        page=page,
    )


@router.post("/recurring/{ref}/run-now")
async def recurring_run_now(request: Request, ref: str, signed: SignedIn, runtime: RuntimeDep) -> Response:
    await checked_form(request, signed)
    url = f"/ui/recurring?name={quote(ref)}"
    try:
        run = await run_now(ref, runtime)
    except (NotFound, Conflict, ValidationFailed) as exc:
        detail = _problem(exc) if isinstance(exc, ValidationFailed) else str(exc)
        return back_to(url, f"Not run: {detail}")
    return back_to(url, f"Ran: {run['status']}{' — ' + run['message'] if run.get('message') else ''}.")

"""Console pages: sign in and out, the campaigns list, a campaign (live counts, controls, events), an event."""

from __future__ import annotations

import dataclasses
import math
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from campaigns import campaign as campaign_service
from campaigns import events, progress, suppression, windows
from campaigns.db import unit_of_work
from campaigns.errors import Conflict, NotFound
from campaigns.models import Campaign
from campaigns.paging import Page
from campaigns.states import EVENT_STATUSES, TERMINAL_EVENT_STATUSES
from worker.api.campaigns import (
    cancel_campaign,
    errors_csv,
    export_csv,
    get_campaign,
    list_campaigns,
    pause_campaign,
    resume_campaign,
)
from worker.api.deps import RuntimeDep, SessionDep
from worker.ui.auth import (
    CSRF_FIELD,
    check_csrf,
    end_session,
    new_csrf,
    pre_session_csrf,
    start_pre_session,
    start_session,
    token_matches,
)
from worker.ui.charts import attempts_chart, waiting_chart
from worker.ui.common import PAGE_SIZE, PageNumber, SignedIn, back_to, checked_form, fragment, render

router = APIRouter(prefix="/ui", include_in_schema=False)


# --- sign in -------------------------------------------------------------------------------------------------


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(
    request: Request, runtime: RuntimeDep, error: str | None = None, next: str | None = None
) -> HTMLResponse:
    token = runtime.settings.api_token
    csrf = pre_session_csrf(request, token) or new_csrf()
    page = render(request, "sign_in.html", error=error, open_api=not token, form_csrf=csrf, next=_local(next))
    start_pre_session(request, page, token, csrf)
    return page


@router.post("/sign-in")
async def sign_in(request: Request, runtime: RuntimeDep) -> Response:
    token = runtime.settings.api_token
    form = await request.form()
    check_csrf(pre_session_csrf(request, token), form.get(CSRF_FIELD))
    given = form.get("token")
    if not isinstance(given, str) or not token_matches(token, given):
        return RedirectResponse("/ui/sign-in?error=wrong", status_code=303)
    target = form.get("next")
    response = RedirectResponse(_local(target if isinstance(target, str) else None), status_code=303)
    start_session(request, response, token)
    return response


def _local(target: str | None) -> str:
    """Where to go after signing in: a console page, never another site (``//host`` or ``/\\host``)."""
    if target and (target == "/ui" or target.startswith("/ui/")) and "\\" not in target:
        return target
    return "/ui"


@router.post("/sign-out")
async def sign_out(request: Request, session: SignedIn) -> Response:
    await checked_form(request, session)
    response = RedirectResponse("/ui/sign-in", status_code=303)
    end_session(response)
    return response


# --- campaigns -----------------------------------------------------------------------------------------------


def _progress(body: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, int] = body.get("counts", {})
    total = sum(counts.values())
    terminal = sum(n for s, n in counts.items() if s in TERMINAL_EVENT_STATUSES)
    return {"total": total, "terminal": terminal}


@router.get("", response_class=HTMLResponse)
def campaigns_page(
    request: Request, _: SignedIn, session: SessionDep, page: PageNumber = 1, notice: str | None = None
) -> HTMLResponse:
    listing = list_campaigns(session, Page(page, PAGE_SIZE))
    due = progress.next_due(session, [uuid.UUID(c["id"]) for c in listing["data"]])
    rows = [{**c, "progress": _progress(c), "next_due": due.get(uuid.UUID(c["id"]))} for c in listing["data"]]
    return render(
        request, "campaigns.html", campaigns=rows, meta=listing["meta"], notice=notice, statuses=EVENT_STATUSES
    )


def live_counts(session: Session, campaign_id: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the campaign page shows live: status, progress, counts by status and by outcome, waiting reasons, and
    the charts and the waiting list as markup (``html``: the page swaps it in; one renderer for both).
    ``body`` is the campaign as the API shows it, when the caller has it already."""
    body = body if body is not None else get_campaign(campaign_id, session)
    key = uuid.UUID(body["id"])
    groups = progress.waiting(session, key)
    timeline = progress.attempt_timeline(session, key)
    live = {
        "status": body["status"],
        "progress": _progress(body),
        "counts": body["counts"],
        "attempts": body["attempts"],
        "outcomes": progress.outcome_counts(session, key),
        "held": body["held"],
        "provider_holds": body["provider_holds"],
        "waiting": [
            {"reason": w.reason, "count": w.count, "until": w.until.isoformat() if w.until else None} for w in groups
        ],
        "import": body["import"],
    }
    chart = attempts_chart(timeline, body.get("timezone"))
    live["html"] = {
        "charts": fragment("_charts.html", chart=chart, width_label=_duration(timeline.width.total_seconds())),
        "waiting": fragment("_waiting.html", live=live, waiting=waiting_chart(groups)),
    }
    return live


def _duration(seconds: float) -> str:
    """A bucket's width for people: ``10 minutes``, ``1 hour``, ``1 day``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}" if n == 1 else f"{n} {unit}s"
    return f"{seconds:g} seconds"


def _events_listing(
    session: Session, found: Campaign, status: str | None, number: str | None, page: int
) -> dict[str, Any]:
    """The events table's page under the status filter and the number search (problems say what was ignored)."""
    problems: list[str] = []
    status = status or None
    if status is not None and status not in EVENT_STATUSES:
        problems.append(f"Status filter: {status!r} is not one of {', '.join(EVENT_STATUSES)}")
        status = None
    f = events.campaign_filter(found.id, status)
    if number:
        try:
            e164 = suppression.normalize(number, default_region=found.default_region)
            f = dataclasses.replace(f, end_user_target=e164)
        except suppression.InvalidPhone as exc:
            problems.append(f"Number: {number!r} is not a phone number ({exc.reason})")
    rows, total = events.list_events(session, f, Page(page, PAGE_SIZE))
    return {
        "c": {"id": str(found.id)},
        "events": rows,
        "total": total,
        "pages": max(1, math.ceil(total / PAGE_SIZE)),
        "page": page,
        "status": status or "",
        "number": number or "",
        "problems": problems,
    }


@router.get("/campaigns/{campaign_id}/live.json")
def campaign_live(
    campaign_id: str,
    _: SignedIn,
    session: SessionDep,
    status: str | None = None,
    number: str | None = None,
    page: PageNumber = 1,
    events_table: Annotated[bool, Query(alias="events")] = False,
) -> JSONResponse:
    """The campaign page's live data; with ``events=1`` also its events table (the page's own filter and page)."""
    try:
        live = live_counts(session, campaign_id)
        if events_table:
            found = campaign_service.get_campaign(session, campaign_id)
            listing = _events_listing(session, found, status, number, page)
            live["events_total"] = listing["total"]
            live["html"]["events"] = fragment("_events.html", **listing)
        return JSONResponse(live, headers={"Cache-Control": "no-store"})
    except NotFound as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)


def _not_found(request: Request, exc: NotFound) -> HTMLResponse:
    return render(request, "not_found.html", status_code=404, what=str(exc))


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_page(
    request: Request,
    campaign_id: str,
    _: SignedIn,
    session: SessionDep,
    runtime: RuntimeDep,
    status: str | None = None,
    number: str | None = None,
    page: PageNumber = 1,
    notice: str | None = None,
) -> HTMLResponse:
    try:
        body = get_campaign(campaign_id, session)
        found = campaign_service.get_campaign(session, campaign_id)
    except NotFound as exc:
        return _not_found(request, exc)
    listing = _events_listing(session, found, status, number, page)
    return render(
        request,
        "campaign.html",
        live=live_counts(session, campaign_id, body),
        statuses=EVENT_STATUSES,
        notice=notice,
        **{**listing, "c": body},
        now=runtime.clock.now(),
    )


_CONTROLS = {
    "pause": (pause_campaign, "Paused"),
    "resume": (resume_campaign, "Resumed"),
    "cancel": (cancel_campaign, "Canceled"),
}


@router.post("/campaigns/{campaign_id}/{verb}")
async def control_campaign(
    request: Request, campaign_id: str, verb: str, signed: SignedIn, runtime: RuntimeDep
) -> Response:
    """``Pause``, ``Resume``, ``Cancel``: the API's routes, in a unit of work of their own."""
    await checked_form(request, signed)
    if verb not in _CONTROLS:
        return render(request, "not_found.html", status_code=404, what=f"action {verb}")
    control, done = _CONTROLS[verb]
    url = f"/ui/campaigns/{campaign_id}"
    try:
        with unit_of_work(runtime.sessions) as s:
            control(campaign_id, s, runtime)
    except NotFound as exc:
        return _not_found(request, exc)
    except Conflict as exc:
        return back_to(url, f"Not done: {exc}")
    return back_to(url, f"{done}.")


@router.get("/campaigns/{campaign_id}/results.csv")
def download_results(campaign_id: str, _: SignedIn, session: SessionDep, runtime: RuntimeDep) -> StreamingResponse:
    """``Download results``: the API's ``export.csv``, for a browser signed in with a cookie."""
    return export_csv(campaign_id, session, runtime)


@router.get("/campaigns/{campaign_id}/errors.csv")
def download_errors(campaign_id: str, _: SignedIn, session: SessionDep, runtime: RuntimeDep) -> StreamingResponse:
    """``Download errors``: the API's ``errors.csv``."""
    return errors_csv(campaign_id, session, runtime)


@router.get("/campaigns/{campaign_id}/events/{event_id}", response_class=HTMLResponse)
def event_page(
    request: Request, campaign_id: str, event_id: str, _: SignedIn, session: SessionDep, runtime: RuntimeDep
) -> HTMLResponse:
    try:
        found = campaign_service.get_campaign(session, campaign_id)
        event = progress.campaign_event(session, found, event_id)
    except NotFound as exc:
        return _not_found(request, exc)
    now = runtime.clock.now()
    candidates = event.timezone_candidates or []
    zone = event.timezone or (candidates[0] if candidates else None) or found.timezone
    verdict = None
    try:
        rules = windows.get_ruleset(event.ruleset, found.custom_windows)
        verdict = windows.explain(
            now,
            event.telnyx_end_user_target,
            rules,
            timezone=event.timezone,
            state=event.state,
            default_zone=found.timezone,
        )
    except windows.RulesetError:
        verdict = None
    return render(
        request,
        "event.html",
        c={"id": str(found.id), "name": found.name},
        e=events.serialize_event(event),
        attempts=event.attempts,
        zone=zone,
        source_row=event.source_row,
        verdict=verdict,
        now=now,
    )

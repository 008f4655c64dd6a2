"""The Telnyx-compatible scheduled events (``/v2/ai/assistants/{assistant_id}/scheduled_events``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query

from campaigns import events
from campaigns.paging import page_envelope
from campaigns.states import CHANNELS, EVENT_STATUSES
from worker.api.deps import Auth, JsonBody, PageDep, RuntimeDep, SessionDep
from worker.api.errors import responses
from worker.api.schemas.common import json_body
from worker.api.schemas.events import ScheduledEvent, ScheduledEventCreate, ScheduledEventPage

router = APIRouter(
    prefix="/v2/ai/assistants/{assistant_id}/scheduled_events",
    tags=["scheduled events"],
    dependencies=[Auth],
    responses=responses(401),
)


@router.post(
    "",
    status_code=201,
    response_model=ScheduledEvent,
    responses=responses(400, 422),
    openapi_extra=json_body(ScheduledEventCreate),
)
def create_scheduled_event(
    assistant_id: str,
    body: JsonBody,
    session: SessionDep,
    runtime: RuntimeDep,
    idempotency_key: Annotated[
        str | None, Header(description="Retries with the same key and body get the first answer; ≤ 255 characters")
    ] = None,
) -> dict[str, Any]:
    """Schedule a phone call or an SMS."""
    return events.create_requested(
        session,
        assistant_id,
        body,
        now=runtime.clock.now(),
        default_ruleset=runtime.settings.default_ruleset,
        idempotency_key=idempotency_key,
    )


@router.get("", response_model=ScheduledEventPage, responses=responses(400))
def list_scheduled_events(
    assistant_id: str,
    session: SessionDep,
    page: PageDep,
    from_date: Annotated[str | None, Query(json_schema_extra={"format": "date-time"})] = None,
    to_date: Annotated[str | None, Query(json_schema_extra={"format": "date-time"})] = None,
    conversation_channel: Annotated[str | None, Query(json_schema_extra={"enum": list(CHANNELS)})] = None,
    status: Annotated[
        str | None,
        Query(
            description="Extension. failed includes the events canceled with their campaign; canceled only those",
            json_schema_extra={"enum": list(EVENT_STATUSES)},
        ),
    ] = None,
    campaign_id: Annotated[uuid.UUID | None, Query(description="Extension")] = None,
    end_user_target: Annotated[str | None, Query(description="Extension")] = None,
) -> dict[str, Any]:
    """The assistant's events by scheduled time (deleted ones are gone)."""
    filters = events.telnyx_filter(
        assistant_id,
        from_date=from_date,
        to_date=to_date,
        conversation_channel=conversation_channel,
        status=status,
        campaign_id=campaign_id,
        end_user_target=end_user_target,
    )
    rows, total = events.list_events(session, filters, page)
    return page_envelope([events.serialize_telnyx_event(e) for e in rows], total, page)


@router.get("/{event_id}", response_model=ScheduledEvent, responses=responses(400, 404))
def retrieve_scheduled_event(assistant_id: str, event_id: str, session: SessionDep) -> dict[str, Any]:
    return events.serialize_telnyx_event(events.get_event(session, assistant_id, event_id))


@router.delete("/{event_id}", status_code=204, responses=responses(400, 404))
def delete_scheduled_event(assistant_id: str, event_id: str, session: SessionDep, runtime: RuntimeDep) -> None:
    """Delete the event, in any state: a pending one is never dispatched, one in progress gets no further attempt,
    and it leaves this API (its campaign keeps it for exports)."""
    events.delete_event(
        session, events.get_event(session, assistant_id, event_id, for_update=True), now=runtime.clock.now()
    )

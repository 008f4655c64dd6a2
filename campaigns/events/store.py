"""Storing, finding, listing, canceling and deleting scheduled events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from campaigns import idempotency, metrics, windows
from campaigns.errors import Conflict, FieldError, NotFound, ValidationFailed
from campaigns.events.validation import NewEvent, check_assistant_id, nul_characters, parse_datetime, validate_create
from campaigns.events.wire import serialize_telnyx_event
from campaigns.ids import uuid7
from campaigns.lifecycle import transitions
from campaigns.models import ScheduledEvent
from campaigns.paging import Page
from campaigns.states import CHANNELS, EVENT_STATUSES, TERMINAL_EVENT_STATUSES, EventStatus

NOTIFY_CHANNEL = "campaigns_due"


def notify_due(session: Session) -> None:
    """Wake sleeping schedulers when the transaction commits."""
    session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})


def create_event(
    session: Session,
    assistant_id: str,
    new: NewEvent,
    *,
    now: datetime,
    campaign_id: uuid.UUID | None = None,
) -> ScheduledEvent:
    """Store a validated event as ``pending``."""
    event = ScheduledEvent(
        id=uuid7(),
        assistant_id=assistant_id,
        telnyx_conversation_channel=new.channel,
        telnyx_end_user_target=new.end_user_target,
        telnyx_agent_target=new.agent_target,
        scheduled_at_fixed_datetime=new.scheduled_at,
        status=EventStatus.PENDING,
        conversation_metadata=new.conversation_metadata,
        dynamic_variables=new.dynamic_variables,
        call_settings=new.call_settings,
        text=new.text,
        created_at=now,
        updated_at=now,
        errors=[],
        max_retries_client_errors=new.max_retries_client_errors,
        retry_interval_secs=new.retry_interval_secs,
        retry_count=0,
        cancel_requested=False,
        campaign_id=campaign_id,
        ruleset=new.ruleset,
        timezone=new.timezone,
        answering_machine_detection=new.answering_machine_detection,
        voicemail_action=new.voicemail_action,
        retry_policy=new.retry_policy,
        outcome_retries={},
        free_attempts=0,
        timezone_candidates=windows.candidate_zones(phone=new.end_user_target, timezone=new.timezone),
        attempts=[],
    )
    session.add(event)
    session.flush()
    notify_due(session)
    metrics.EVENTS_CREATED.labels(new.channel, "api").inc()
    return event


def create_requested(
    session: Session,
    assistant_id: str,
    body: object,
    *,
    now: datetime,
    default_ruleset: str,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """A ``/v2`` create request (the parsed JSON body): validated, stored, answered in the Telnyx shape.

    With an ``idempotency_key`` the first request creates and every retry with the same body gets the same answer
    (``campaigns.idempotency``); without one, each request creates.
    """
    check_assistant_id(assistant_id)

    def create() -> dict[str, Any]:
        new = validate_create(
            body, now=now, default_ruleset=default_ruleset, known_rulesets=frozenset(windows.rulesets())
        )
        return serialize_telnyx_event(create_event(session, assistant_id, new, now=now))

    if not idempotency_key:
        return create()
    return idempotency.create_once(session, scope=assistant_id, key=idempotency_key, body=body, now=now, create=create)


def get_event(session: Session, assistant_id: str, event_id: str, *, for_update: bool = False) -> ScheduledEvent:
    """The event as the ``/v2`` API sees it: the assistant's own, and not deleted."""
    check_assistant_id(assistant_id)
    try:
        key = uuid.UUID(event_id)
    except ValueError as exc:
        raise NotFound("scheduled event", event_id) from exc
    query = select(ScheduledEvent).where(
        ScheduledEvent.id == key, ScheduledEvent.assistant_id == assistant_id, ScheduledEvent.deleted_at.is_(None)
    )
    if for_update:
        query = query.with_for_update()
    event = session.scalars(query).one_or_none()
    if event is None:
        raise NotFound("scheduled event", event_id)
    return event


@dataclass(frozen=True)
class EventFilter:
    assistant_id: str | None = None
    from_date: datetime | None = None
    to_date: datetime | None = None
    channel: str | None = None
    statuses: frozenset[EventStatus] | None = None
    campaign_id: uuid.UUID | None = None
    end_user_target: str | None = None
    include_deleted: bool = False
    """Deleted events are gone from the ``/v2`` API and still part of their campaign (``/v1``)."""


TELNYX_STATUS_FILTERS: Final = {
    **{status: frozenset({EventStatus(status)}) for status in EVENT_STATUSES},
    # ``/v2`` shows an event canceled with its campaign as failed, so it is listed with the failed ones.
    EventStatus.FAILED: frozenset({EventStatus.FAILED, EventStatus.CANCELED}),
}
"""``/v2``'s ``status`` filter: what each value selects. ``canceled`` (an extension) narrows ``failed``."""


def _check_status(status: str | None, problems: list[FieldError]) -> None:
    if status is not None and status not in EVENT_STATUSES:
        problems.append(FieldError("/status", f"must be one of {', '.join(EVENT_STATUSES)}"))


def telnyx_filter(
    assistant_id: str,
    *,
    from_date: str | None = None,
    to_date: str | None = None,
    conversation_channel: str | None = None,
    status: str | None = None,
    campaign_id: uuid.UUID | None = None,
    end_user_target: str | None = None,
) -> EventFilter:
    """The ``/v2`` list's query parameters, checked; ``ValidationFailed`` lists every bad one."""
    check_assistant_id(assistant_id)
    problems: list[FieldError] = []
    dates: dict[str, datetime | None] = {}
    for name, value in (("from_date", from_date), ("to_date", to_date)):
        dates[name] = None if value is None else parse_datetime(value)
        if value is not None and dates[name] is None:
            problems.append(FieldError(f"/{name}", "must be an ISO 8601 date-time"))
    if conversation_channel is not None and conversation_channel not in CHANNELS:
        problems.append(FieldError("/conversation_channel", f"must be one of {', '.join(CHANNELS)}"))
    _check_status(status, problems)
    if end_user_target is not None:
        problems.extend(nul_characters(end_user_target, "/end_user_target"))
    if problems:
        raise ValidationFailed(problems)
    return EventFilter(
        assistant_id=assistant_id,
        from_date=dates["from_date"],
        to_date=dates["to_date"],
        channel=conversation_channel,
        statuses=TELNYX_STATUS_FILTERS[EventStatus(status)] if status is not None else None,
        campaign_id=campaign_id,
        end_user_target=end_user_target,
    )


def campaign_filter(campaign_id: uuid.UUID, status: str | None = None) -> EventFilter:
    """A campaign's events for ``/v1``: deleted ones included, ``status`` in the engine's terms."""
    problems: list[FieldError] = []
    _check_status(status, problems)
    if problems:
        raise ValidationFailed(problems)
    statuses = frozenset({EventStatus(status)}) if status is not None else None
    return EventFilter(campaign_id=campaign_id, statuses=statuses, include_deleted=True)


def _filtered(query: Select[Any], f: EventFilter) -> Select[Any]:
    if f.assistant_id is not None:
        query = query.where(ScheduledEvent.assistant_id == f.assistant_id)
    if f.from_date is not None:
        query = query.where(ScheduledEvent.scheduled_at_fixed_datetime >= f.from_date)
    if f.to_date is not None:
        query = query.where(ScheduledEvent.scheduled_at_fixed_datetime <= f.to_date)
    if f.channel is not None:
        query = query.where(ScheduledEvent.telnyx_conversation_channel == f.channel)
    if f.statuses is not None:
        query = query.where(ScheduledEvent.status.in_(sorted(f.statuses)))
    if f.campaign_id is not None:
        query = query.where(ScheduledEvent.campaign_id == f.campaign_id)
    if f.end_user_target is not None:
        query = query.where(ScheduledEvent.telnyx_end_user_target == f.end_user_target)
    if not f.include_deleted:
        query = query.where(ScheduledEvent.deleted_at.is_(None))
    return query


def list_events(session: Session, f: EventFilter, page: Page) -> tuple[list[ScheduledEvent], int]:
    """One page of events ordered by scheduled time, and the total count."""
    total = session.scalar(_filtered(select(func.count()).select_from(ScheduledEvent), f)) or 0
    query = (
        _filtered(select(ScheduledEvent), f)
        .order_by(ScheduledEvent.scheduled_at_fixed_datetime, ScheduledEvent.id)
        .offset(page.offset)
        .limit(page.size)
    )
    return list(session.scalars(query)), int(total)


def cancel_event(session: Session, event: ScheduledEvent, *, now: datetime) -> None:
    """No further attempts: pending → ``canceled``; in progress → its current attempt is the last; terminal →
    ``Conflict``."""
    if event.status in TERMINAL_EVENT_STATUSES:
        raise Conflict(f"event is already {event.status}")
    if event.status == EventStatus.PENDING:
        transitions.finish(event, EventStatus.CANCELED, now, transitions.CANCELED_BEFORE_DISPATCH)
    else:
        event.cancel_requested = True
        event.updated_at = now
    session.flush()


def delete_event(session: Session, event: ScheduledEvent, *, now: datetime) -> None:
    """``DELETE`` on ``/v2``, in any state: Telnyx removes the record, so the event leaves the ``/v2`` API.

    A live event is canceled first (``cancel_event``: a pending one is never dispatched, an in-progress one gets
    no further attempt). The row and its attempts stay, marked ``deleted_at``, for campaign exports and metrics.
    """
    if event.status not in TERMINAL_EVENT_STATUSES:
        cancel_event(session, event, now=now)
    event.deleted_at = now
    event.updated_at = now
    session.flush()

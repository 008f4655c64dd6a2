"""Campaigns: settings validation, listing, status changes, progress counts and the wire shape."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import phonenumbers
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from campaigns import pending, windows
from campaigns.clock import iso
from campaigns.errors import Conflict, FieldError, NotFound, ValidationFailed
from campaigns.events import (
    MAX_INT32,
    MAX_STRING,
    check_outcome_settings,
    check_retry_policy,
    is_int,
    is_target,
    notify_due,
    nul_characters,
    parse_datetime,
    retry_policy_value,
)
from campaigns.lifecycle import holds
from campaigns.mapping import LIST_SETTINGS_FIELDS, ListSettings, check_list_settings
from campaigns.models import CallAttempt, Campaign, ProviderHold, ScheduledEvent
from campaigns.paging import Page
from campaigns.states import (
    CHANNELS,
    EVENT_STATUSES,
    TERMINAL_EVENT_STATUSES,
    CallStatus,
    CampaignStatus,
    Channel,
    EventStatus,
    ImportStatus,
    MachineDetection,
    VoicemailAction,
)
from campaigns.templates import TemplateError, parse_template

SETTINGS_FIELDS = frozenset(
    {
        "name",
        "assistant_id",
        "telnyx_conversation_channel",
        "telnyx_agent_target",
        "text",
        "max_retries_client_errors",
        "retry_interval_secs",
        "start_at",
        "default_region",
        "ruleset",
        "timezone",
        "max_concurrent_calls",
        "max_dispatches_per_second",
        "connection_id",
        "custom_windows",
        "cap_max_attempts",
        "cap_window_secs",
        "answering_machine_detection",
        "voicemail_action",
        "retry_policy",
        *LIST_SETTINGS_FIELDS,
    }
)


@dataclass(frozen=True)
class CampaignSettings:
    name: str
    assistant_id: str
    channel: str
    agent_target: str
    text: str | None
    max_retries_client_errors: int
    retry_interval_secs: int | None
    start_at: datetime
    default_region: str | None
    ruleset: str
    timezone: str | None
    max_concurrent_calls: int | None
    max_dispatches_per_second: float | None
    connection_id: str | None
    custom_windows: dict[str, Any] | None = None
    cap_max_attempts: int | None = None
    cap_window_secs: int | None = None
    answering_machine_detection: str = MachineDetection.DETECT
    voicemail_action: str = VoicemailAction.RETRY
    retry_policy: dict[str, dict[str, int]] | None = None
    call_list: ListSettings = field(default_factory=ListSettings)
    """``mapping``, ``variables``, ``drop_columns``, ``date_order``: how the call list is read."""


def validate_settings(body: object, *, now: datetime) -> CampaignSettings:
    """Campaign settings use the Telnyx field names and the same retry rules as the API."""
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("/campaign", "campaign settings must be a JSON object")])
    errors: list[FieldError] = []

    def bad(name: str, detail: str) -> None:
        errors.append(FieldError(f"/campaign/{name}", detail))

    for name in sorted(set(body) - SETTINGS_FIELDS):
        bad(name, "is not a known campaign setting")
    for name in ("name", "assistant_id"):
        value = body.get(name)
        if not isinstance(value, str) or not value.strip():
            bad(name, "is required")
        elif len(value.strip()) > MAX_STRING:
            bad(name, f"must be at most {MAX_STRING} characters")
    channel = body.get("telnyx_conversation_channel", Channel.PHONE_CALL)
    if channel not in CHANNELS:
        bad("telnyx_conversation_channel", f"must be one of {', '.join(CHANNELS)}")
    agent = body.get("telnyx_agent_target")
    if not isinstance(agent, str) or not is_target(agent.strip()):
        bad("telnyx_agent_target", "is required: the E.164 number (or SIP URI) calls and texts come from")
    text = body.get("text")
    if text is not None and not isinstance(text, str):
        bad("text", "must be a string")
    elif isinstance(text, str):
        try:
            parse_template(text, None)  # the syntax now; the names once the file's header is known
        except TemplateError as exc:
            bad("text", str(exc))
    call_list = check_list_settings(body, bad)
    retries = body.get("max_retries_client_errors")
    interval = body.get("retry_interval_secs")
    check_retry_policy(channel, retries, interval, bad)
    outcome_errors: list[FieldError] = []
    check_outcome_settings(body, channel, bad, outcome_errors)
    errors.extend(FieldError(f"/campaign{e.pointer}", e.detail) for e in outcome_errors)
    start_raw = body.get("start_at")
    start_at = now if start_raw is None else parse_datetime(start_raw)
    if start_at is None:
        bad("start_at", "must be an ISO 8601 date-time")
    region = body.get("default_region")
    if region is not None and (not isinstance(region, str) or region.upper() not in phonenumbers.SUPPORTED_REGIONS):
        bad("default_region", "must be a two-letter region code such as US")
    ruleset = body.get("ruleset", "us")
    known = windows.ruleset_names()
    if not isinstance(ruleset, str) or ruleset not in known:
        bad("ruleset", f"must be one of {', '.join(sorted(known))}")
    custom = body.get("custom_windows")
    if ruleset == windows.CUSTOM and custom is None:
        bad("custom_windows", 'is required with ruleset custom, e.g. {"hours": {"mon-fri": "09:00-17:00"}}')
    elif custom is not None and ruleset != windows.CUSTOM:
        bad("custom_windows", "is only used with ruleset custom")
    elif custom is not None:
        try:
            windows.custom_ruleset(custom, "custom_windows")
        except windows.RulesetError as exc:
            bad("custom_windows", str(exc))
    cap_attempts = body.get("cap_max_attempts")
    if cap_attempts is not None and (not is_int(cap_attempts) or not 1 <= cap_attempts <= MAX_INT32):
        bad("cap_max_attempts", "must be a positive integer (attempts per recipient per cap_window_secs)")
    cap_window = body.get("cap_window_secs")
    if cap_window is not None and (not is_int(cap_window) or not 1 <= cap_window <= MAX_INT32):
        bad("cap_window_secs", "must be a positive integer number of seconds")
    elif cap_window is not None and cap_attempts is None:
        bad("cap_window_secs", "needs cap_max_attempts")
    zone = body.get("timezone")
    if zone is not None and not windows.is_timezone(zone):
        bad("timezone", "must be an IANA time zone name, e.g. America/New_York")
    concurrent = body.get("max_concurrent_calls")
    if concurrent is not None and (not is_int(concurrent) or not 1 <= concurrent <= MAX_INT32):
        bad("max_concurrent_calls", "must be a positive integer")
    rate = body.get("max_dispatches_per_second")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0
    ):
        bad("max_dispatches_per_second", "must be a positive number")
    connection = body.get("connection_id")
    if connection is not None and not isinstance(connection, str):
        bad("connection_id", "must be a string")
    errors.extend(nul_characters(body, "/campaign"))
    if errors:
        raise ValidationFailed(errors)
    assert start_at is not None
    return CampaignSettings(
        name=str(body["name"]).strip(),
        assistant_id=str(body["assistant_id"]).strip(),
        channel=str(channel),
        agent_target=str(agent).strip(),
        text=text if isinstance(text, str) else None,
        max_retries_client_errors=int(retries or 0),
        retry_interval_secs=int(interval) if interval else None,
        start_at=start_at.astimezone(UTC),
        default_region=region.upper() if isinstance(region, str) else None,
        ruleset=str(ruleset),
        timezone=zone if isinstance(zone, str) else None,
        max_concurrent_calls=int(concurrent) if concurrent is not None else None,
        max_dispatches_per_second=float(rate) if rate is not None else None,
        connection_id=connection if isinstance(connection, str) else None,
        custom_windows=dict(custom) if isinstance(custom, dict) else None,
        cap_max_attempts=int(cap_attempts) if cap_attempts is not None else None,
        cap_window_secs=int(cap_window) if cap_window is not None else (86400 if cap_attempts is not None else None),
        answering_machine_detection=str(body.get("answering_machine_detection") or MachineDetection.DETECT),
        voicemail_action=str(body.get("voicemail_action") or VoicemailAction.RETRY),
        retry_policy=retry_policy_value(body.get("retry_policy")),
        call_list=call_list,
    )


def create_campaign(session: Session, settings: CampaignSettings, *, now: datetime) -> Campaign:
    campaign = Campaign(
        id=uuid.uuid4(),
        name=settings.name,
        assistant_id=settings.assistant_id,
        telnyx_conversation_channel=settings.channel,
        telnyx_agent_target=settings.agent_target,
        connection_id=settings.connection_id,
        text=settings.text,
        max_retries_client_errors=settings.max_retries_client_errors,
        retry_interval_secs=settings.retry_interval_secs,
        start_at=settings.start_at,
        default_region=settings.default_region,
        ruleset=settings.ruleset,
        timezone=settings.timezone,
        max_concurrent_calls=settings.max_concurrent_calls,
        max_dispatches_per_second=settings.max_dispatches_per_second,
        custom_windows=settings.custom_windows,
        cap_max_attempts=settings.cap_max_attempts,
        cap_window_secs=settings.cap_window_secs,
        answering_machine_detection=settings.answering_machine_detection,
        voicemail_action=settings.voicemail_action,
        retry_policy=settings.retry_policy,
        call_list=settings.call_list.as_json() or None,
        status=CampaignStatus.ACTIVE,
        created_at=now,
        updated_at=now,
        columns=[],
        import_status=ImportStatus.PENDING,
        rows_total=0,
        rows_accepted=0,
        rows_rejected=0,
        rows_duplicate=0,
        rows_suppressed=0,
    )
    session.add(campaign)
    session.flush()
    return campaign


def get_campaign(session: Session, campaign_id: str | uuid.UUID, *, for_update: bool = False) -> Campaign:
    try:
        key = campaign_id if isinstance(campaign_id, uuid.UUID) else uuid.UUID(campaign_id)
    except ValueError as exc:
        raise NotFound("campaign", campaign_id) from exc
    query = select(Campaign).where(Campaign.id == key)
    if for_update:
        query = query.with_for_update()
    campaign = session.scalars(query).one_or_none()
    if campaign is None:
        raise NotFound("campaign", campaign_id)
    return campaign


def list_campaigns(session: Session, page: Page) -> tuple[list[Campaign], int]:
    """One page of campaigns, newest first, and the total count."""
    total = session.scalar(select(func.count()).select_from(Campaign)) or 0
    rows = session.scalars(
        select(Campaign).order_by(Campaign.created_at.desc()).offset(page.offset).limit(page.size)
    ).all()
    return list(rows), int(total)


def pause(session: Session, campaign: Campaign, *, now: datetime) -> None:
    """The scheduler skips a paused campaign's events; calls already under way finish."""
    if campaign.status != CampaignStatus.ACTIVE:
        raise Conflict(f"campaign is {effective_status(session, campaign)}; only an active campaign can be paused")
    campaign.status = CampaignStatus.PAUSED
    campaign.updated_at = now
    session.flush()


def resume(session: Session, campaign: Campaign, *, now: datetime) -> None:
    if campaign.status != CampaignStatus.PAUSED:
        raise Conflict(f"campaign is {campaign.status}; only a paused campaign can be resumed")
    campaign.status = CampaignStatus.ACTIVE
    campaign.updated_at = now
    notify_due(session)
    session.flush()


def cancel(session: Session, campaign: Campaign, *, now: datetime) -> int:
    """Pending events become ``canceled``; events in progress make no further attempts."""
    if campaign.status == CampaignStatus.CANCELED:
        raise Conflict("campaign is already canceled")
    campaign.status = CampaignStatus.CANCELED
    campaign.updated_at = now
    canceled = session.execute(
        update(ScheduledEvent)
        .returning(ScheduledEvent.id)
        .where(ScheduledEvent.campaign_id == campaign.id, ScheduledEvent.status == EventStatus.PENDING)
        .values(
            status=EventStatus.CANCELED,
            updated_at=now,
            errors=func.jsonb_build_array("canceled with its campaign before dispatch").op("||")(ScheduledEvent.errors),
        )
    ).all()
    session.execute(
        update(ScheduledEvent)
        .where(ScheduledEvent.campaign_id == campaign.id, ScheduledEvent.status == EventStatus.IN_PROGRESS)
        .values(cancel_requested=True, updated_at=now)
    )
    session.flush()
    return len(canceled)


def event_counts(session: Session, campaign_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(
        select(ScheduledEvent.status, func.count())
        .where(ScheduledEvent.campaign_id == campaign_id)
        .group_by(ScheduledEvent.status)
    ).all()
    counts = dict.fromkeys(EVENT_STATUSES, 0)
    counts.update({str(status): int(n) for status, n in rows})
    return counts


def attempt_counts(session: Session, campaign_id: uuid.UUID) -> dict[str, int]:
    status = func.coalesce(CallAttempt.call_status, CallAttempt.last_status, CallStatus.QUEUED.value)
    rows = session.execute(
        select(status, func.count())
        .join(ScheduledEvent, ScheduledEvent.id == CallAttempt.event_id)
        .where(ScheduledEvent.campaign_id == campaign_id, CallAttempt.attempted_at.is_not(None))
        .group_by(status)
    ).all()
    return {str(status): int(n) for status, n in rows}


_IMPORT_DONE = (ImportStatus.COMPLETED, ImportStatus.FAILED)


def complete_finished_campaigns(session: Session, *, now: datetime) -> int:
    """Mark ``completed`` every active campaign whose import is done and whose events are all terminal.

    One set-based statement (the reconcile beat runs it; an index probe per active campaign on
    ``ix_scheduled_events_campaign_status``), so a finished campaign stops counting as active
    (``campaigns_active_campaigns``). Safe anywhere, at any time: an event is never terminal between two
    attempts (a retry goes from ``in_progress`` straight to ``pending``), and the import commits its status only
    once its events are in, so a committed campaign with no live event has none coming; an event made live
    again afterwards (a late result reopening a retry) is still claimed (the scheduler skips only paused and
    canceled campaigns) and ``effective_status`` shows the campaign active while it has one. Returns how many
    campaigns it completed.
    """
    live = (
        select(ScheduledEvent.id)
        .where(
            ScheduledEvent.campaign_id == Campaign.id,
            ScheduledEvent.status.in_((EventStatus.PENDING, EventStatus.IN_PROGRESS)),
        )
        .exists()
    )
    done = session.execute(
        update(Campaign)
        .where(Campaign.status == CampaignStatus.ACTIVE, Campaign.import_status.in_(_IMPORT_DONE), ~live)
        .values(status=CampaignStatus.COMPLETED, updated_at=now)
        .returning(Campaign.id)
        .execution_options(synchronize_session=False)
    ).all()
    return len(done)


def effective_status(session: Session, campaign: Campaign, counts: dict[str, int] | None = None) -> str:
    """``completed`` once the import is done and every event is terminal (stored by
    ``complete_finished_campaigns``; ``active`` again while an event has been made live since)."""
    if campaign.status not in (CampaignStatus.ACTIVE, CampaignStatus.COMPLETED) or campaign.import_status not in (
        _IMPORT_DONE
    ):
        return campaign.status
    counts = counts if counts is not None else event_counts(session, campaign.id)
    live = sum(n for status, n in counts.items() if status not in TERMINAL_EVENT_STATUSES)
    return CampaignStatus.COMPLETED if live == 0 else CampaignStatus.ACTIVE


def provider_holds(open_holds: Sequence[ProviderHold], channel: str) -> list[dict[str, Any]]:
    """Of ``open_holds`` (``lifecycle.holds.open_holds``), those that stop this channel's dispatch (a rejected
    key, a missing connection or profile): the campaign's events wait for them, and nobody is failed for them."""
    adapters = ("messaging",) if channel == Channel.SMS_CHAT else ("texml", "call_control")
    return [
        {"provider": h.provider, "reason": h.reason, "detail": h.detail, "since": iso(h.opened_at)}
        for h in open_holds
        if h.provider in adapters
    ]


def serialize_campaign(
    session: Session,
    campaign: Campaign,
    *,
    with_counts: bool = True,
    open_holds: Sequence[ProviderHold] | None = None,
) -> dict[str, Any]:
    """The campaign as the API returns it. A list passes ``open_holds``, read once for all its rows."""
    counts = event_counts(session, campaign.id) if with_counts else None
    body: dict[str, Any] = {
        "id": str(campaign.id),
        "name": campaign.name,
        "status": effective_status(session, campaign, counts),
        "assistant_id": campaign.assistant_id,
        "telnyx_conversation_channel": campaign.telnyx_conversation_channel,
        "telnyx_agent_target": campaign.telnyx_agent_target,
        "text": campaign.text,
        "max_retries_client_errors": campaign.max_retries_client_errors,
        "retry_interval_secs": campaign.retry_interval_secs,
        "start_at": iso(campaign.start_at),
        "default_region": campaign.default_region,
        "ruleset": campaign.ruleset,
        "timezone": campaign.timezone,
        "max_concurrent_calls": campaign.max_concurrent_calls,
        "max_dispatches_per_second": campaign.max_dispatches_per_second,
        "connection_id": campaign.connection_id,
        "custom_windows": campaign.custom_windows,
        "cap_max_attempts": campaign.cap_max_attempts,
        "cap_window_secs": campaign.cap_window_secs,
        "answering_machine_detection": campaign.answering_machine_detection,
        "voicemail_action": campaign.voicemail_action,
        "retry_policy": campaign.retry_policy,
        **_call_list_fields(campaign),
        "created_at": iso(campaign.created_at),
        "recurring_run_id": str(campaign.recurring_run_id) if campaign.recurring_run_id else None,
        "import": {
            "status": campaign.import_status,
            "error": campaign.import_error,
            "rows_total": campaign.rows_total,
            "rows_accepted": campaign.rows_accepted,
            "rows_rejected": campaign.rows_rejected,
            "rows_duplicate": campaign.rows_duplicate,
            "rows_suppressed": campaign.rows_suppressed,
            "rows_late_sent": campaign.rows_late_sent,
            "rows_late_skipped": campaign.rows_late_skipped,
        },
    }
    if counts is not None:
        body["counts"] = counts
        body["attempts"] = attempt_counts(session, campaign.id)
        body["held"] = pending.held_count(session, campaign.id)
        held = holds.open_holds(session) if open_holds is None else open_holds
        body["provider_holds"] = provider_holds(held, campaign.telnyx_conversation_channel)
    return body


def _call_list_fields(campaign: Campaign) -> dict[str, Any]:
    """``mapping``, ``variables``, ``drop_columns``, ``date_order``, ``dedupe_key``, ``late_policy``,
    ``allow_duplicate_upload`` as the campaign was created with them."""
    read = ListSettings.from_json(campaign.call_list)
    return {
        "mapping": read.mapping or None,
        "variables": list(read.variables) if read.variables is not None else None,
        "drop_columns": list(read.drop_columns) or None,
        "date_order": read.date_order,
        "dedupe_key": list(read.dedupe_key) if read.dedupe_key is not None else None,
        "late_policy": read.late_policy,
        "allow_duplicate_upload": read.allow_duplicate_upload,
    }

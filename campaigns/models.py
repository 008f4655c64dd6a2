"""SQLAlchemy models. PostgreSQL is the only source of truth."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaigns.db import Base
from campaigns.states import (
    ATTEMPT_STATES,
    CAMPAIGN_STATUSES,
    CHANNELS,
    EVENT_STATUSES,
    IMPORT_STATUSES,
    AttemptState,
    CampaignStatus,
    Channel,
    EventStatus,
    ImportStatus,
)

TZ = DateTime(timezone=True)


def _values(members: type[StrEnum]) -> list[str]:
    return [member.value for member in members]


def stored_as(members: type[StrEnum], length: int) -> Enum:
    """The column type of a status: ``VARCHAR(length)`` holding the member's value, read back as the member.

    The schema is the one the migrations created: no native enum type, and no CHECK constraint of its own (each
    table names its own, from ``campaigns.states``). A string that is not a member is written as it is, as a plain
    ``String`` would (a list filter on an unknown status finds nothing instead of raising).
    """
    return Enum(members, native_enum=False, create_constraint=False, length=length, values_callable=_values)


class ScheduledEvent(Base):
    """One scheduled call or SMS, with every Telnyx field plus what the engine needs."""

    __tablename__ = "scheduled_events"
    __table_args__ = (
        CheckConstraint(f"status IN {EVENT_STATUSES!r}", name="status"),
        CheckConstraint(f"telnyx_conversation_channel IN {CHANNELS!r}", name="channel"),
        # retry_count is every retry spent, over all outcomes: with a per-outcome retry_policy it may pass
        # max_retries_client_errors, so only its sign is checked (each outcome's budget is in outcome_retries).
        CheckConstraint("retry_count >= 0", name="retry_budget"),
        # Claims cost O(due): only pending rows are in this index, ordered by due time.
        Index(
            "ix_scheduled_events_due_pending",
            "scheduled_at_fixed_datetime",
            postgresql_where=text(f"status = '{EventStatus.PENDING}'"),
        ),
        Index(
            "ix_scheduled_events_lease_in_progress",
            "lease_expires_at",
            postgresql_where=text(f"status = '{EventStatus.IN_PROGRESS}'"),
        ),
        Index("ix_scheduled_events_assistant_scheduled", "assistant_id", "scheduled_at_fixed_datetime"),
        Index("ix_scheduled_events_campaign_status", "campaign_id", "status"),
        # One event per reminder per campaign (the recipient and the campaign's dedupe key): re-running an
        # interrupted import cannot duplicate anyone.
        Index(
            "uq_scheduled_events_campaign_reminder",
            "campaign_id",
            "telnyx_end_user_target",
            "dedupe_key",
            unique=True,
            postgresql_where=text("campaign_id IS NOT NULL"),
        ),
        Index("ix_scheduled_events_end_user_target", "telnyx_end_user_target"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    assistant_id: Mapped[str] = mapped_column(String(255))
    telnyx_conversation_channel: Mapped[Channel] = mapped_column(stored_as(Channel, 16))
    telnyx_end_user_target: Mapped[str] = mapped_column(String(255))
    telnyx_agent_target: Mapped[str] = mapped_column(String(255))
    scheduled_at_fixed_datetime: Mapped[datetime] = mapped_column(TZ)
    status: Mapped[EventStatus] = mapped_column(stored_as(EventStatus, 16), default=EventStatus.PENDING)
    # Call statuses stay strings: the column has no CHECK constraint, so a value outside ``CallStatus`` (a
    # provider's new status) must not make the row unreadable, as an enum type would on loading it.
    call_status: Mapped[str | None] = mapped_column(String(32))
    call_duration: Mapped[int | None] = mapped_column(Integer)
    conversation_id: Mapped[str | None] = mapped_column(String(255))
    conversation_metadata: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    dynamic_variables: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    call_settings: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)
    dispatched_at: Mapped[datetime | None] = mapped_column(TZ)
    errors: Mapped[list[str]] = mapped_column(JSONB, default=list)
    max_retries_client_errors: Mapped[int] = mapped_column(Integer, default=0)
    retry_interval_secs: Mapped[int | None] = mapped_column(Integer)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)

    # Engine fields.
    lease_expires_at: Mapped[datetime | None] = mapped_column(TZ)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # No foreign key on purpose: its per-row check costs ~10% of a bulk import. Only the importer sets it, in
    # the same transaction that reads the campaign, and campaigns are never deleted.
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    source_row: Mapped[int | None] = mapped_column(Integer)
    """Row number in the campaign's uploaded file."""
    source_values: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    """The uploaded row as written: header → value, every column (the phone too); null outside campaigns."""
    dedupe_key: Mapped[str] = mapped_column(Text, default="", server_default="")
    """The values of the campaign's ``dedupe_key`` columns (JSON, or its hash); ``""``: one event per number."""
    state: Mapped[str | None] = mapped_column(String(8))
    ruleset: Mapped[str] = mapped_column(String(64), default="none")
    timezone: Mapped[str | None] = mapped_column(String(64))
    timezone_candidates: Mapped[list[str] | None] = mapped_column(JSONB)
    connection_id: Mapped[str | None] = mapped_column(String(255))
    deferred_reason: Mapped[str | None] = mapped_column(Text)
    deferred_until: Mapped[datetime | None] = mapped_column(TZ)
    # Set by DELETE on /v2 (campaigns/events): gone from the Telnyx-compatible API, kept for exports and metrics.
    deleted_at: Mapped[datetime | None] = mapped_column(TZ)
    # Outcome settings (extension fields; DESIGN.md §2.5). Stored as strings, read through campaigns.states.
    # Server defaults too: the importers write events with COPY, naming only the columns they fill.
    answering_machine_detection: Mapped[str] = mapped_column(String(16), default="disabled", server_default="disabled")
    voicemail_action: Mapped[str] = mapped_column(String(16), default="retry", server_default="retry")
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """``{"<outcome>": {"max_retries": n, "retry_interval_secs": s}}`` for the outcomes it names."""
    outcome_retries: Mapped[dict[str, int]] = mapped_column(JSONB, default=dict, server_default="{}")
    """Retries spent so far per outcome (``{"busy": 1}``): each outcome of the policy has its own budget."""
    free_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Attempts that were the account's doing (``channel_limited``, ``provider_rejected``) and spent no budget.
    The current attempt is number ``retry_count + free_attempts + 1``."""

    attempts: Mapped[list[CallAttempt]] = relationship(
        back_populates="event", order_by="CallAttempt.attempt_number", lazy="selectin"
    )


class CallAttempt(Base):
    """One dispatch of an event; its id is the idempotency key sent to the provider."""

    __tablename__ = "call_attempts"
    __table_args__ = (
        UniqueConstraint("event_id", "attempt_number"),
        CheckConstraint(f"state IN {ATTEMPT_STATES!r}", name="state"),
        Index("ix_call_attempts_provider_id", "provider_id"),
        Index("ix_call_attempts_recipient_claimed", "recipient", "claimed_at"),
        Index("ix_call_attempts_claimed_at", "claimed_at"),
        Index("ix_call_attempts_live", "provider", postgresql_where=text("state <> 'finished'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("scheduled_events.id", ondelete="CASCADE"))
    attempt_number: Mapped[int] = mapped_column(Integer)
    state: Mapped[AttemptState] = mapped_column(stored_as(AttemptState, 16), default=AttemptState.CLAIMED)
    provider: Mapped[str] = mapped_column(String(32))
    claimed_at: Mapped[datetime] = mapped_column(TZ)
    attempted_at: Mapped[datetime | None] = mapped_column(TZ)
    finished_at: Mapped[datetime | None] = mapped_column(TZ)
    answered_at: Mapped[datetime | None] = mapped_column(TZ)
    provider_ended_at: Mapped[datetime | None] = mapped_column(TZ)
    """When a status query first said the call was over while its terminal status had not arrived (app time): the
    callback grace (``callback_grace_secs``) counts from here."""
    """When the answered callback arrived (null: never answered): TeXML's ``CallStatus=in-progress``
    (https://developers.telnyx.com/api-reference/callbacks/texml-call-answered) or Call Control's
    ``call.answered``."""
    provider_id: Mapped[str | None] = mapped_column(String(255))
    """call_sid / call_control_id for calls, message id for SMS."""
    # A call status or an SMS delivery status (both channels' attempts live here), and no CHECK constraint: strings.
    last_status: Mapped[str | None] = mapped_column(String(32))
    last_sequence: Mapped[int | None] = mapped_column(Integer)
    answered: Mapped[bool] = mapped_column(Boolean, default=False)
    call_status: Mapped[str | None] = mapped_column(String(32))
    call_duration: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # The number dialled, copied from the event so frequency caps count attempts per recipient across campaigns.
    recipient: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str | None] = mapped_column(String(32))
    """The engine's classification (``campaigns.states.Outcome``); ``call_status`` keeps Telnyx's own value."""
    answered_by: Mapped[str | None] = mapped_column(String(16))
    """``campaigns.states.AnsweredBy`` when answering-machine detection ran, else null."""
    conversation_id: Mapped[str | None] = mapped_column(String(255))
    insights: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """What ``call.conversation_insights.generated`` reported for the call's conversation."""

    event: Mapped[ScheduledEvent] = relationship(back_populates="attempts")


class WebhookReceipt(Base):
    """Every verified callback, stored before it is applied; unique on the provider's identity of it."""

    __tablename__ = "webhook_receipts"
    __table_args__ = (
        # The retention purge's question ("bodies older than the cutoff still stored"): the oldest first, and the
        # index shrinks as bodies are erased, instead of a scan of every receipt ever stored per batch.
        Index("ix_webhook_receipts_unpurged", "received_at", postgresql_where=text("length(body) > 0")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    provider_key: Mapped[str] = mapped_column(String(512), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(TZ)
    attempt_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    result: Mapped[str] = mapped_column(String(64))


class IdempotencyKey(Base):
    """A create request's ``Idempotency-Key``, the hash of its body and the response it got."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(TZ)


class Campaign(Base):
    """A call list turned into events, with its settings, import progress and status."""

    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint(f"status IN {CAMPAIGN_STATUSES!r}", name="status"),
        CheckConstraint(f"import_status IN {IMPORT_STATUSES!r}", name="import_status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(255))
    assistant_id: Mapped[str] = mapped_column(String(255))
    telnyx_conversation_channel: Mapped[Channel] = mapped_column(stored_as(Channel, 16))
    telnyx_agent_target: Mapped[str] = mapped_column(String(255))
    connection_id: Mapped[str | None] = mapped_column(String(255))
    text: Mapped[str | None] = mapped_column(Text)
    max_retries_client_errors: Mapped[int] = mapped_column(Integer, default=0)
    retry_interval_secs: Mapped[int | None] = mapped_column(Integer)
    start_at: Mapped[datetime] = mapped_column(TZ)
    default_region: Mapped[str | None] = mapped_column(String(8))
    ruleset: Mapped[str] = mapped_column(String(64), default="us")
    timezone: Mapped[str | None] = mapped_column(String(64))
    max_concurrent_calls: Mapped[int | None] = mapped_column(Integer)
    max_dispatches_per_second: Mapped[float | None] = mapped_column(Float)
    # Optional campaign frequency cap: at most cap_max_attempts dials to one recipient per cap_window_secs.
    cap_max_attempts: Mapped[int | None] = mapped_column(Integer)
    cap_window_secs: Mapped[int | None] = mapped_column(Integer)
    # The weekly windows of ruleset "custom": {"zone"?: str, "days": {"mon": [["09:00", "17:00"]], ...}}.
    custom_windows: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # Outcome settings, copied onto each event (DESIGN.md §2.5): detection on and voicemails retried by default.
    answering_machine_detection: Mapped[str] = mapped_column(String(16), default="detect", server_default="detect")
    voicemail_action: Mapped[str] = mapped_column(String(16), default="retry", server_default="retry")
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # How the call list is read (campaigns.mapping.ListSettings.as_json): mapping, variables, drop_columns, …
    call_list: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[CampaignStatus] = mapped_column(stored_as(CampaignStatus, 16), default=CampaignStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)

    columns: Mapped[list[str]] = mapped_column(JSONB, default=list)
    """Variable and metadata columns of the uploaded file, in file order (for the export)."""
    import_status: Mapped[ImportStatus] = mapped_column(stored_as(ImportStatus, 16), default=ImportStatus.PENDING)
    import_error: Mapped[str | None] = mapped_column(Text)
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_accepted: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    rows_duplicate: Mapped[int] = mapped_column(Integer, default=0)
    rows_suppressed: Mapped[int] = mapped_column(Integer, default=0)
    # Late rows (scheduled_at passed at import) under late_policy: sent at once, or skipped (counted as rejected).
    rows_late_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rows_late_skipped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The re-upload guard: SHA-256 of the file, and of the sorted (phone, dedupe key) set it imported.
    upload_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    upload_keys_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    # Set on campaigns created by a recurring definition's run (campaigns/recurring.py).
    recurring_run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("recurring_runs.id"), index=True)


class ProviderHold(Base):
    """An open breaker: the provider refused the account itself (a rejected API key, a missing connection or
    messaging profile), so dispatch through ``provider`` is held, and no event fails for it, until a probe is
    accepted. One row per provider adapter (``texml``, ``call_control``, ``messaging``); no row = dispatching."""

    __tablename__ = "provider_holds"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    """Bounded label: ``api_key`` (401/403), ``connection`` or ``messaging_profile`` (a 404/422 naming it)."""
    detail: Mapped[str] = mapped_column(Text)
    """What the provider answered, for ``deferred_reason`` and the console (``provider rejected the API key (401)``)."""
    opened_at: Mapped[datetime] = mapped_column(TZ)
    next_probe_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class ProviderBackoff(Base):
    """The provider refused a request for its rate (429): no new request goes to ``provider`` before
    ``not_before``, whichever scheduler claims. ``level`` grows while refusals keep coming (revision 0008_q2)."""

    __tablename__ = "provider_backoffs"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    level: Mapped[int] = mapped_column(Integer)
    not_before: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class ImportIssue(Base):
    """A row of an upload that was not imported: rejected, duplicate or suppressed (for ``errors.csv``)."""

    __tablename__ = "import_issues"
    __table_args__ = (Index("ix_import_issues_campaign_row", "campaign_id", "row_number"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    row_number: Mapped[int] = mapped_column(Integer)
    column: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))


class UploadChunk(Base):
    """An uploaded file kept in PostgreSQL until its import finishes, so any worker can read it."""

    __tablename__ = "upload_chunks"

    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


SUPPRESSION_REASONS = ("manual", "file", "sms_opt_out", "provider_block")


class Suppression(Base):
    """A number nobody may call or text (do-not-contact list, SMS opt-out, provider block)."""

    __tablename__ = "suppressions"
    __table_args__ = (CheckConstraint(f"reason IN {SUPPRESSION_REASONS!r}", name="reason"),)

    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ)


# --- recurring reminder campaigns (campaigns/recurring.py) ------------------------------------------------

RECURRING_ORIGINS = ("file", "api")
RECURRING_RUN_KINDS = ("scheduled", "catch_up", "manual")
RECURRING_RUN_STATUSES = ("completed", "no_new_file", "failed")


class RecurringDefinition(Base):
    """A reminder campaign that runs on a cron schedule: where its call list comes from and what to create."""

    __tablename__ = "recurring_definitions"
    __table_args__ = (
        CheckConstraint(f"origin IN {RECURRING_ORIGINS!r}", name="origin"),
        Index("ix_recurring_definitions_next_run_at", "next_run_at", postgresql_where=text("enabled")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    cron: Mapped[str] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text)
    """Absolute path or glob of the CSV call list(s)."""
    due: Mapped[str] = mapped_column(String(255))
    dedupe_key: Mapped[list[str]] = mapped_column(JSONB, default=list)
    campaign: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    """The campaign template: campaign settings as accepted by ``POST /v1/campaigns`` (without ``name``)."""
    call_list: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """The definition's ``mapping``, ``variables``, ``drop_columns`` and ``date_order`` (``ListSettings.as_json``);
    ``None``: none set. Applied to every campaign its runs create."""
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    origin: Mapped[str] = mapped_column(String(16))
    origin_path: Mapped[str | None] = mapped_column(Text)
    """The TOML file a ``file`` definition was read from."""
    allowed_root: Mapped[str | None] = mapped_column(Text)
    """The directory a run may read files from (symlinks resolved); set for every API definition."""
    spec_hash: Mapped[str] = mapped_column(String(64))
    next_run_at: Mapped[datetime | None] = mapped_column(TZ)
    last_run_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class RecurringRun(Base):
    """One run of a definition. Unique per (definition, tick): a scheduled tick can only ever run once."""

    __tablename__ = "recurring_runs"
    __table_args__ = (
        UniqueConstraint("definition_id", "tick_at"),
        CheckConstraint(f"kind IN {RECURRING_RUN_KINDS!r}", name="kind"),
        CheckConstraint(f"status IN {RECURRING_RUN_STATUSES!r}", name="status"),
        CheckConstraint("(kind = 'manual') = (tick_at IS NULL)", name="tick"),
        Index("ix_recurring_runs_definition_started", "definition_id", "started_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    definition_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("recurring_definitions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    tick_at: Mapped[datetime | None] = mapped_column(TZ)
    """The schedule instant this run stands for (``None`` for manual runs)."""
    missed_ticks: Mapped[int] = mapped_column(Integer, default=0)
    """Earlier ticks that passed while nothing ran, folded into this (catch-up) run."""
    started_at: Mapped[datetime] = mapped_column(TZ)
    finished_at: Mapped[datetime] = mapped_column(TZ)
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_created: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    rows_past: Mapped[int] = mapped_column(Integer, default=0)
    rows_duplicate: Mapped[int] = mapped_column(Integer, default=0)
    rows_suppressed: Mapped[int] = mapped_column(Integer, default=0)


class RecurringFile(Base):
    """A source file a definition has read (by content), so that a run only picks up new files."""

    __tablename__ = "recurring_files"

    definition_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("recurring_definitions.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    """The file's modification time when it was read: a later run skips a file at the same path, size and mtime
    without reading and hashing it again."""
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("recurring_runs.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    seen_at: Mapped[datetime] = mapped_column(TZ)


class RecurringReminder(Base):
    """A reminder a definition has scheduled, by dedupe key: the same reminder is never scheduled twice."""

    __tablename__ = "recurring_reminders"

    definition_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("recurring_definitions.id", ondelete="CASCADE"), primary_key=True
    )
    dedupe_key: Mapped[str] = mapped_column(Text, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("recurring_runs.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    scheduled_at: Mapped[datetime] = mapped_column(TZ)
    created_at: Mapped[datetime] = mapped_column(TZ)

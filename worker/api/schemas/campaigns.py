"""Campaigns on the wire (``/v1/campaigns``): settings, import progress, counts; the dry-run report."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from campaigns.states import CampaignStatus, Channel, ImportStatus
from worker.api.schemas.common import PageMeta, ResponseBody, Timestamp, Uuid
from worker.api.schemas.events import DetectionMode, OutcomeRetry, PolicyOutcome, VoicemailActionValue


class ImportProgress(ResponseBody):
    status: ImportStatus
    error: str | None
    rows_total: int
    rows_accepted: int
    rows_rejected: int
    rows_duplicate: int
    rows_suppressed: int
    rows_late_sent: int = Field(description="Rows whose time had passed at import, sent at once (late_policy)")
    rows_late_skipped: int = Field(description="Rows whose time had passed at import, skipped (among the rejected)")


class EventCounts(ResponseBody):
    """Events by status (the engine's: ``canceled`` included)."""

    pending: int
    in_progress: int
    completed: int
    failed: int
    canceled: int


class ProviderHoldView(ResponseBody):
    provider: str = Field(description="The adapter held: texml, call_control or messaging")
    reason: str = Field(description="api_key, connection or messaging_profile")
    detail: str = Field(description="What the provider answered, e.g. 'provider rejected the API key (401)'")
    since: Timestamp


class Campaign(ResponseBody):
    id: Uuid
    name: str
    status: CampaignStatus
    assistant_id: str
    telnyx_conversation_channel: Channel
    telnyx_agent_target: str
    text: str | None
    max_retries_client_errors: int
    retry_interval_secs: int | None
    start_at: Timestamp
    default_region: str | None
    ruleset: str
    timezone: str | None
    max_concurrent_calls: int | None
    max_dispatches_per_second: float | None
    connection_id: str | None
    custom_windows: dict[str, Any] | None
    cap_max_attempts: int | None
    cap_window_secs: int | None
    answering_machine_detection: DetectionMode = Field(description="disabled, detect (default), detect_premium")
    voicemail_action: VoicemailActionValue = Field(description="retry (default) or complete")
    retry_policy: dict[PolicyOutcome, OutcomeRetry] | None = Field(description="A retry budget per outcome")
    mapping: dict[str, str | None] | None = Field(
        description="Column header → phone, scheduled_at, scheduled_at.date, scheduled_at.time, timezone, state, text,"
        " metadata.<key>, a variable name, or null (dropped); unmapped headers match after normalization"
    )
    variables: list[str] | None = Field(description="Allow-list of the variables sent to the provider (null: all)")
    drop_columns: list[str] | None = Field(description="Columns never read")
    date_order: Literal["mdy", "dmy"] | None = Field(description="How dates such as 05/12/2026 are read")
    dedupe_key: list[str] | None = Field(
        description="Columns (after mapping) identifying one reminder; null: the phone (one event per number)"
    )
    late_policy: str | None = Field(
        description="A row whose scheduled_at has passed at import: send_now (null), skip, or"
        " 'send_now_if_before: <column> [<time column>] [- <duration>]'"
    )
    allow_duplicate_upload: bool = Field(
        description="Accept a file whose content, or (phone, dedupe key) set, a live campaign already has"
    )
    created_at: Timestamp
    recurring_run_id: Uuid | None
    import_: ImportProgress = Field(alias="import")
    counts: EventCounts
    attempts: dict[str, int] = Field(description="Attempts by call status")
    held: int = Field(description="Pending events that wait for someone to fix them (time zone unknown, no opening)")
    provider_holds: list[ProviderHoldView] = Field(
        description="Open provider holds stopping this channel's dispatch (a rejected API key, a missing connection"
        " or messaging profile): its events wait, none fails"
    )


class CampaignPage(ResponseBody):
    data: list[Campaign]
    meta: PageMeta


class ImportIssue(ResponseBody):
    row_number: int
    column: str
    value: str
    reason: str
    kind: str = Field(description="rejected, duplicate, suppressed, or late_sent (imported: due at once)")


class ColumnTarget(ResponseBody):
    column: str = Field(description="The header as written")
    target: str = Field(description="phone, scheduled_at, …, metadata.<key>, a variable name, or '-' (dropped)")


class PreviewRow(ResponseBody):
    row_number: int
    phone: str = Field(description="E.164")
    scheduled_at: Timestamp
    text: str | None = Field(description="The SMS as it will be sent (null for calls)")
    conversation_metadata: dict[str, str]
    dynamic_variables: dict[str, str]


class LateReport(ResponseBody):
    policy: str = Field(description="send_now, skip or send_now_if_before: …")
    sent_rows: list[int] = Field(description="Row numbers of the late rows sent at once (the first 1,000)")
    skipped_rows: list[int] = Field(description="Row numbers of the late rows skipped (the first 1,000)")


class DuplicateUpload(ResponseBody):
    campaign_id: Uuid
    name: str
    match: Literal["content", "reminders"] = Field(
        description="content: the same bytes; reminders: the same set of (phone, dedupe key)"
    )


class CampaignDryRun(ResponseBody):
    """What an upload would import (``?dry_run=true``): nothing is created."""

    dry_run: Literal[True]
    import_: ImportReport = Field(alias="import")


class ImportReport(ResponseBody):
    rows_total: int
    rows_accepted: int
    rows_rejected: int
    rows_duplicate: int
    rows_suppressed: int
    rows_late_sent: int = Field(description="Rows whose time had passed at import, sent at once (late_policy)")
    rows_late_skipped: int = Field(description="Rows whose time had passed at import, skipped (among the rejected)")
    late: LateReport
    duplicate_upload: DuplicateUpload | None = Field(
        description="A live campaign that already has this file: a real upload is refused (409) unless"
        " allow_duplicate_upload is set"
    )
    issues: list[ImportIssue] = Field(
        description="The first issues found (all of them in errors.csv after a real import)"
    )
    mapping: list[ColumnTarget] = Field(description="Each column of the file and what it became, in file order")
    variables: list[str] = Field(description="The variables each row carries (usable in the SMS template)")
    sent_variables: list[str] = Field(description="Those sent to the provider as dynamic_variables")
    preview: list[PreviewRow] = Field(description="The first rows to import, as they will be sent")

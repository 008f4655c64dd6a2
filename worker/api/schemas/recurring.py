"""Recurring definitions and their runs on the wire (``/v1/recurring``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from worker.api.schemas.common import PageMeta, RequestBody, ResponseBody, Timestamp, Uuid

# A definition's call-list settings (campaigns.mapping), the same in requests and responses.
MappingField = Annotated[
    dict[str, str | None] | None,
    Field(
        description="Column header → phone, scheduled_at, timezone, state, text, metadata.<key>, a variable name, or"
        " null / '-' (dropped), as for campaigns; applied to every campaign the runs create"
    ),
]
VariablesField = Annotated[list[str] | None, Field(description="Allow-list of the variables sent to the provider")]
DropColumnsField = Annotated[list[str] | None, Field(description="Columns never read")]
DateOrderField = Annotated[Literal["mdy", "dmy"] | None, Field(description="How dates such as 05/12/2026 are read")]


class RunRows(ResponseBody):
    total: int
    created: int
    rejected: int
    past: int
    duplicate: int
    suppressed: int


class RecurringRun(ResponseBody):
    id: Uuid
    kind: str = Field(description="scheduled, catch_up or manual")
    tick_at: Timestamp | None = Field(description="The schedule instant the run stands for (null for manual runs)")
    missed_ticks: int
    started_at: Timestamp
    finished_at: Timestamp
    status: str = Field(description="completed, no_new_file or failed")
    message: str
    rows: RunRows
    files: list[dict[str, Any]]
    campaign_ids: list[Uuid]


class RecurringDefinition(ResponseBody):
    """A definition; the detail view adds its run history, the list its last run."""

    id: Uuid
    name: str
    cron: str
    timezone: str
    source: str
    due: str
    dedupe_key: list[str]
    campaign: dict[str, Any]
    mapping: MappingField = None
    variables: VariablesField = None
    drop_columns: DropColumnsField = None
    date_order: DateOrderField = None
    enabled: bool
    origin: str = Field(description="file or api")
    origin_path: str | None
    next_run_at: Timestamp | None
    last_run_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    next_runs: list[Timestamp] | None = Field(None, description="The next runs (enabled definitions only)")
    runs_total: int | None = Field(None, description="Detail only")
    runs: list[RecurringRun] | None = Field(None, description="Detail only: the newest runs first")
    last_run: RecurringRun | None = Field(None, description="List only")


class RecurringDefinitionPage(ResponseBody):
    data: list[RecurringDefinition]
    meta: PageMeta


class RecurringDefinitionCreate(RequestBody):
    name: str
    cron: str = Field(description="Five-field cron expression, e.g. 0 7 * * 1-5")
    timezone: str = Field(description="IANA time zone the cron expression is read in")
    source: str = Field(description="CSV path or glob, under CAMPAIGNS_RECURRING_DIR")
    due: str = Field("now", description='When a row is due, e.g. "now" or "appointment_at - 24h"')
    dedupe_key: list[str] | None = Field(None, description="The columns that identify one reminder")
    enabled: bool = True
    campaign: dict[str, Any] = Field(description="Campaign settings as POST /v1/campaigns takes them, without name")
    mapping: MappingField = None
    variables: VariablesField = None
    drop_columns: DropColumnsField = None
    date_order: DateOrderField = None

"""The do-not-contact list on the wire (``/v1/suppressions``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from worker.api.schemas.common import PageMeta, RequestBody, ResponseBody, Timestamp

Reason = Literal["manual", "file", "sms_opt_out", "provider_block"]
"""``campaigns.models.SUPPRESSION_REASONS``."""


class Suppression(ResponseBody):
    phone_number: str = Field(description="E.164")
    reason: Reason
    note: str | None
    created_at: Timestamp


class SuppressionPage(ResponseBody):
    data: list[Suppression]
    meta: PageMeta


class LineError(ResponseBody):
    line: int
    value: str
    reason: str


class SuppressionImport(ResponseBody):
    """What a registry file added."""

    lines: int = Field(description="Physical lines read (blank and comment lines included)")
    numbers: int = Field(description="Valid numbers found (duplicates within the file included)")
    added: int
    already_listed: int
    duplicates_in_file: int
    invalid: int
    errors: list[LineError] = Field(description="The first bad lines")


class SuppressionCreate(RequestBody):
    phone_number: str = Field(description="Any common format; read with default_region when not E.164")
    reason: Reason = "manual"
    note: str | None = Field(None, max_length=2000)
    default_region: str | None = Field("US", description="Region code for numbers without a country code")

"""Health, readiness and webhook acknowledgements."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from worker.api.schemas.common import ResponseBody, Timestamp


class Health(ResponseBody):
    status: Literal["ok"]
    time: Timestamp = Field(description="The app's current time (warped in demos and tests)")


class Readiness(ResponseBody):
    status: Literal["ok", "unavailable"]
    database: str = Field(description='"ok" or why it is unreachable')
    redis: str = Field(description='"ok" or why it is unreachable')
    provider: str = Field(
        default="ok",
        description='"ok", or why the provider refuses the account and dispatch is held (a rejected API key, ...)',
    )


class WebhookResult(ResponseBody):
    result: str = Field(description="What the callback did: the outcome applied, progress, duplicate, stale, …")

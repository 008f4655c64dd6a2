"""Shapes every part of the API shares: the Telnyx error envelope, the list envelope, timestamps."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""An instant as the API writes it (``campaigns.clock.iso``: UTC, ``Z``). A string, so it is served as written."""
Uuid = Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"})]


class ResponseBody(BaseModel):
    """A response body: exactly the keys the domain serializer wrote (an unknown one is an error, not dropped)."""

    model_config = ConfigDict(extra="forbid")


class ErrorSource(ResponseBody):
    pointer: str = Field(description="JSON pointer to the field at fault, e.g. /scheduled_at_fixed_datetime")


class ErrorObject(ResponseBody):
    code: str = Field(description="Telnyx's error code where it has one (10005, 10009, 10015), else the HTTP status")
    title: str
    detail: str
    source: ErrorSource | None = None


class ErrorEnvelope(ResponseBody):
    """Telnyx's error envelope: every problem found, each naming its field where it has one."""

    errors: list[ErrorObject]


class PageMeta(ResponseBody):
    total_pages: int
    total_results: int
    page_number: int
    page_size: int


T = TypeVar("T")


class Page(ResponseBody, Generic[T]):
    """Telnyx's list envelope."""

    data: list[T]
    meta: PageMeta


class RequestBody(BaseModel):
    """A request body, for the schema: the domain validates the raw JSON itself, so that one answer lists every
    problem with its JSON pointer and Telnyx's wording (``campaigns.events.validation``)."""

    model_config = ConfigDict(extra="forbid")


def json_body(model: type[RequestBody], description: str | None = None) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``model`` as JSON (the schema is added by ``app.openapi``)."""
    body: dict[str, Any] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
    }
    if description:
        body["description"] = description
    return {"requestBody": body}

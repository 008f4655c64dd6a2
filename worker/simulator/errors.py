"""Telnyx's error envelope, the request checks that answer with it, and the errors the error outcomes inject."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse


class ApiError(Exception):
    """An error answered with the Telnyx error envelope."""

    def __init__(self, status_code: int, error: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(error.get("detail") or error.get("title"))
        self.status_code = status_code
        self.error = error
        self.headers = headers

    def response(self) -> JSONResponse:
        return JSONResponse({"errors": [self.error]}, status_code=self.status_code, headers=self.headers)


def invalid(detail: str, pointer: str, status_code: int = 422) -> ApiError:
    return ApiError(
        status_code,
        {"code": "10015", "title": "Invalid parameter", "detail": detail, "source": {"pointer": pointer}},
    )


def authorize(request: Request) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            {
                "code": "10009",
                "title": "Authentication failed",
                "detail": "An 'Authorization: Bearer <API key>' header is required.",
            },
        )


def json_object(raw: bytes, status_code: int = 422) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", "/", status_code)
    return body


def required_str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"'{key}' is required and must be a non-empty string.", f"/{key}")
    return value


def optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid(f"'{key}' must be a string.", f"/{key}")
    return value


def optional_url(body: Mapping[str, Any], key: str) -> str | None:
    value = optional_str(body, key)
    if value is not None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise invalid(f"'{key}' must be an absolute http(s) URL.", f"/{key}")
    return value


ACCOUNT_ERRORS: dict[str, ApiError] = {
    # Telnyx's envelope and codes for a rejected key: 10009 "Authentication failed" (401) and 10010
    # "Authorization failed" (403), developers.telnyx.com/development/api-fundamentals/api-errors.
    "http_401": ApiError(
        401,
        {
            "code": "10009",
            "title": "Authentication failed",
            "detail": "The required authentication headers were either invalid or not included in the request.",
        },
    ),
    "http_403": ApiError(
        403,
        {
            "code": "10010",
            "title": "Authorization failed",
            "detail": "You do not have permission to perform the requested action on the specified resource or "
            "resources.",
        },
    ),
}


def injected_error(outcome: str, pointer: str, *, dial: bool) -> ApiError | None:
    """The provider error an error-injection outcome stands for, if it is one."""
    if outcome in ACCOUNT_ERRORS:
        return ACCOUNT_ERRORS[outcome]
    if outcome == "http_429":
        title = "Too many dials per second" if dial else "Too many requests"
        return ApiError(429, {"code": "90103" if dial else "10011", "title": title})
    if outcome == "http_503":  # refused before placing anything (load shedding): the client may retry
        return ApiError(503, {"code": "10007", "title": "Unexpected error", "detail": "Simulated provider failure."})
    if outcome == "http_422":
        return ApiError(
            422,
            {
                "code": "10016",
                "title": "Invalid destination",
                "detail": "Simulated invalid destination.",
                "source": {"pointer": pointer},
            },
        )
    return None


def placed_error(outcome: str) -> ApiError | None:
    """The error answered AFTER the request was placed (``http_500``: the call rings, the message goes out)."""
    if outcome == "http_500":
        return ApiError(500, {"code": "10007", "title": "Unexpected error", "detail": "Simulated failure, placed."})
    return None

"""Every error the API answers, in Telnyx's envelope: ``{"errors": [{"code", "title", "detail", "source"?}]}``.

Domain exceptions (``campaigns.errors``) and FastAPI's own (validation, unknown route, wrong method) are mapped
here and nowhere else; ``responses(...)`` documents them on each route.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from campaigns.errors import Conflict, FieldError, IdempotencyKeyReused, NotFound, ValidationFailed
from worker.api.schemas.common import ErrorEnvelope

CONFLICT_CODE: Final = "409"
"""Ours, not Telnyx's: Telnyx's general codes have none for "not in a state that allows this" (10013, used here
before, is "Missing association"; 10021 "Resource in use" is about removal), so a conflict carries its HTTP
status as its code, as every other error without a Telnyx code here does."""
NOT_FOUND_CODE: Final = "10005"
INVALID_CODE: Final = "10015"
AUTH_CODE: Final = "10009"


def error_body(
    status: int, code: str, title: str, detail: str, pointer: str | None = None
) -> tuple[int, dict[str, Any]]:
    """An error in Telnyx's shape, with its status."""
    error: dict[str, Any] = {"code": code, "title": title, "detail": detail}
    if pointer is not None:
        error["source"] = {"pointer": pointer}
    return status, {"errors": [error]}


def error_response(status: int, code: str, title: str, detail: str, pointer: str | None = None) -> JSONResponse:
    status, body = error_body(status, code, title, detail, pointer)
    return JSONResponse(body, status_code=status)


def not_found(detail: str) -> JSONResponse:
    return error_response(404, NOT_FOUND_CODE, "Resource not found", detail)


class BodyTooLarge(StarletteHTTPException):
    """The request body crossed its cap while it was being read.

    An ``HTTPException``: FastAPI turns any other exception raised while it parses a body into a 400.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the {limit} byte limit")
        self.limit = limit


def too_large_body(limit: int) -> tuple[int, dict[str, Any]]:
    return error_body(413, INVALID_CODE, "Request too large", f"the request body is over the {limit} byte limit")


class Unauthorized(Exception):
    """No valid bearer token."""


_DESCRIPTIONS: Final = {
    400: "Invalid request: every problem, each with the JSON pointer of its field",
    401: "A valid bearer token is required",
    404: "No such resource",
    409: "The resource's state does not allow this",
    413: "The body is too large",
    422: "The Idempotency-Key was used with another body",
    500: "The request was not applied",
    503: "A dependency is unreachable",
}


def responses(
    *statuses: int, success: dict[int | str, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that may answer these errors, each with the envelope's schema, and ``success``:
    the other successful answers it has."""
    documented: dict[int | str, dict[str, Any]] = {**(success or {})}
    documented.update({status: {"model": ErrorEnvelope, "description": _DESCRIPTIONS[status]} for status in statuses})
    return documented


async def _unauthorized(_: Request, __: Exception) -> JSONResponse:
    response = error_response(401, AUTH_CODE, "Authentication failed", "a valid bearer token is required")
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationFailed)
    return JSONResponse({"errors": [e.as_dict() for e in exc.errors]}, status_code=400)


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotFound)
    return not_found(exc.detail)


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    return error_response(409, CONFLICT_CODE, "Conflict", str(exc))


async def _key_reused(_: Request, __: Exception) -> JSONResponse:
    detail = "this Idempotency-Key was used with a different request body"
    return error_response(422, INVALID_CODE, "Idempotency key reused", detail, "/Idempotency-Key")


async def _bad_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body")]
        errors.append(FieldError("/" + "/".join(loc), str(err.get("msg", "is invalid"))).as_dict())
    return JSONResponse({"errors": errors}, status_code=400)


async def _body_too_large(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyTooLarge)
    status, body = too_large_body(exc.limit)
    # The rest of the body is never read: close the connection rather than leave it to the next request.
    return JSONResponse(body, status_code=status, headers={"Connection": "close"})


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.status_code), "Error", str(exc.detail))


def install(app: FastAPI) -> None:
    """Answer every mapped exception with the envelope."""
    app.add_exception_handler(Unauthorized, _unauthorized)
    app.add_exception_handler(ValidationFailed, _invalid)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Conflict, _conflict)
    app.add_exception_handler(IdempotencyKeyReused, _key_reused)
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(BodyTooLarge, _body_too_large)

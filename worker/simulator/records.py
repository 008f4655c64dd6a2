"""The provider's records the engine asks about: a call's status (``GET /v2/calls/{id}``), the TeXML call list
and the message detail records search. Each question is counted (``SimulatorState.queries``), so a benchmark can
tell how much of the simulator's time the reconciler's questions take.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from campaigns.clock import iso, utcnow_real
from campaigns.states import CallStatus, MessageStatus
from worker.simulator.config import message_status
from worker.simulator.errors import ApiError, invalid
from worker.simulator.routes import authorize, delivery_of, state_of

router = APIRouter()


@router.get("/v2/calls/{call_control_id}")
async def retrieve_call(call_control_id: str, request: Request) -> JSONResponse:
    """Call status: ``is_alive`` until the call ends (its terminal callback goes out then, or for
    ``completed_late`` later), then the duration."""
    authorize(request)
    state_of(request).queries["call_status"] += 1
    call = state_of(request).calls.get(call_control_id)
    if call is None:
        raise ApiError(
            404,
            {
                "code": "10005",
                "title": "Resource not found",
                "detail": f"No call with call_control_id {call_control_id!r}.",
            },
        )
    return JSONResponse(
        {
            "data": {
                "call_control_id": call.call_control_id,
                "call_leg_id": call.call_leg_id,
                "call_session_id": call.call_session_id,
                "is_alive": call.is_alive,
                "call_duration": call.call_duration,
                "record_type": "call",
            }
        }
    )


@router.get("/v2/texml/Accounts/{account_sid}/Calls")
async def list_texml_calls(account_sid: str, request: Request) -> JSONResponse:
    """TeXML's call list, filtered by ``From``, ``To`` and ``StartTime_gt`` (a date: calls started after that day),
    in the shape of the official SDK's ``texml/accounts/call_retrieve_calls_response.py``. A call shows only
    ``list_delay`` seconds after it was placed (Telnyx: "This endpoint is eventually consistent")."""
    authorize(request)
    state_of(request).queries["call_list"] += 1
    query = request.query_params
    after = query.get("StartTime_gt")
    try:
        after_day = datetime.date.fromisoformat(after) if after else None
    except ValueError:
        raise invalid("'StartTime_gt' must be a date, YYYY-MM-DD.", "StartTime_gt") from None
    visible_until = utcnow_real() - datetime.timedelta(seconds=delivery_of(request).config.list_delay)
    calls = [
        {
            "account_sid": account_sid,
            "sid": call.call_control_id,
            "from": call.from_,
            "to": call.to,
            "direction": "outbound",
            "status": call.status or ("in-progress" if call.is_alive else CallStatus.COMPLETED),
            "date_created": iso(call.started_at),
            "start_time": iso(call.started_at),
            "duration": str(call.call_duration or 0),
            "uri": f"/v2/texml/Accounts/{account_sid}/Calls/{call.call_control_id}",
        }
        for call in state_of(request).calls.values()
        if call.started_at <= visible_until
        and query.get("From") in (None, call.from_)
        and query.get("To") in (None, call.to)
        and (after_day is None or call.started_at.date() > after_day)
    ]
    return JSONResponse({"calls": calls, "page": 0, "page_size": len(calls), "start": 0, "next_page_uri": None})


_MDR_STATUS = {
    MessageStatus.DELIVERED: "delivered",
    MessageStatus.DELIVERY_UNCONFIRMED: "dlr_unconfirmed",
    MessageStatus.DELIVERY_FAILED: "failed",
    MessageStatus.SENDING_FAILED: "gw_reject",
    MessageStatus.EXPIRED: "dlr_timeout",
}
"""A message's final status as its detail record writes it (``status``: ``gw_timeout | delivered |
dlr_unconfirmed | dlr_timeout | received | gw_reject | failed``, the official SDK's
``telnyx/types/detail_record_list_response.py``)."""

_RECORD_TYPES = ("messaging",)
"""The ``filter[record_type]`` values the simulator answers (Telnyx has many more, none the engine asks for)."""


def _created_at_gte(value: str | None) -> datetime.datetime | None:
    """``filter[created_at][gte]``: a date (Telnyx's documented form, read as midnight UTC) or an ISO 8601
    instant; a 400 naming the parameter for anything else."""
    if value is None:
        return None
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        pass
    else:
        return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)
    try:
        instant = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(
            "'filter[created_at][gte]' must be a date (YYYY-MM-DD) or an ISO 8601 date-time.",
            "filter[created_at][gte]",
            400,
        ) from None
    return instant if instant.tzinfo else instant.replace(tzinfo=datetime.UTC)


def _page_param(query: Mapping[str, str], name: str, default: int, most: int | None = None) -> int:
    """``page[number]`` / ``page[size]``: an integer from 1 (to ``most``); a 400 naming the parameter else."""
    raw = query.get(name)
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        value = 0
    if value < 1 or (most is not None and value > most):
        bounds = f"between 1 and {most}" if most is not None else "at least 1"
        raise invalid(f"'{name}' must be an integer {bounds}.", name, 400)
    return value


@router.get("/v2/detail_records")
async def search_detail_records(request: Request) -> JSONResponse:
    """Message detail records of the messages accepted (``filter[record_type]=messaging``), filtered by exact
    ``filter[cli]`` / ``filter[cld]`` / ``filter[direction]`` and ``filter[created_at][gte]``, sorted by
    ``created_at`` (``sort=-created_at``: newest first), paged by ``page[number]`` / ``page[size]`` (1 to 50,
    default 20), in the shape of the official SDK's ``telnyx/types/detail_record_list_response.py`` with
    ``pagination.py``'s ``meta``. A message shows ``list_delay`` seconds after it was accepted, as the TeXML call
    list does (how soon a real MDR shows is not documented)."""
    authorize(request)
    sim = state_of(request)
    sim.queries["detail_records"] += 1
    query = request.query_params
    record_type = query.get("filter[record_type]")
    if record_type not in _RECORD_TYPES:
        raise invalid(
            f"'filter[record_type]' is required and must be one of {', '.join(_RECORD_TYPES)}.",
            "filter[record_type]",
            400,
        )
    since = _created_at_gte(query.get("filter[created_at][gte]"))
    page_number = _page_param(query, "page[number]", 1)
    page_size = _page_param(query, "page[size]", 20, most=50)
    visible_until = utcnow_real() - datetime.timedelta(seconds=delivery_of(request).config.list_delay)
    wanted = {key: query.get(f"filter[{key}]") for key in ("cli", "cld", "direction")}
    records: list[dict[str, Any]] = []  # in the order accepted, which is created_at order
    for entry in sim.messages_log:
        if not entry["provider_id"] or entry["duplicate"]:
            continue  # refused before it was sent, or a repeated Idempotency-Key: no message of its own
        fields = {"cli": entry["from"], "cld": entry["to"], "direction": "outbound"}
        if any(value is not None and value != fields[key] for key, value in wanted.items()):
            continue
        created = datetime.datetime.fromisoformat(entry["received_at"].replace("Z", "+00:00"))
        if created > visible_until or (since is not None and created < since):
            continue
        records.append(
            {
                "record_type": "message_detail_record",
                "uuid": entry["provider_id"],
                **fields,
                "message_type": "SMS",
                "created_at": entry["received_at"],
                "status": _MDR_STATUS.get(message_status(entry["outcome"]), "delivered"),
                "parts": 1,
            }
        )
    if query.get("sort") == "-created_at":
        records.reverse()
    total_pages = max(1, -(-len(records) // page_size))
    page = records[(page_number - 1) * page_size : page_number * page_size]
    meta = {"page_number": page_number, "page_size": page_size, "total_pages": total_pages}
    return JSONResponse({"data": page, "meta": {**meta, "total_results": len(records)}})

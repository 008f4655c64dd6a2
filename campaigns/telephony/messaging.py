"""SMS through Telnyx messaging ``POST /messages`` with ``Idempotency-Key`` = attempt id; a message whose
outcome is unknown is looked up in the account's message detail records (``GET /detail_records``)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from campaigns.states import MessageStatus
from campaigns.telephony.errors import OutcomeUnknown
from campaigns.telephony.protocol import DispatchRequest, DispatchResult
from campaigns.telephony.transport import LIST_PAGE_SIZE, HttpAdapter, callback_url, earliest_since, get_json, post_json

MESSAGE_DETAIL_RECORD = "message_detail_record"
"""The ``record_type`` of a message detail record in a ``filter[record_type]=messaging`` search."""


class TelnyxMessaging(HttpAdapter):
    """SMS through ``POST /messages`` with ``Idempotency-Key`` = attempt id."""

    name = "messaging"

    def dispatch(self, request: DispatchRequest) -> DispatchResult:
        body: dict[str, Any] = {
            "from": request.from_,
            "to": request.to,
            "text": request.text or "",
            "webhook_url": callback_url(self.settings, "/webhooks/telnyx", request.attempt_id),
        }
        if self.settings.telnyx_messaging_profile_id:
            body["messaging_profile_id"] = self.settings.telnyx_messaging_profile_id
        data = post_json(self.client, "messages", body, headers={"Idempotency-Key": str(request.attempt_id)})
        message = data.get("data") or {}
        message_id = message.get("id") if isinstance(message, dict) else None
        if not isinstance(message_id, str) or not message_id:
            raise OutcomeUnknown("messaging answered without a message id")
        return DispatchResult(provider=self.name, provider_id=message_id, status=MessageStatus.QUEUED)

    def call_is_alive(self, provider_id: str) -> bool | None:
        return None

    @property
    def lists_calls(self) -> bool:
        # The detail records search needs nothing but the API key every messaging request carries.
        return True

    def find_call(self, request: DispatchRequest, *, since: datetime, exclude: Collection[str]) -> str | None:
        """The id of the message this attempt sent, looked up in the account's message detail records (MDRs):
        ``GET /detail_records`` filtered by ``record_type`` ``messaging``, ``direction`` ``outbound``, ``cli``
        (the sender, ``from``) and ``cld`` (the recipient, ``to``), ``created_at`` ``gte`` the day before
        ``since``, oldest first, one page of ``LIST_PAGE_SIZE``. The earliest outbound record from ``from_`` to
        ``to`` created at or after ``since`` (less ``CLOCK_SKEW``) whose ``uuid`` is not in ``exclude`` is this
        attempt's; ``None`` when none is listed (no proof that none was sent: the reconciler asks again until its
        bound). A page that is not the last, without a match on it, cannot tell; nor can a malformed answer.

        Sources: developers.telnyx.com/api-reference/detail-records/search-detail-records (``filter`` is a
        deepObject, ``filter[record_type]`` required; examples ``filter[created_at][gte]=2021-06-22``,
        ``filter[direction]=inbound`` "equal to", ``filter[cld][starts_with]=123``, ``sort=-created_at``;
        ``page[number]`` >= 1, ``page[size]`` 1 to 50, default 20) and the official SDK's
        ``telnyx/types/detail_record_list_params.py``, ``detail_record_list_response.py`` (``MessageDetailRecord``:
        ``record_type``, ``uuid`` "Unique identifier of the message", ``cli`` "from parameter in the Messaging
        API", ``cld`` "to parameter", ``created_at``, ``direction`` ``inbound | outbound``, ``status``) and
        ``pagination.py`` (``meta``: ``page_number``, ``total_pages``; a next page while ``page_number <
        total_pages``), telnyx-python 4.176.0.

        Not confirmed by either: that ``filter[cli]`` / ``filter[cld]`` with a bare value match exactly (only the
        general rule "a given record attribute and value", ``filter[status]=delivered``, says so); whether
        ``created_at`` takes a time of day and in which zone a bare date is read (hence a date, the day before,
        as the only documented form); that an MDR's ``uuid`` is the ``data.id`` ``POST /messages`` answers; how
        soon after sending an MDR shows.
        """
        query = {
            "filter[record_type]": "messaging",
            "filter[direction]": "outbound",
            "filter[cli]": request.from_,
            "filter[cld]": request.to,
            "filter[created_at][gte]": (since - timedelta(days=1)).date().isoformat(),
            "sort": "created_at",
            "page[number]": "1",
            "page[size]": str(LIST_PAGE_SIZE),
        }
        data = get_json(self.client, f"detail_records?{urlencode(query)}")
        records = data.get("data")
        if not isinstance(records, list):
            raise OutcomeUnknown("the message detail records search answered without a 'data' list")
        sent = earliest_since(
            (
                (record["uuid"], record.get("created_at"))
                for record in records
                if isinstance(record, dict)
                and record.get("record_type") == MESSAGE_DETAIL_RECORD
                and isinstance(record.get("uuid"), str)
                and record.get("direction") == "outbound"
                and record.get("cli") == request.from_
                and record.get("cld") == request.to
            ),
            since=since,
            exclude=exclude,
        )
        if sent is not None:
            return sent
        if _more_pages(data.get("meta"), listed=len(records)):
            raise OutcomeUnknown(f"the message detail records hold more than {LIST_PAGE_SIZE} messages to {request.to}")
        return None


def _more_pages(meta: object, *, listed: int) -> bool:
    """Whether the search has pages after the first: ``meta.total_pages`` says so; without it, a full page may
    be followed by another."""
    total_pages = meta.get("total_pages") if isinstance(meta, dict) else None
    if isinstance(total_pages, int) and not isinstance(total_pages, bool):
        return total_pages > 1
    return listed >= LIST_PAGE_SIZE

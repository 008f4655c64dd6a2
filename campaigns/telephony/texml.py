"""Outbound AI-assistant calls through TeXML ``POST /texml/ai_calls/{connection_id}`` (the default for calls).

No idempotency key exists on this endpoint, so a request whose outcome is unknown must never be re-sent.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from campaigns.states import CallStatus, MachineDetection
from campaigns.telephony.call_control import call_control_is_alive
from campaigns.telephony.errors import OutcomeUnknown, PermanentProviderError
from campaigns.telephony.protocol import DispatchRequest, DispatchResult
from campaigns.telephony.transport import LIST_PAGE_SIZE, HttpAdapter, callback_url, earliest_since, get_json, post_json


def texml_detection(mode: str, status_callback: str) -> dict[str, Any]:
    """The ``ai_calls`` parameters that request answering-machine detection (none when ``disabled``).

    ``MachineDetection`` ``Enable | Disable | DetectMessageEnd``, ``DetectionMode`` ``Regular | Premium |
    PremiumCallScreening``, ``AsyncAmd``, ``AsyncAmdStatusCallback(Method)``: the official SDK's
    ``telnyx/types/texml_initiate_ai_call_params.py`` (4.189.0); the modes in developers.telnyx.com/docs/voice/
    programmable-voice/texml-answering-machine. ``DetectMessageEnd`` waits for the greeting's end, so a machine
    is reported once the beep has passed (``machine_end_beep``); asynchronous, so the assistant is never held back
    while detection runs, and its result comes to the status callback URL with the attempt's id.
    """
    if mode not in (MachineDetection.DETECT, MachineDetection.DETECT_PREMIUM):
        return {}
    return {
        "MachineDetection": "DetectMessageEnd",
        "DetectionMode": "PremiumCallScreening" if mode == MachineDetection.DETECT_PREMIUM else "Regular",
        "AsyncAmd": True,
        "AsyncAmdStatusCallback": status_callback,
        "AsyncAmdStatusCallbackMethod": "POST",
    }


class TelnyxTexml(HttpAdapter):
    """Outbound AI-assistant calls through TeXML ``ai_calls``."""

    name = "texml"

    def dispatch(self, request: DispatchRequest) -> DispatchResult:
        connection_id = request.connection_id or self.settings.telnyx_texml_app_id
        if not connection_id:
            raise PermanentProviderError("no TeXML connection id: set CAMPAIGNS_TELNYX_TEXML_APP_ID")
        body: dict[str, Any] = {
            "From": request.from_,
            "To": request.to,
            "AIAssistantId": request.assistant_id,
            "StatusCallback": callback_url(self.settings, "/webhooks/telnyx/call-status", request.attempt_id),
            "StatusCallbackMethod": "POST",
            "StatusCallbackEvent": "initiated ringing answered completed no-answer busy canceled failed",
        }
        if request.dynamic_variables:
            body["AIAssistantDynamicVariables"] = dict(request.dynamic_variables)
        if request.sip_region:
            body["SipRegion"] = request.sip_region
        body.update(texml_detection(request.answering_machine_detection, body["StatusCallback"]))
        # A 404 on this path can only mean the connection (the TeXML application) in it: the account is held.
        data = post_json(self.client, f"texml/ai_calls/{connection_id}", body, missing="connection")
        call_sid = data.get("call_sid")
        if not isinstance(call_sid, str) or not call_sid:
            raise OutcomeUnknown("TeXML answered without a call_sid")
        status = str(data.get("status") or CallStatus.QUEUED)
        return DispatchResult(provider=self.name, provider_id=call_sid, status=status)

    def call_is_alive(self, provider_id: str) -> bool | None:
        return call_control_is_alive(self.client, provider_id)

    @property
    def lists_calls(self) -> bool:
        return bool(self.settings.telnyx_account_sid)

    def find_call(self, request: DispatchRequest, *, since: datetime, exclude: Collection[str]) -> str | None:
        """Look the call up in ``GET /texml/Accounts/{account_sid}/Calls``, filtered by ``From``, ``To`` and
        ``StartTime_gt`` (day resolution: the day before ``since``, so a request just after midnight is covered).

        The list "is eventually consistent" (developers.telnyx.com/api-reference/texml-rest-commands/
        fetch-multiple-call-resources), so ``None`` is no proof that no call was created: the reconciler asks
        again until its bound. Parameters and fields: the official SDK's ``texml/accounts/
        call_retrieve_calls_params.py`` (``From``, ``To``, ``StartTime_gt`` "YYYY-MM-DD", ``page[size]``) and
        ``call_retrieve_calls_response.py`` (``calls[]`` with ``sid``, ``from``, ``to``, ``date_created``,
        ``start_time``; ``next_page_uri``). A list longer than one page, without a match on it, cannot tell.
        """
        account_sid = self.settings.telnyx_account_sid
        if not account_sid:
            raise PermanentProviderError("no TeXML account SID: set CAMPAIGNS_TELNYX_ACCOUNT_SID")
        query = {
            "From": request.from_,
            "To": request.to,
            "StartTime_gt": (since - timedelta(days=1)).date().isoformat(),
            "page[size]": str(LIST_PAGE_SIZE),
        }
        data = get_json(self.client, f"texml/Accounts/{quote(account_sid, safe='')}/Calls?{urlencode(query)}")
        calls = data.get("calls")
        if not isinstance(calls, list):
            raise OutcomeUnknown("the TeXML call list answered without a 'calls' list")
        placed = earliest_since(
            (
                (call["sid"], call.get("date_created") or call.get("start_time"))
                for call in calls
                if isinstance(call, dict)
                and isinstance(call.get("sid"), str)
                and call.get("from") == request.from_
                and call.get("to") == request.to
            ),
            since=since,
            exclude=exclude,
        )
        if placed is not None:
            return placed
        if data.get("next_page_uri"):
            raise OutcomeUnknown(f"the TeXML call list has more than {LIST_PAGE_SIZE} calls to {request.to}")
        return None

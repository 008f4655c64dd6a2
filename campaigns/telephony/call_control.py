"""Calls dialled through Call Control ``POST /calls`` with ``command_id`` = attempt id (Telnyx ignores a repeated
dial with the same ``command_id``: at-most-once dialing), and ``GET /calls/{id}``, which both call adapters use to
ask whether a call is still up."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Final

import httpx

from campaigns.states import CallStatus, MachineDetection
from campaigns.telephony.errors import OutcomeUnknown, PermanentProviderError
from campaigns.telephony.protocol import DispatchRequest, DispatchResult
from campaigns.telephony.transport import HttpAdapter, callback_url, post_json


def call_control_is_alive(client: httpx.Client, call_control_id: str) -> bool | None:
    """``GET /calls/{id}``: ``is_alive``, or ``None`` when the provider cannot say.

    Only a 200 with ``data.is_alive`` (the official SDK's ``telnyx/types/call_retrieve_status_response.py``,
    4.189.0) tells; a 404 (Telnyx forgets an ended call, or has not indexed a new one yet), a 5xx or a timeout
    cannot tell, and the reconciler must not read ``None`` as "over" (it extends the lease, bounded by the call's
    time limit).
    """
    try:
        response = client.get(f"calls/{call_control_id}")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        alive = response.json()["data"]["is_alive"]
    except (ValueError, KeyError, TypeError):
        return None
    return bool(alive)


CALL_CONTROL_DETECTION: Final[Mapping[str, str]] = {
    MachineDetection.DETECT: "detect",
    MachineDetection.DETECT_PREMIUM: "premium_ios_call_screening_detection",
}
"""Dial's ``answering_machine_detection`` per mode (the official SDK's ``telnyx/types/call_dial_params.py``,
4.189.0: ``premium``, ``premium_ios_call_screening_detection``, ``detect``, …, ``disabled``). ``detect`` sends
``call.machine.detection.ended``; the premium mode with call screening sends
``call.machine.premium.detection.ended`` and, for Apple's call screening,
``call.machine.premium.call_screening.detected``. ``disabled`` sends nothing (Telnyx's default)."""


class TelnyxCallControl(HttpAdapter):
    """Calls dialled through Call Control with ``command_id`` = attempt id (at-most-once dialing)."""

    name = "call_control"
    dedupes_repeats = True  # command_id = attempt id; Telnyx ignores a repeat within 60 s (RESEND_WINDOW_SECS)

    def dispatch(self, request: DispatchRequest) -> DispatchResult:
        connection_id = request.connection_id or self.settings.telnyx_connection_id
        if not connection_id:
            raise PermanentProviderError("no Call Control connection id: set CAMPAIGNS_TELNYX_CONNECTION_ID")
        body: dict[str, Any] = {
            "connection_id": connection_id,
            "from": request.from_,
            "to": request.to,
            "command_id": str(request.attempt_id),
            "webhook_url": callback_url(self.settings, "/webhooks/telnyx", request.attempt_id),
            "client_state": base64.b64encode(str(request.attempt_id).encode()).decode(),
            "timeout_secs": 30,
            "assistant": {"id": request.assistant_id, "dynamic_variables": dict(request.dynamic_variables)},
        }
        if request.sip_region:
            # Dial's ``sip_region`` ("US", "Europe", "Canada", "Australia", "Middle East"; Telnyx's default is US):
            # the official SDK's ``telnyx/types/call_dial_params.py`` (4.189.0), Telnyx API reference "Dial"
            # (developers.telnyx.com/api-reference/call-commands/dial). The same values as TeXML's ``SipRegion``,
            # which the scheduled event's ``call_settings.sip_region`` is documented to match.
            body["sip_region"] = request.sip_region
        if request.answering_machine_detection in CALL_CONTROL_DETECTION:
            body["answering_machine_detection"] = CALL_CONTROL_DETECTION[request.answering_machine_detection]
        data = post_json(self.client, "calls", body).get("data") or {}
        call_control_id = data.get("call_control_id") if isinstance(data, dict) else None
        if not isinstance(call_control_id, str) or not call_control_id:
            raise OutcomeUnknown("Call Control answered without a call_control_id")
        return DispatchResult(provider=self.name, provider_id=call_control_id, status=CallStatus.QUEUED)

    def call_is_alive(self, provider_id: str) -> bool | None:
        return call_control_is_alive(self.client, provider_id)

"""SMS through Telnyx messaging ``POST /messages`` with ``Idempotency-Key`` = attempt id."""

from __future__ import annotations

from typing import Any

from campaigns.states import MessageStatus
from campaigns.telephony.errors import OutcomeUnknown
from campaigns.telephony.protocol import DispatchRequest, DispatchResult
from campaigns.telephony.transport import HttpAdapter, callback_url, post_json


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

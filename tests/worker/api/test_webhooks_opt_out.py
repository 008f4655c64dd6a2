"""Signed messaging webhooks that feed the do-not-contact list: STOP / START replies and error 40300."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import respx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from campaigns import suppression
from campaigns.db import unit_of_work
from campaigns.models import Suppression, WebhookReceipt
from tests.worker.api.test_webhooks import AGENT, JSON, JSON_PATH, MESSAGES_URL, Harness, h, make_harness

__all__ = ["h", "make_harness"]  # fixtures, imported for the tests below

SENDER = "+12125550147"


def inbound(text: str, *, event_id: str | None = None, sender: str = SENDER) -> bytes:
    """A ``message.received`` webhook shaped like Telnyx's (developers.telnyx.com, callbacks/inbound-message)."""
    return json.dumps(
        {
            "data": {
                "record_type": "event",
                "id": event_id or str(uuid.uuid4()),
                "event_type": "message.received",
                "occurred_at": "2026-05-07T14:31:00.000+00:00",
                "payload": {
                    "record_type": "message",
                    "direction": "inbound",
                    "id": str(uuid.uuid4()),
                    "type": "SMS",
                    "from": {"phone_number": sender, "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless"},
                    "to": [
                        {"phone_number": AGENT, "status": "delivered", "carrier": "TELNYX LLC", "line_type": "VoIP"}
                    ],
                    "text": text,
                    "media": [],
                    "encoding": "GSM-7",
                    "parts": 1,
                    "errors": [],
                },
            },
            "meta": {"attempt": 1, "delivered_to": "https://example.com/webhooks/telnyx"},
        }
    ).encode()


def listed(h: Harness) -> dict[str, str]:
    with h.rt.sessions() as s:
        return {phone: reason for phone, reason in s.execute(select(Suppression.phone, Suppression.reason))}


def receipts(h: Harness) -> list[tuple[str, str]]:
    with h.rt.sessions() as s:
        return [(r.kind, r.result) for r in s.scalars(select(WebhookReceipt).order_by(WebhookReceipt.received_at))]


def sms_route(h: Harness) -> respx.Route:
    def ok(request: httpx.Request) -> httpx.Response:
        to = json.loads(request.content)["to"]
        return httpx.Response(200, json={"data": {"id": str(uuid.uuid4()), "to": [{"phone_number": to}]}})

    return h.router.post(MESSAGES_URL).mock(side_effect=ok)


def test_stop_reply_lists_the_sender_and_stops_the_next_message(h: Harness) -> None:
    route = sms_route(h)
    event_id = h.create(
        telnyx_conversation_channel="sms_chat",
        telnyx_end_user_target=SENDER,
        text="Reminder: tomorrow 10 AM",
        scheduled_at_fixed_datetime=(h.clock.now() + timedelta(hours=1)).isoformat(),
    )
    body = inbound("Stop")
    response = h.post(JSON_PATH, body, JSON)
    assert response.status_code == 200 and response.json() == {"result": "opt-out: added"}
    assert listed(h) == {SENDER: "sms_opt_out"}

    # Telnyx retries a webhook with the same event id: stored once, applied once.
    assert h.post(JSON_PATH, body, JSON).json() == {"result": "duplicate"}
    assert receipts(h) == [("message.received", "opt-out: added")]

    h.due(event_id)
    assert h.claim() == []
    assert route.call_count == 0
    event = h.event(event_id)
    assert event["status"] == "failed" and "do-not-contact list (sms_opt_out" in event["errors"][0]


def test_start_reply_takes_an_opt_out_back_but_not_an_operator_entry(h: Harness) -> None:
    assert h.post(JSON_PATH, inbound("STOP"), JSON).json() == {"result": "opt-out: added"}
    assert h.post(JSON_PATH, inbound("start"), JSON).json() == {"result": "opt-in: removed"}
    assert listed(h) == {}
    with unit_of_work(h.rt.sessions) as s:
        suppression.add(s, SENDER, now=h.clock.now())
    assert h.post(JSON_PATH, inbound("UNSTOP"), JSON).json() == {"result": "opt-in: nothing to remove"}
    assert listed(h) == {SENDER: "manual"}


def test_other_replies_change_nothing(h: Harness) -> None:
    assert h.post(JSON_PATH, inbound("Cancel my appointment please"), JSON).json() == {"result": "inbound: no keyword"}
    assert listed(h) == {}


def test_forged_or_unsigned_stop_is_rejected(h: Harness) -> None:
    assert h.post(JSON_PATH, inbound("STOP"), JSON, key=Ed25519PrivateKey.generate()).status_code == 401
    assert h.post(JSON_PATH, inbound("STOP"), JSON, signed=False).status_code == 401
    genuine = inbound("Thanks", event_id="evt-1")
    forged = inbound("STOP", event_id="evt-1")
    assert h.post(JSON_PATH, forged, JSON, signed_body=genuine).status_code == 401
    assert listed(h) == {}
    assert receipts(h) == []


def test_delivery_failure_with_error_40300_lists_the_recipient(h: Harness) -> None:
    route = sms_route(h)
    event_id = h.create(telnyx_conversation_channel="sms_chat", telnyx_end_user_target=SENDER, text="Hi")
    target = h.claim_and_dispatch(event_id, route, "webhook_url")
    finalized: dict[str, Any] = {
        "data": {
            "record_type": "event",
            "id": str(uuid.uuid4()),
            "event_type": "message.finalized",
            "occurred_at": "2026-05-07T14:40:00.000+00:00",
            "payload": {
                "record_type": "message",
                "direction": "outbound",
                "id": target.provider_id,
                "from": {"phone_number": AGENT},
                "to": [{"phone_number": SENDER, "status": "sending_failed"}],
                "errors": [{"code": "40300", "title": "Blocked due to STOP message"}],
            },
        }
    }
    response = h.post(target.callback_path, json.dumps(finalized).encode(), JSON)
    assert response.json() == {"result": "sending_failed"}
    assert h.event(event_id)["status"] == "failed"
    assert listed(h) == {SENDER: "provider_block"}

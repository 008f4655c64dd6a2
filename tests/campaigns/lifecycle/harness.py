"""The steps of an event's life as the lifecycle tests drive them: real PostgreSQL, the provider faked with respx,
time driven by the frozen clock."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from campaigns import lifecycle, telephony, webhooks
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.dispatch import dispatch_attempt
from campaigns.models import CallAttempt, ScheduledEvent
from campaigns.settings import sending_lease
from campaigns.telephony.hints import hint_key, signed_hint
from tests.conftest import TEST_TELNYX_BASE_URL
from tests.factories import make_event
from worker.runtime import Runtime

TEXML = f"{TEST_TELNYX_BASE_URL}/texml/ai_calls/texml-app-1"
MESSAGES = f"{TEST_TELNYX_BASE_URL}/messages"


def create(rt: Runtime, body: dict[str, object]) -> uuid.UUID:
    with unit_of_work(rt.sessions) as s:
        return make_event(s, rt.clock.now(), body).id


def claim(rt: Runtime) -> list[uuid.UUID]:
    with unit_of_work(rt.sessions) as s:
        claimed = lifecycle.claim_due_events(
            s, now=rt.clock.now(), limit=100, lease=timedelta(minutes=2), providers=rt.providers
        )
    return [c.attempt_id for c in claimed]


def died_while_sending(
    rt: Runtime, clock: FrozenClock, body: dict[str, object], *, provider: str
) -> tuple[uuid.UUID, uuid.UUID, datetime]:
    """An event from ``body`` whose worker committed ``sending`` to ``provider`` and died; the sending lease has
    expired. Its id, the attempt's, and when the request left."""
    event_id = create(rt, body)
    clock.advance(600)
    (attempt_id,) = claim(rt)
    sent_at = clock.now()
    lease = timedelta(seconds=sending_lease(rt.settings))
    with unit_of_work(rt.sessions) as s:
        assert lifecycle.begin_dispatch(s, attempt_id, provider=provider, now=sent_at, dispatch_lease=lease)
    clock.advance(sending_lease(rt.settings) + 1)
    return event_id, attempt_id, sent_at


def dispatch(rt: Runtime, attempt_id: uuid.UUID) -> str:
    return dispatch_attempt(rt.sessions, attempt_id, providers=rt.providers, clock=rt.clock, settings=rt.settings)


def texml_callback(rt: Runtime, attempt_id: uuid.UUID, status: str, seq: int, duration: str = "0") -> str:
    """A TeXML status callback for the attempt's call (its stored call id, else ``v3:<attempt id>``), posted to the
    URL it was dispatched with (the signed hint)."""
    with rt.sessions() as s:
        stored = s.scalar(select(CallAttempt.provider_id).where(CallAttempt.id == attempt_id))
    form = {
        "CallSid": stored or f"v3:{attempt_id}",
        "CallStatus": status,
        "SequenceNumber": str(seq),
        "CallDuration": duration,
    }
    cb = telephony.parse_texml_status(form, signed_hint(rt.settings, attempt_id), hint_key(rt.settings))
    with unit_of_work(rt.sessions) as s:
        return webhooks.record_and_apply(s, cb, repr(form).encode(), now=rt.clock.now())


def load(sessions: sessionmaker[Session], event_id: uuid.UUID) -> ScheduledEvent:
    with sessions() as s:
        event = s.get(ScheduledEvent, event_id)
        assert event is not None
        _ = event.attempts
        return event


def attempt_in(request: httpx.Request) -> uuid.UUID:
    """The attempt a provider request is for, read from the hint in its callback URL (``<attempt id>.<mac>``)."""
    body = json.loads(request.content)
    url = body.get("StatusCallback") or body.get("webhook_url")
    (hint,) = parse_qs(urlsplit(url).query)["attempt_id"]
    return uuid.UUID(hint.partition(".")[0])


def texml_ok(request: httpx.Request) -> httpx.Response:
    """TeXML accepts the call; its ``call_sid`` is ``v3:<attempt id>``, the CallSid :func:`texml_callback` sends
    (a callback whose call id differs from the stored one never applies to the attempt)."""
    call_sid = f"v3:{attempt_in(request)}"
    return httpx.Response(200, json={"from": "+1", "to": "+1", "status": "queued", "call_sid": call_sid})


def run_call(rt: Runtime, clock: FrozenClock, event_id: uuid.UUID, outcome: str) -> uuid.UUID:
    """Advance to the event's due time, claim it, dispatch it and deliver ``outcome``."""
    event = load(rt.sessions, event_id)
    clock.set(max(clock.now(), event.scheduled_at_fixed_datetime))
    (attempt_id,) = claim(rt)
    assert dispatch(rt, attempt_id) == "sent"
    clock.advance(30)
    texml_callback(rt, attempt_id, "initiated", 0)
    texml_callback(rt, attempt_id, outcome, 3, duration="42" if outcome == "completed" else "0")
    return attempt_id


def runtime_with(rt: Runtime, **changes: object) -> Runtime:
    """``rt`` with some settings changed (``call_provider``, ``telnyx_account_sid``, ...), on its own client."""
    settings = rt.settings.model_copy(update=changes)
    client = httpx.Client(base_url=settings.telnyx_base_url + "/", timeout=2.0)
    providers = telephony.providers_from_settings(settings, client)
    return Runtime(settings=settings, clock=rt.clock, sessions=rt.sessions, providers=providers)


def reconcile_as_beat(rt: Runtime) -> lifecycle.ReconcileReport:
    """One reconcile pass with the parameters the beat task gives it (frozen clock: app time is real time)."""
    return lifecycle.reconcile_expired_leases(
        rt.sessions,
        now=rt.clock.now(),
        providers=rt.providers,
        call_lease=timedelta(seconds=rt.settings.call_lease_secs),
        resend_within=timedelta(seconds=telephony.RESEND_WINDOW_SECS),
        lookup=lifecycle.CallLookup(
            every=timedelta(seconds=sending_lease(rt.settings)),
            until=timedelta(seconds=rt.settings.unknown_lookup_secs),
            redial_not_found=rt.settings.redial_not_found,
        ),
        callback_grace=timedelta(seconds=rt.settings.callback_grace_secs),
    )

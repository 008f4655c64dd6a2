"""Finished campaigns are marked ``completed`` (the reconcile beat) and only live ones count as active
(``campaigns_active_campaigns``, which counted every campaign left ``active`` in the database); per-campaign
attempts by outcome feed the dashboard's campaign selector."""

from __future__ import annotations

import uuid

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from campaigns import campaign
from campaigns.clock import FrozenClock
from campaigns.metrics_database import DatabaseCollector
from campaigns.models import CallAttempt, Campaign, ScheduledEvent
from campaigns.states import CampaignStatus, ImportStatus
from tests.factories import call_body, make_event


def _campaign(s: Session, clock: FrozenClock, name: str, *, imported: bool = True) -> Campaign:
    body = {"name": name, "assistant_id": "a1", "telnyx_agent_target": "+15553456789"}
    made = campaign.create_campaign(s, campaign.validate_settings(body, now=clock.now()), now=clock.now())
    if imported:
        made.import_status = ImportStatus.COMPLETED
    return made


def _event(s: Session, clock: FrozenClock, owner: Campaign, status: str) -> uuid.UUID:
    to = f"+1555{uuid.uuid4().int % 10**7:07d}"  # one recipient per event: unique within a campaign
    event = make_event(s, clock.now(), call_body(clock.now(), telnyx_end_user_target=to))
    s.execute(update(ScheduledEvent).where(ScheduledEvent.id == event.id).values(campaign_id=owner.id, status=status))
    return event.id


def _attempt(event_id: uuid.UUID, clock: FrozenClock, **values: object) -> CallAttempt:
    now = clock.now()
    return CallAttempt(
        id=uuid.uuid4(), event_id=event_id, attempt_number=1, provider="texml", claimed_at=now, attempted_at=now,
        **values,
    )  # fmt: skip


def _gauges(sessions: sessionmaker[Session], clock: FrozenClock) -> dict[str, list[tuple[dict[str, str], float]]]:
    collector = DatabaseCollector(sessions, clock.now, max_age=0)
    return {f.name: [(s.labels, s.value) for s in f.samples] for f in collector.collect()}


def test_a_finished_campaign_is_completed_and_no_longer_counted_active(
    sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    with sessions.begin() as s:
        finished = _campaign(s, clock, "finished")
        _event(s, clock, finished, "completed")
        _event(s, clock, finished, "failed")
        running = _campaign(s, clock, "running")
        _event(s, clock, running, "completed")
        _event(s, clock, running, "pending")
        importing = _campaign(s, clock, "importing", imported=False)  # no events yet, import not done
        paused = _campaign(s, clock, "paused")
        paused.status = CampaignStatus.PAUSED
        empty = _campaign(s, clock, "empty")  # imported, every row rejected: nothing left to do
    ids = {c.name: c.id for c in (finished, running, importing, paused, empty)}

    gauges = _gauges(sessions, clock)  # counted right, before the beat marks anything
    assert gauges["campaigns_active_campaigns"] == [({}, 2.0)]  # running, importing

    clock.advance(60)
    with sessions.begin() as s:
        assert campaign.complete_finished_campaigns(s, now=clock.now()) == 2
    with sessions.begin() as s:
        assert campaign.complete_finished_campaigns(s, now=clock.now()) == 0  # idempotent
    with sessions() as s:
        stored = {name: s.get(Campaign, ident) for name, ident in ids.items()}
        assert {name: c.status for name, c in stored.items() if c} == {
            "finished": "completed", "running": "active", "importing": "active", "paused": "paused",
            "empty": "completed",
        }  # fmt: skip
        done = stored["finished"]
        assert done is not None and done.updated_at == clock.now()
        assert campaign.serialize_campaign(s, done)["status"] == "completed"

    gauges = _gauges(sessions, clock)
    assert gauges["campaigns_active_campaigns"] == [({}, 2.0)]
    shown = {labels["campaign_id"] for labels, _ in gauges["campaigns_campaign_events"]}
    assert shown == {
        str(ids["finished"]),
        str(ids["running"]),
    }  # a completed campaign keeps its final numbers on the dashboard


def test_a_completed_campaign_with_an_event_made_live_again_shows_active(
    sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    with sessions.begin() as s:
        owner = _campaign(s, clock, "reopened")
        event_id = _event(s, clock, owner, "failed")
    with sessions.begin() as s:
        assert campaign.complete_finished_campaigns(s, now=clock.now()) == 1
    with sessions.begin() as s:  # a late result reopens a retry
        s.execute(update(ScheduledEvent).where(ScheduledEvent.id == event_id).values(status="pending"))
    with sessions() as s:
        stored = s.get(Campaign, owner.id)
        assert stored is not None and stored.status == "completed"
        assert campaign.serialize_campaign(s, stored)["status"] == "active"


def test_per_campaign_attempts_by_outcome(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    with sessions.begin() as s:
        owner = _campaign(s, clock, "outcomes")
        finished = (
            ("answered", "completed"), ("voicemail", "completed"), (None, "completed"), (None, "busy"),
            ("channel_limited", "failed"),
        )  # fmt: skip
        for outcome, call_status in finished:
            event_id = _event(s, clock, owner, "completed")
            s.add(_attempt(event_id, clock, state="finished", call_status=call_status, outcome=outcome))
        s.add(_attempt(_event(s, clock, owner, "in_progress"), clock, state="sent"))
    attempts = {
        labels["outcome"]: value
        for labels, value in _gauges(sessions, clock)["campaigns_campaign_attempts"]
        if labels["campaign_id"] == str(owner.id)
    }
    assert all("campaign" not in labels for labels, _ in _gauges(sessions, clock)["campaigns_campaign_attempts"])
    # An attempt recorded before outcomes existed counts by its call status, completed read as answered.
    assert attempts == {"answered": 2, "voicemail": 1, "busy": 1, "channel_limited": 1}

"""The campaign page's charts (attempts over time by outcome, the events still waiting and why) and its live
refresh, which also brings the events table under the page's own filter."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from campaigns.models import CallAttempt, ScheduledEvent
from campaigns.states import AttemptState, EventStatus
from campaigns.windows import HOLD_UNTIL
from tests.worker.ui.test_console_pages import DATA, create
from worker.runtime import Runtime


def _campaign(client: TestClient) -> tuple[str, uuid.UUID]:
    answer = create(client, (DATA / "mixed.csv").read_bytes())
    assert answer.status_code == 303, answer.text  # type: ignore[attr-defined]
    url = answer.headers["location"].split("?")[0]  # type: ignore[attr-defined]
    return url, uuid.UUID(url.rsplit("/", 1)[1])


def test_charts_and_the_waiting_list_and_the_events_table_come_live(
    signed_in: TestClient, app_runtime: Runtime
) -> None:
    url, campaign_id = _campaign(signed_in)
    assert "No attempt has been sent yet." in signed_in.get(url).text
    now = app_runtime.clock.now()
    with app_runtime.sessions() as s, s.begin():
        first, second, third, fourth = s.scalars(
            select(ScheduledEvent).where(ScheduledEvent.campaign_id == campaign_id).order_by(ScheduledEvent.source_row)
        ).all()
        for event, outcome, minutes in ((first, "answered", 0), (second, "busy", 1), (third, None, 30)):
            s.add(
                CallAttempt(
                    event_id=event.id,
                    attempt_number=1,
                    state=AttemptState.FINISHED if outcome else AttemptState.SENDING,
                    provider="texml",
                    claimed_at=now,
                    attempted_at=now + timedelta(minutes=minutes),
                    outcome=outcome,
                )
            )
        first.status = EventStatus.COMPLETED
        s.execute(
            update(ScheduledEvent)
            .where(ScheduledEvent.id == fourth.id)
            .values(
                deferred_reason="time zone unknown", deferred_until=HOLD_UNTIL, scheduled_at_fixed_datetime=HOLD_UNTIL
            )
        )
    page = signed_in.get(url).text
    assert page.count('data-outcome="answered"') >= 2  # a bar and the outcome tile
    assert '<rect class="o-busy" data-outcome="busy"' in page and 'class="o-in-flight"' in page
    assert "Attempts sent per 5 minutes, by outcome" in page

    live = signed_in.get(f"{url}/live.json", params={"events": "1", "status": "completed"}).json()
    assert '<rect class="o-answered" data-outcome="answered"' in live["html"]["charts"]
    assert live["html"]["charts"].count("<rect ") == 3
    waiting = live["html"]["waiting"]
    assert '<tr class="held"><td>time zone unknown' in waiting and "until fixed" in waiting
    assert live["events_total"] == 1 and live["html"]["events"].count("/events/") == 1
    assert (
        "No event matches"
        in signed_in.get(f"{url}/live.json", params={"events": "1", "status": "failed"}).json()["html"]["events"]
    )
    assert "events" not in signed_in.get(f"{url}/live.json").json()["html"]  # only when asked for

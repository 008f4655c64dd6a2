"""The COPY loader on real PostgreSQL: deduplication against the campaign, exactly the valid distinct rows."""

from __future__ import annotations

import io
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from campaigns import campaign as campaign_service
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.importing import load_call_list
from campaigns.models import Campaign, ScheduledEvent


def new_campaign(sessions: sessionmaker[Session], clock: FrozenClock, **overrides: object) -> uuid.UUID:
    body = {"name": "c", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none", **overrides}
    with unit_of_work(sessions) as s:
        return campaign_service.create_campaign(
            s, campaign_service.validate_settings(body, now=clock.now()), now=clock.now()
        ).id


def generated_csv(rows: int) -> bytes:
    lines = ["phone,first_name,city,plan"]
    lines += [f"+1212{2000000 + i:07d},Name{i},City{i % 50},plan-{i % 3}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def count_events(sessions: sessionmaker[Session], campaign_id: uuid.UUID) -> tuple[int, int]:
    with sessions() as s:
        total = s.scalar(
            select(func.count()).select_from(ScheduledEvent).where(ScheduledEvent.campaign_id == campaign_id)
        )
        distinct = s.scalar(
            select(func.count(func.distinct(ScheduledEvent.telnyx_end_user_target))).where(
                ScheduledEvent.campaign_id == campaign_id
            )
        )
    return int(total or 0), int(distinct or 0)


def test_reimporting_the_same_file_adds_nobody(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    campaign_id = new_campaign(sessions, clock)
    data = generated_csv(500)
    for expected_accepted, expected_duplicates in ((500, 0), (0, 500)):
        with unit_of_work(sessions) as s:
            campaign = s.get(Campaign, campaign_id)
            assert campaign is not None
            report = load_call_list(s, campaign, io.BytesIO(data), now=clock.now())
        assert (report.rows_accepted, report.rows_duplicate) == (expected_accepted, expected_duplicates)
    assert count_events(sessions, campaign_id) == (500, 500)


valid_phone = st.integers(min_value=2_000_000, max_value=9_999_999).map(lambda n: f"+1212{n:07d}")
bad_phone = st.sampled_from(["", "12", "not a number", "+1 555 0100", "+999123"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(valid_phone, bad_phone), min_size=1, max_size=40))
def test_accepted_rows_are_exactly_the_valid_distinct_rows(
    sessions: sessionmaker[Session], clock: FrozenClock, phones: list[str]
) -> None:
    campaign_id = new_campaign(sessions, clock)
    data = ("phone,name\n" + "".join(f'"{p}",x\n' for p in phones)).encode()
    with unit_of_work(sessions) as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None
        report = load_call_list(s, campaign, io.BytesIO(data), now=clock.now())
    valid = [p for p in phones if p.startswith("+1212")]
    assert report.rows_accepted == len(set(valid))
    assert report.rows_duplicate == len(valid) - len(set(valid))
    assert report.rows_rejected == len(phones) - len(valid)
    assert count_events(sessions, campaign_id) == (len(set(valid)), len(set(valid)))

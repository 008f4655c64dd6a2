"""``import_new_campaign``: one read of the file, then inline, dry-run or background; hooks; nothing left on errors."""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from campaigns import campaign as campaign_service
from campaigns import suppression
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.importing import (
    CsvFileError,
    CsvLayout,
    StagingHook,
    import_new_campaign,
    run_stored_import,
)
from campaigns.models import Campaign, ImportIssue, ScheduledEvent, UploadChunk
from tests.campaigns.importing.test_loader import count_events
from tests.campaigns.importing.test_reading import OneWay

CSV = b"phone,first_name\n+12125550101,Ana\n(212) 555-0102,Bo\n+12125550101,Ana again\nnope,Dee\n+12125550147,Eve\n"
LISTED = "+12125550147"


def one_way(data: bytes) -> io.BufferedReader:
    """A stream that can only be read forward, once: a second pass over the file would find it empty."""
    return io.BufferedReader(OneWay(data))


def settings(clock: FrozenClock, **overrides: object) -> campaign_service.CampaignSettings:
    body = {"name": "c", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none", **overrides}
    return campaign_service.validate_settings(body, now=clock.now())


def counts(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    """Campaigns, events and stored upload chunks in the database."""
    with sessions() as s:
        return (
            s.scalar(select(func.count()).select_from(Campaign)) or 0,
            s.scalar(select(func.count()).select_from(ScheduledEvent)) or 0,
            s.scalar(select(func.count()).select_from(UploadChunk)) or 0,
        )


@pytest.fixture
def listed(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    with unit_of_work(sessions) as s:
        suppression.add(s, LISTED, now=clock.now())


def test_inline_import_reads_the_file_once_and_applies_the_report(
    sessions: sessionmaker[Session], clock: FrozenClock, listed: None
) -> None:
    progress: list[int] = []
    with unit_of_work(sessions) as s:
        result = import_new_campaign(s, settings(clock), one_way(CSV), now=clock.now(), progress=progress.append)
        assert result.campaign is not None and result.report is not None and not result.in_background
        campaign_id = result.campaign.id
    report = result.report
    assert result.layout == CsvLayout("utf-8", ",", ["phone", "first_name"], "phone")
    assert (report.rows_total, report.rows_accepted, report.rows_rejected) == (5, 2, 1)
    assert (report.rows_duplicate, report.rows_suppressed) == (1, 1)  # the default hooks: do-not-contact
    assert progress == [5]
    assert count_events(sessions, campaign_id) == (2, 2)
    with sessions() as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None
        assert (campaign.import_status, campaign.rows_accepted, campaign.columns) == ("completed", 2, ["first_name"])
        kinds = s.scalars(select(ImportIssue.kind).where(ImportIssue.campaign_id == campaign_id)).all()
        assert sorted(kinds) == ["duplicate", "rejected", "suppressed"]


def test_a_dry_run_counts_everything_and_leaves_nothing(
    sessions: sessionmaker[Session], clock: FrozenClock, listed: None
) -> None:
    with unit_of_work(sessions) as s:  # even a session that commits keeps nothing of a dry run
        result = import_new_campaign(
            s, settings(clock), one_way(CSV), now=clock.now(), dry_run=True, in_background=True
        )
    assert result.campaign is None and result.report is not None and not result.in_background
    report = result.report
    assert (report.rows_total, report.rows_accepted, report.rows_duplicate, report.rows_suppressed) == (5, 2, 1, 1)
    assert [(i.row_number, i.kind) for i in report.issues] == [(4, "duplicate"), (5, "rejected"), (6, "suppressed")]
    assert counts(sessions) == (0, 0, 0)


def test_in_background_stores_the_file_for_the_worker(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    with unit_of_work(sessions) as s:
        result = import_new_campaign(s, settings(clock), io.BytesIO(CSV), now=clock.now(), in_background=True)
        assert result.campaign is not None and result.report is None and result.in_background
        campaign_id = result.campaign.id
    with sessions() as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None and campaign.import_status == "pending"
    assert counts(sessions) == (1, 0, 1)
    assert run_stored_import(sessions, campaign_id, now=clock.now) == "completed"
    assert count_events(sessions, campaign_id) == (3, 3)  # nobody is listed here
    assert counts(sessions) == (1, 3, 0)


@pytest.mark.parametrize("in_background", [False, True])
def test_a_bad_header_is_found_before_anything_is_created(
    sessions: sessionmaker[Session], clock: FrozenClock, in_background: bool
) -> None:
    with unit_of_work(sessions) as s:
        with pytest.raises(CsvFileError, match="no phone column"):
            import_new_campaign(
                s, settings(clock), io.BytesIO(b"name\nAna\n"), now=clock.now(), in_background=in_background
            )
        assert not s.new
    assert counts(sessions) == (0, 0, 0)


def test_a_file_error_after_the_header_leaves_nothing_in_the_session(
    sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    data = CSV + b'+12125550103,"never closed\n'
    # The caller's unit of work commits after the error: the savepoint took the campaign back out.
    with unit_of_work(sessions) as s, pytest.raises(CsvFileError, match="never closed"):
        import_new_campaign(s, settings(clock), io.BytesIO(data), now=clock.now())
    assert counts(sessions) == (0, 0, 0)


def test_hooks_are_explicit(sessions: sessionmaker[Session], clock: FrozenClock, listed: None) -> None:
    seen: list[uuid.UUID] = []

    def record(session: Session, campaign_id: uuid.UUID) -> None:
        seen.append(campaign_id)

    hooks: Sequence[StagingHook] = (record,)  # no do-not-contact check: the listed number is imported
    with unit_of_work(sessions) as s:
        result = import_new_campaign(s, settings(clock), io.BytesIO(CSV), now=clock.now(), hooks=hooks)
    assert result.campaign is not None and result.report is not None
    assert seen == [result.campaign.id]
    assert (result.report.rows_accepted, result.report.rows_suppressed) == (3, 0)


def test_hooks_built_from_the_layout_run_before_the_campaign_exists(
    sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    layouts: list[CsvLayout] = []

    def from_layout(layout: CsvLayout) -> Sequence[StagingHook]:
        layouts.append(layout)
        if "appointment_at" not in layout.columns:
            raise CsvFileError("column 'appointment_at' named in due is not in the file")
        return (suppression.mark_suppressed_rows,)

    with unit_of_work(sessions) as s:
        with pytest.raises(CsvFileError, match="appointment_at"):
            import_new_campaign(s, settings(clock), io.BytesIO(CSV), now=clock.now(), hooks=from_layout)
        assert not s.new
        data = b"phone,appointment_at\n+12125550101,2026-05-08T09:00\n"
        result = import_new_campaign(s, settings(clock), io.BytesIO(data), now=clock.now(), hooks=from_layout)
    assert [layout.columns for layout in layouts] == [["phone", "first_name"], ["phone", "appointment_at"]]
    assert result.report is not None and result.report.rows_accepted == 1
    assert counts(sessions) == (1, 1, 0)

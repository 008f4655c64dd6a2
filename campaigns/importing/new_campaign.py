"""The one use case "create a campaign from a CSV call list", for the HTTP upload, the CLI and recurring runs.

The file is opened (its header read and checked) once, before anything is created, and its rows are then
streamed into the campaign from that same reader. Three ways to finish:

- inline (the default): the rows become events in the caller's transaction, and the report is applied;
- ``dry_run``: everything is staged and counted as for a real import, then rolled back to a savepoint: the
  caller's session holds nothing new, whatever it does next;
- ``in_background``: the campaign is created with its import ``pending`` and the file is stored in the
  database; the caller enqueues :func:`~campaigns.importing.uploads.run_stored_import` once its transaction
  has committed (never before: the worker must find the campaign and its file).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from sqlalchemy.orm import Session

from campaigns import campaign as campaign_service
from campaigns.importing.call_list import CsvLayout
from campaigns.importing.guard import HashingReader, find_duplicate_upload, refuse_duplicate
from campaigns.importing.loader import (
    DEFAULT_STAGING_HOOKS,
    ImportReport,
    Progress,
    StagingHook,
    apply_report,
    load_rows,
)
from campaigns.importing.reading import open_call_list
from campaigns.importing.uploads import store_upload
from campaigns.models import Campaign
from campaigns.states import Channel, ImportStatus

HooksForLayout = Callable[[CsvLayout], Sequence[StagingHook]]
"""Builds the staging hooks from the detected layout (a recurring definition resolves its columns in it; a
column it names that the file lacks raises ``CsvFileError``, before the campaign is created)."""


@dataclass(frozen=True)
class NewCampaignImport:
    """What :func:`import_new_campaign` did."""

    layout: CsvLayout
    campaign: Campaign | None
    """The new campaign; ``None`` after a dry run (nothing was created)."""
    report: ImportReport | None
    """The import's counts and first issues; ``None`` when the import was left to the background."""

    @property
    def in_background(self) -> bool:
        """The file is stored and waits for ``run_stored_import``: enqueue it after the commit."""
        return self.campaign is not None and self.report is None


def import_new_campaign(
    session: Session,
    settings: campaign_service.CampaignSettings,
    data: IO[bytes],
    *,
    now: datetime,
    dry_run: bool = False,
    in_background: bool = False,
    progress: Progress | None = None,
    hooks: Sequence[StagingHook] | HooksForLayout = DEFAULT_STAGING_HOOKS,
    guard_uploads: bool = True,
) -> NewCampaignImport:
    """Create a campaign with ``settings`` and import the call list ``data`` into it, in the caller's transaction.

    Raises ``CsvFileError`` for a file that cannot be imported, and then nothing of it is left in the session:
    a header problem is found before anything is created, a later one rolls back to a savepoint. A setting
    that does not fit the file (an SMS template naming a placeholder no column provides, a mapping naming a
    header the file lacks) raises its subclass ``SettingsMismatch``, dry run or not.

    ``dry_run`` wins over ``in_background``. ``progress`` and ``hooks`` apply to an inline or dry-run import (a
    background import runs ``run_stored_import``'s own); ``hooks`` is a sequence, or a function of the layout
    giving one (see :data:`HooksForLayout`).

    The re-upload guard (:mod:`.guard`): a file a live campaign already has is reported in a dry run's
    ``duplicate_upload`` and otherwise refused with :class:`~campaigns.importing.guard.DuplicateUpload`, unless
    the settings allow it (or ``guard_uploads`` is false: recurring runs, which have their own guards). A
    background import checks the content hash here and the reminders when it runs.
    """
    hashing = HashingReader(data)
    layout, rows = open_call_list(
        io.BufferedReader(hashing, buffer_size=64 * 1024),
        default_region=settings.default_region or "US",
        settings=settings.call_list,
        template=settings.text if settings.channel == Channel.SMS_CHAT else None,
        default_zone=settings.timezone,
        built_ins={"telnyx_agent_target": settings.agent_target, "telnyx_conversation_channel": settings.channel},
    )
    if in_background and not dry_run:
        campaign = campaign_service.create_campaign(session, settings, now=now)
        campaign.import_status = ImportStatus.PENDING
        data.seek(0)  # the header was read; the worker reads the whole file again from the database
        whole = HashingReader(data)
        store_upload(session, campaign.id, io.BufferedReader(whole))
        campaign.upload_sha256 = whole.hexdigest()
        found = find_duplicate_upload(session, campaign, campaign.upload_sha256, None)
        if found is not None and guard_uploads and not settings.call_list.allow_duplicate_upload:
            raise refuse_duplicate(found)
        return NewCampaignImport(layout, campaign, None)
    # A savepoint: a row-level file error (or a dry run) takes the campaign back out of the caller's session.
    with session.begin_nested() as savepoint:
        staging = hooks if isinstance(hooks, Sequence) else hooks(layout)
        campaign = campaign_service.create_campaign(session, settings, now=now)
        report = load_rows(session, campaign, layout, rows, now=now, dry_run=dry_run, progress=progress, hooks=staging)
        campaign.upload_sha256 = hashing.hexdigest()  # the rows were read to the end of the file
        content, keys = campaign.upload_sha256, report.keys_sha256
        if guard_uploads:
            report.duplicate_upload = find_duplicate_upload(session, campaign, content, keys)
        if report.duplicate_upload is not None and not dry_run and not settings.call_list.allow_duplicate_upload:
            raise refuse_duplicate(report.duplicate_upload)
        if dry_run:
            savepoint.rollback()
            return NewCampaignImport(layout, None, report)
        apply_report(campaign, report, now=now)
    return NewCampaignImport(layout, campaign, report)

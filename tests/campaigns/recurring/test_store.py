"""Definitions in the database: the directory sync (ConfigMap updates, take-overs), origins, last runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from campaigns import recurring
from campaigns.db import unit_of_work
from campaigns.errors import Conflict
from tests.campaigns.recurring.support import Z, body, define, runs

# --- the definition directory ------------------------------------------------------------------------------------


def toml(name: str, cron: str = "0 7 * * *", extra: str = "") -> str:
    return f"""name = "{name}"
cron = "{cron}"
timezone = "America/New_York"
source = "lists/*.csv"
due = "appointment_at - 24h"
{extra}
[campaign]
assistant_id = "a1"
telnyx_agent_target = "+15553456789"
"""


def test_directory_sync_creates_updates_keeps_good_versions_and_disables(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    now = Z("2026-11-23T11:00Z")
    (tmp_path / "a.toml").write_text(toml("alpha"))
    (tmp_path / "b.toml").write_text(toml("beta", cron="30 8 * * 1-5"))
    (tmp_path / "notes.txt").write_text("ignored")
    report = recurring.sync_directory(sessions, tmp_path, now=now)
    assert (sorted(report.created), report.updated, report.errors) == (["alpha", "beta"], [], [])
    with sessions() as s:
        beta = recurring.get_definition(s, "beta")
        assert beta.next_run_at == Z("2026-11-23T13:30Z") and beta.source == str(tmp_path / "lists" / "*.csv")
    assert recurring.sync_directory(sessions, tmp_path, now=now) == recurring.SyncReport()  # unchanged: no-op

    (tmp_path / "a.toml").write_text(toml("alpha", cron="0 6 * * *"))
    (tmp_path / "b.toml").write_text(toml("beta", cron="99 8 * * *"))
    (tmp_path / "c.toml").write_text(toml("alpha"))
    report = recurring.sync_directory(sessions, tmp_path, now=now)
    assert report.updated == ["alpha"]
    assert any("b.toml: cron: '99 8 * * *' is not a valid cron expression" in e for e in report.errors)
    assert any("c.toml: name: 'alpha' is already defined by" in e for e in report.errors)
    with sessions() as s:
        assert recurring.get_definition(s, "alpha").next_run_at == Z("2026-11-24T11:00Z")  # 06:00 EST, rescheduled
        assert recurring.get_definition(s, "beta").cron == "30 8 * * 1-5"  # the last good version keeps running

    (tmp_path / "b.toml").unlink()
    (tmp_path / "c.toml").unlink()
    report = recurring.sync_directory(sessions, tmp_path, now=now)
    assert report.disabled == ["beta"]
    with sessions() as s:
        beta = recurring.get_definition(s, "beta")
        assert (beta.enabled, beta.next_run_at) == (False, None)
    (tmp_path / "b.toml").write_text(toml("beta", cron="30 8 * * 1-5"))
    assert recurring.sync_directory(sessions, tmp_path, now=now).updated == ["beta"]
    with sessions() as s:
        assert recurring.get_definition(s, "beta").next_run_at == Z("2026-11-23T13:30Z")


def mount_configmap(directory: Path, version: int, files: dict[str, str]) -> None:
    """Lay ``files`` out as the kubelet's atomic writer does for a ConfigMap volume, version ``version``.

    Each file is a symlink ``name -> ..data/name``; ``..data`` points to a timestamped directory holding this
    version, swapped by a rename, and the previous version's directory is then deleted.
    """
    versioned = directory / f"..2026_11_23_11_00_00.{version:09d}"
    versioned.mkdir()
    for name, text_ in files.items():
        (versioned / name).write_text(text_)
    (directory / "..data_tmp").symlink_to(versioned.name)
    os.replace(directory / "..data_tmp", directory / "..data")
    for link in directory.glob("*.toml"):
        if link.name not in files:
            link.unlink()
    for name in files:
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")
    for old in directory.glob("..2026_*"):
        if old != versioned:
            shutil.rmtree(old)


def test_a_configmap_update_updates_its_definitions_instead_of_disabling_them(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """A Kubernetes ConfigMap mounted at CAMPAIGNS_RECURRING_DIR (deploy/k8s): every update moves the files'
    symlink targets. A definition is known by its path in the directory, so an update is an update."""
    now = Z("2026-11-23T11:00Z")
    mount_configmap(tmp_path, 1, {"a.toml": toml("alpha")})
    report = recurring.sync_directory(sessions, tmp_path, now=now)
    assert (report.created, report.errors) == (["alpha"], [])
    with sessions() as s:
        alpha = recurring.get_definition(s, "alpha")
        assert alpha.origin_path == str(tmp_path / "a.toml")
        assert alpha.source == str(tmp_path / "lists" / "*.csv")  # not inside the versioned directory

    mount_configmap(tmp_path, 2, {"a.toml": toml("alpha", cron="0 6 * * *")})
    report = recurring.sync_directory(sessions, tmp_path, now=now)
    assert (report.updated, report.disabled, report.errors) == (["alpha"], [], [])
    with sessions() as s:
        alpha = recurring.get_definition(s, "alpha")
        assert (alpha.enabled, alpha.cron, alpha.next_run_at) == (True, "0 6 * * *", Z("2026-11-24T11:00Z"))

    mount_configmap(tmp_path, 3, {"a.toml": toml("alpha", cron="0 6 * * *"), "b.toml": toml("beta")})
    assert recurring.sync_directory(sessions, tmp_path, now=now) == recurring.SyncReport(created=["beta"])
    assert recurring.sync_directory(sessions, tmp_path, now=now) == recurring.SyncReport()

    mount_configmap(tmp_path, 4, {"b.toml": toml("beta")})
    assert recurring.sync_directory(sessions, tmp_path, now=now).disabled == ["alpha"]


@pytest.mark.parametrize("old_version", ["still mounted", "replaced since"])
def test_a_definition_stored_under_its_resolved_path_is_taken_over_by_its_file(
    sessions: sessionmaker[Session], tmp_path: Path, old_version: str
) -> None:
    """Earlier versions stored the file's symlink target; their rows are adopted, not reported as conflicts."""
    now = Z("2026-11-23T11:00Z")
    mount_configmap(tmp_path, 1, {"a.toml": toml("alpha")})
    recurring.sync_directory(sessions, tmp_path, now=now)
    with unit_of_work(sessions) as s:
        recurring.get_definition(s, "alpha").origin_path = os.path.realpath(tmp_path / "a.toml")
    if old_version == "replaced since":
        mount_configmap(tmp_path, 2, {"a.toml": toml("alpha")})
    report = recurring.sync_directory(sessions, tmp_path, now=now)
    assert (report.updated, report.disabled, report.errors) == (["alpha"], [], [])
    with sessions() as s:
        alpha = recurring.get_definition(s, "alpha")
        assert (alpha.enabled, alpha.origin_path) == (True, str(tmp_path / "a.toml"))
        assert alpha.next_run_at == Z("2026-11-23T12:00Z")  # kept: 07:00 in New York, the schedule did not change
    assert recurring.sync_directory(sessions, tmp_path, now=now) == recurring.SyncReport()


def test_a_definition_still_defined_by_another_file_is_not_taken_over(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    now = Z("2026-11-23T11:00Z")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "a.toml").write_text(toml("alpha"))
    (tmp_path / "two" / "a.toml").write_text(toml("alpha", cron="0 6 * * *"))
    assert recurring.sync_directory(sessions, tmp_path / "one", now=now).created == ["alpha"]
    report = recurring.sync_directory(sessions, tmp_path / "two", now=now)
    assert report.errors == [f"{tmp_path / 'two' / 'a.toml'}: recurring definition 'alpha' is already defined by "
                             f"the file {tmp_path / 'one' / 'a.toml'}"]  # fmt: skip
    (tmp_path / "one" / "a.toml").unlink()  # its file is gone: the other one may define it now
    assert recurring.sync_directory(sessions, tmp_path / "two", now=now).updated == ["alpha"]


def test_a_file_definition_cannot_be_replaced_through_the_api(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    now = Z("2026-11-23T11:00Z")
    (tmp_path / "a.toml").write_text(toml("alpha"))
    recurring.sync_directory(sessions, tmp_path, now=now)
    api = recurring.validate_definition(body(name="alpha"), now=now, origin="api", base_dir=tmp_path)
    with unit_of_work(sessions) as s, pytest.raises(Conflict, match="defined by the file"):
        recurring.upsert_definition(s, api, now=now)


# --- last runs -----------------------------------------------------------------------------------------------------


def test_last_runs_is_the_latest_run_of_each_definition_in_one_query(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    now = Z("2026-11-23T11:00Z")
    often, once, never = (define(sessions, tmp_path, now, name=name) for name in ("often", "once", "never"))
    # Nothing matches the source: each run is a ``no_new_file`` run, recorded all the same.
    for at in ("2026-11-23T12:00Z", "2026-11-23T13:00Z", "2026-11-23T13:00Z"):  # the last two start together
        recurring.run_now(sessions, "often", now=Z(at))
    recurring.run_now(sessions, "once", now=Z("2026-11-23T12:30Z"))
    history = runs(sessions, often)
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    with sessions() as s:
        engine = s.get_bind()
        event.listen(engine, "before_cursor_execute", seen)
        try:
            latest = recurring.last_runs(s, [often, once, never])
            assert recurring.last_runs(s, []) == {}  # no ids: no query
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert len(statements) == 1
        assert set(latest) == {often, once}
        # Of the two runs started at the same instant, the later one (ids are time-ordered) is the last.
        assert latest[often].id == max(r.id for r in history if r.started_at == Z("2026-11-23T13:00Z"))
        assert latest[once].started_at == Z("2026-11-23T12:30Z")

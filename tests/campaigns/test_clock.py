"""The warped clock's origin file: held at ``TIME_START`` until the file appears, then warped from its origin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from campaigns.clock import WarpedClock, app_to_real, clock_from_settings
from campaigns.settings import Settings

START = datetime(2026, 12, 3, 12, 55, tzinfo=UTC)


def test_held_until_the_origin_file_appears_then_warped_from_it(tmp_path: Path) -> None:
    origin_file = tmp_path / "origin"
    clock = clock_from_settings(Settings(time_warp=360, time_start=START, time_warp_origin_file=origin_file))
    assert clock.now() == START
    assert clock.now() == START  # held, however much real time passes
    assert isinstance(clock, WarpedClock)
    assert abs(app_to_real(clock, START) - datetime.now(UTC)) < timedelta(seconds=5)
    origin = datetime.now(UTC) - timedelta(seconds=10)
    origin_file.write_text(origin.isoformat())
    ten_real_seconds_later = START + timedelta(seconds=3600)
    assert ten_real_seconds_later <= clock.now() < ten_real_seconds_later + timedelta(seconds=360 * 5)
    assert app_to_real(clock, START) == origin


def test_the_origin_file_wins_over_the_origin(tmp_path: Path) -> None:
    clock = clock_from_settings(
        Settings(
            time_start=START, time_warp_origin=datetime(2020, 1, 1, tzinfo=UTC), time_warp_origin_file=tmp_path / "o"
        )
    )
    assert clock.now() == START


def test_an_unreadable_origin_is_named(tmp_path: Path) -> None:
    origin_file = tmp_path / "origin"
    origin_file.write_text("soon")
    clock = clock_from_settings(Settings(time_start=START, time_warp_origin_file=origin_file))
    with pytest.raises(ValueError, match=r"CAMPAIGNS_TIME_WARP_ORIGIN_FILE .*origin: not an ISO instant: 'soon'"):
        clock.now()

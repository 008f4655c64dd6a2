"""The simulator's configuration: the outcome mix, and what ``create_app`` refuses."""

from __future__ import annotations

import pytest

from tests.worker.simulator.support import fast_config
from worker.simulator import create_app, parse_mix

# -- parse_mix ------------------------------------------------------------------------------------------


def test_parse_mix_valid() -> None:
    assert parse_mix("completed=0.6, busy=0.2,no-answer=0.2") == {
        "completed": 0.6,
        "busy": 0.2,
        "no-answer": 0.2,
    }


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("", "empty"),
        ("completed", "'completed'"),
        ("completed=0.5,,busy=0.5", "item 2"),
        ("completed=lots", "'lots'"),
        ("completed=0.5,ghosted=0.5", "'ghosted'"),
        ("completed=-1", "'completed'"),
        ("busy=0.5,busy=0.5", "'busy'"),
        ("busy=0,completed=0", "zero"),
        ("=1", "'=1'"),
    ],
)
def test_parse_mix_errors_name_the_bad_part(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        parse_mix(text)


def test_create_app_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="ghosted"):
        create_app(fast_config(mix={"ghosted": 1.0}))
    with pytest.raises(ValueError, match="private_key_b64"):
        create_app(fast_config(private_key_b64="not-a-key"))

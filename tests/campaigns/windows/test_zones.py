"""Where a recipient may be: zone resolution, the zones of each US state and the exchange → state table."""

from __future__ import annotations

import functools
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import phonenumbers

from campaigns import windows


def _geocoder_state(phone: str) -> str | None:
    """What ``number_state`` answered before its table: the full geocoder, read as a state."""
    from phonenumbers import geocoder

    number = phonenumbers.parse(phone)
    if phonenumbers.region_code_for_number(number) != "US":
        return None
    return windows.state_of_place(geocoder.description_for_number(number, "en"))


def test_the_exchange_state_table_answers_as_the_geocoder_does_for_every_us_prefix() -> None:
    from phonenumbers.geodata import GEOCODE_DATA

    prefixes = sorted(p for p, names in GEOCODE_DATA.items() if p.startswith("1") and "en" in names)
    assert len(prefixes) > 10_000
    checked = states = 0
    for prefix in prefixes:
        for tail in ("2345678901", "5550123456"):
            phone = "+" + (prefix + tail)[:11]
            expected = _geocoder_state(phone)
            assert windows.number_state.__wrapped__(phone) == expected, phone
            checked += 1
            states += expected is not None
    assert checked == 2 * len(prefixes) and states > checked // 2  # most of them are places in a state
    for phone in ("+18004567890", "+15551234567", "+17872345678", "+14165550123", "+442071234567", "+12015"):
        assert windows.number_state.__wrapped__(phone) == _geocoder_state(phone)


@functools.cache
def _clock(zone: str) -> tuple[timedelta | None, ...]:
    """A zone's UTC offset at noon of every week of 2025 and 2026: two zones with the same clock are the same
    zone for calling hours."""
    start = datetime(2025, 1, 1, 12, tzinfo=UTC)
    return tuple((start + timedelta(weeks=w)).astimezone(ZoneInfo(zone)).utcoffset() for w in range(105))


def test_a_state_column_covers_every_clock_of_the_state_s_exchanges() -> None:
    """A recipient known by state gets every zone of the state, so a number's own exchange can never be in a
    zone the state reading leaves out. AZ lacked Mountain time with daylight saving (the Navajo Nation: +1 928
    871 was called at 21:30 local time with ``state=AZ``) and NV the Mountain time of West Wendover."""
    from phonenumbers.geodata import GEOCODE_DATA

    clocks = {state: {_clock(z) for z in zones} for state, zones in windows.STATE_ZONES.items()}
    missing: dict[str, set[str]] = {}
    for prefix, names in GEOCODE_DATA.items():
        state = windows.state_of_place(names["en"]) if prefix.startswith("1") and "en" in names else None
        if state is None:
            continue
        for tail in ("2345678901", "5550123456", "6641234567", "8711234567"):
            for zone in windows.number_zones("+" + (prefix + tail)[:11]):
                if _clock(zone) not in clocks[state]:
                    missing.setdefault(state, set()).add(zone)
    assert missing == {}
    assert windows.resolve_zones(phone="+19288711234", state="AZ")[0] == ["America/Phoenix", "America/Denver"]


def test_compacting_keeps_a_prefix_only_where_its_state_differs_from_its_parents() -> None:
    states = {"1201": "NJ", "1201200": "NJ", "1203": "CT", "12034": "NY", "120345": "CT", "1999": None, "19991": "TX"}
    assert windows.compact_prefix_states(states) == {"1201": "NJ", "1203": "CT", "12034": "NY", "120345": "CT",
                                                      "19991": "TX"}  # fmt: skip


def test_the_geocoder_data_is_not_kept_in_memory() -> None:
    # ~100 MiB per process for every country and language: read once for the US prefixes, then unloaded.
    script = (
        "import sys; from campaigns import windows; from campaigns.windows import us_states; "
        "print(windows.number_state('+18505550123'), 'phonenumbers.geodata' in sys.modules, "
        "len(us_states._exchange_states()))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["FL", "False"] and 1_000 < int(out[2]) < 10_000


def test_zone_resolution_order() -> None:
    assert windows.candidate_zones(phone="+12125550101", timezone="America/Denver", state="CA") == ["America/Denver"]
    assert windows.candidate_zones(phone="+12125550101", state="tx") == ["America/Chicago", "America/Denver"]
    assert windows.candidate_zones(phone="+12125550101") == ["America/New_York"]
    assert windows.candidate_zones(phone="+15551234567", default_zone="America/Phoenix") == ["America/Phoenix"]
    assert windows.candidate_zones(phone="+15551234567") == []

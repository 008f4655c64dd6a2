"""A stray quote must not glue rows (issue 19 item 1): a quoted field that swallows what look like whole rows
refuses the file, naming the physical lines; real multi-line values (an address) keep working."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from campaigns import campaign as campaign_service
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.importing import CsvFileError, ParsedRow, import_new_campaign, open_call_list
from campaigns.models import Campaign, ScheduledEvent


def glued_file() -> bytes:
    """A quote opened in row 2 and closed in row 41; row 42 is fine."""
    rows = ["phone,name,date_of_birth", '+12125550101,"Ana,1990-01-01']
    rows += [f"+121255501{i:02d},Person {i},1980-01-{i % 28 + 1:02d}" for i in range(3, 41)]
    rows += ['+12125550141,Zed",1970-01-01', "+12125550142,Yan,1970-01-01"]
    return "\r\n".join(rows).encode()


def read(data: bytes) -> list[object]:
    _layout, rows = open_call_list(io.BytesIO(data))
    return list(rows)


def test_a_quote_that_glues_rows_refuses_the_file_naming_its_lines() -> None:
    with pytest.raises(CsvFileError) as caught:
        read(glued_file())
    message = str(caught.value)
    assert "row 2" in message and "line 2 to line 41" in message and "'name'" in message
    assert "Nothing was imported" in message


def test_a_quote_that_glues_only_the_next_row_is_caught_too() -> None:
    """Row 2's quote closes in row 3: the merged record has the header's width, so no field-count error would
    catch it, and Bob's number would go out as Ana's name."""
    with pytest.raises(CsvFileError, match="line 2 to line 3"):
        read(b'phone,name,dob\r\n+12125550101,"Ana,1990\r\n+12125550103,Bob",1985\r\n')


@pytest.mark.parametrize(
    "data",
    [
        b'phone,address,name\r\n+12125550101,"12 Main St\r\nApt 4, Floor 2",Ana\r\n'
        b'+12125550102,"1 Elm\nSuite 5",Ben\r\n',
        b'address,phone,name\r\n"12 Main St\r\nApt 4",+12125550101,Ana\r\n',
        b'phone,note,name\r\n+12125550101,"ask for Bob, on\r\n+1 212 555 0199",Ana\r\n',
    ],
)
def test_real_multi_line_values_still_import(data: bytes) -> None:
    rows = read(data)
    assert rows and all(isinstance(r, ParsedRow) for r in rows)
    assert any("\n" in v for r in rows if isinstance(r, ParsedRow) for v in r.variables.values())


def test_nothing_of_a_glued_file_is_created(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    body = {"name": "glued", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none"}
    settings = campaign_service.validate_settings(body, now=clock.now())
    with pytest.raises(CsvFileError), unit_of_work(sessions) as s:
        import_new_campaign(s, settings, io.BytesIO(glued_file()), now=clock.now())
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Campaign).where(Campaign.name == "glued")) == 0
        assert s.scalar(select(func.count()).where(ScheduledEvent.telnyx_end_user_target == "+12125550142")) == 0

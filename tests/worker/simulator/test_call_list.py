"""TeXML's call list (``GET /texml/Accounts/{account_sid}/Calls``): what the engine asks before failing an
unknown TeXML attempt closed. Eventually consistent, as Telnyx says: a call shows ``list_delay`` seconds after
it was placed."""

from __future__ import annotations

import asyncio
import time
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from tests.worker.simulator.support import TEXML, fast_config, simulator, texml_body

pytestmark = pytest.mark.anyio

CALLS = "/v2/texml/Accounts/AC-1/Calls"


async def listed(client: httpx.AsyncClient, query: dict[str, str], status: str | None = None) -> list[Any]:
    """The calls the list shows for ``query`` once it shows any (with ``status``), polled with a deadline."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        calls: list[Any] = (await client.get(CALLS, params=query)).json()["calls"]
        if calls and (status is None or calls[0]["status"] == status):
            return calls
        await asyncio.sleep(0.02)
    raise AssertionError(f"no call listed for {query} before the deadline")


async def test_a_placed_call_shows_in_the_list_after_the_consistency_delay() -> None:
    async with simulator(fast_config(list_delay=0.3, callbacks=False)) as client:
        placed = (await client.post(TEXML, json=texml_body("+15550001111", None))).json()
        await client.post(TEXML, json=texml_body("+15550002222", None))  # another target: filtered out
        query = {"From": "+15550000000", "To": "+15550001111", "StartTime_gt": str(date.today() - timedelta(days=1))}
        first = (await client.get(CALLS, params=query)).json()
        assert first["calls"] == []  # not consistent yet: no proof that no call was created
        (call,) = await listed(client, query)
        assert (call["sid"], call["from"], call["to"], call["account_sid"]) == (
            placed["call_sid"],
            "+15550000000",
            "+15550001111",
            "AC-1",
        )
        assert call["date_created"].endswith("Z")
        later = {**query, "StartTime_gt": str(date.today())}
        assert (await client.get(CALLS, params=later)).json()["calls"] == []


async def test_a_finished_call_is_listed_with_its_status() -> None:
    async with simulator() as client:
        await client.post(TEXML, json=texml_body("+15550003333", None))
        (call,) = await listed(client, {"To": "+15550003333"}, status="completed")
        assert call["duration"] == "42"


async def test_a_start_time_that_is_not_a_date_is_a_422_naming_it() -> None:
    async with simulator() as client:
        response = await client.get(CALLS, params={"StartTime_gt": "yesterday"})
        assert response.status_code == 422
        assert "StartTime_gt" in response.text

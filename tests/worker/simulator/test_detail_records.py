"""The message detail records search (``GET /v2/detail_records?filter[record_type]=messaging``): what the engine
asks before failing an unknown SMS closed. An accepted message shows ``list_delay`` seconds after it was sent."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.worker.simulator.support import fast_config, simulator

pytestmark = pytest.mark.anyio

SEARCH = "/v2/detail_records"
AGENT = "+15550000000"


def messaging(**filters: str) -> dict[str, str]:
    return {"filter[record_type]": "messaging", **{f"filter[{k}]": v for k, v in filters.items()}}


async def send(client: httpx.AsyncClient, to: str, *, from_: str = AGENT, key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return await client.post("/v2/messages", json={"from": from_, "to": to, "text": "hi"}, headers=headers)


async def listed(client: httpx.AsyncClient, query: dict[str, str]) -> list[Any]:
    """The records the search shows for ``query`` once it shows any, polled with a deadline."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        records: list[Any] = (await client.get(SEARCH, params=query)).json()["data"]
        if records:
            return records
        await asyncio.sleep(0.02)
    raise AssertionError(f"no record listed for {query} before the deadline")


async def test_an_accepted_message_shows_after_the_consistency_delay_filtered_by_cli_and_cld() -> None:
    async with simulator(fast_config(list_delay=0.3, callbacks=False)) as client:
        sent = (await send(client, "+15550001111", key="attempt-1")).json()["data"]
        assert (await send(client, "+15550001111", key="attempt-1")).status_code == 200  # a repeat: sends nothing
        await send(client, "+15550002222")  # another recipient
        await send(client, "+15550001111", from_="+15559999999")  # another sender
        await client.post("/_simulator/block", json={"phone_number": "+15550003333"})
        assert (await send(client, "+15550003333")).status_code == 400  # refused: no message, no record
        query = messaging(cli=AGENT, cld="+15550001111", direction="outbound")
        first = (await client.get(SEARCH, params=query)).json()
        assert first["data"] == []  # not consistent yet: no proof that no message was sent
        (record,) = await listed(client, query)
        assert (record["record_type"], record["uuid"], record["cli"], record["cld"], record["direction"]) == (
            "message_detail_record",
            sent["id"],
            AGENT,
            "+15550001111",
            "outbound",
        )
        assert record["created_at"].endswith("Z")
        assert record["status"] == "delivered"
        assert (await client.get(SEARCH, params=messaging(direction="inbound"))).json()["data"] == []
        assert len(await listed(client, messaging(cld="+15550001111"))) == 2
        assert len(await listed(client, messaging())) == 3
        counted = (await client.get("/_simulator/deliveries")).json()["queries"]["detail_records"]
        assert counted >= 6


async def test_created_at_gte_takes_a_date_or_an_instant() -> None:
    async with simulator() as client:
        await send(client, "+15550004444")
        query = messaging(cld="+15550004444")
        (record,) = await listed(client, query)
        created = datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
        today, tomorrow = created.date(), created.date() + timedelta(days=1)
        assert len(await listed(client, {**query, "filter[created_at][gte]": today.isoformat()})) == 1
        later = {**query, "filter[created_at][gte]": tomorrow.isoformat()}
        assert (await client.get(SEARCH, params=later)).json()["data"] == []
        instant = (created + timedelta(seconds=1)).astimezone(UTC).isoformat()
        assert (await client.get(SEARCH, params={**query, "filter[created_at][gte]": instant})).json()["data"] == []


async def test_pages_and_sort() -> None:
    async with simulator() as client:
        ids = [(await send(client, "+15550005555")).json()["data"]["id"] for _ in range(3)]
        query = {**messaging(cld="+15550005555"), "page[size]": "2"}
        await listed(client, query)
        page_1 = (await client.get(SEARCH, params=query)).json()
        assert [r["uuid"] for r in page_1["data"]] == ids[:2]
        assert page_1["meta"] == {"page_number": 1, "page_size": 2, "total_pages": 2, "total_results": 3}
        page_2 = (await client.get(SEARCH, params={**query, "page[number]": "2"})).json()
        assert [r["uuid"] for r in page_2["data"]] == ids[2:]
        newest = (await client.get(SEARCH, params={**query, "sort": "-created_at", "page[size]": "3"})).json()
        assert [r["uuid"] for r in newest["data"]] == ids[::-1]


async def test_the_search_needs_the_api_key() -> None:
    async with simulator() as client:
        response = await client.get(SEARCH, params=messaging(), headers={"Authorization": ""})
        assert response.status_code == 401
        assert response.json()["errors"][0]["code"] == "10009"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({}, "filter[record_type]"),
        ({"filter[record_type]": "call-control"}, "filter[record_type]"),
        ({**messaging(), "filter[created_at][gte]": "yesterday"}, "filter[created_at][gte]"),
        ({**messaging(), "page[size]": "51"}, "page[size]"),
    ],
)
async def test_a_bad_record_type_date_or_page_is_a_400_naming_it(query: dict[str, str], parameter: str) -> None:
    async with simulator() as client:
        response = await client.get(SEARCH, params=query)
        assert response.status_code == 400
        (error,) = response.json()["errors"]
        assert (error["code"], error["source"]["pointer"]) == ("10015", parameter)

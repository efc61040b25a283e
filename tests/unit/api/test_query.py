"""Range-query parameters and the answers that need no storage, on the in-memory store.

Order, paging across partitions, streaming and disconnects are tested against the real node in
tests/integration/test_query.py.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import HttpVersion10

from readings_service.api.app import create_app
from readings_service.core.memory_store import MemoryStore
from readings_service.core.model import Reading
from readings_service.errors import StoreFailure
from tests.conftest import opener_of, settings_for

# The tests' own row shape: (ts, device_id, temperature, pressure), ts as printed.
Row = tuple[str, uuid.UUID, float, float]


def parse_lines(body: bytes) -> list[Row]:
    rows = []
    for line in body.splitlines():
        item = orjson.loads(line)
        rows.append((item["ts"], uuid.UUID(item["device_id"]), item["temperature"], item["pressure"]))
    return rows


class TestEdges:
    async def test_empty_range(self, client: Any) -> None:
        """A range with no data is an empty 200 NDJSON body."""
        response = await client.get("/readings?start=2020-01-01T00:00:00Z&end=2020-01-03T00:00:00Z")
        assert 200 == response.status
        assert "application/x-ndjson" == response.content_type
        assert b"" == await response.read()

    async def test_offsets_and_plus_sign_unencoded(self, client: Any, store: MemoryStore) -> None:
        """Offsets in parameters work, even when the '+' arrived unencoded as a space."""
        device = uuid.uuid4()
        await store.write([Reading(device, 1_700_000_000_000, 1.0, 2.0)])  # 2023-11-14T22:13:20Z
        for start in ("2023-11-14T23:13:00%2B01:00", "2023-11-14T23:13:00+01:00"):
            response = await client.get(f"/readings?start={start}&end=1700000000001")
            assert [(device, 1.0)] == [(r[1], r[2]) for r in parse_lines(await response.read())]

    @pytest.mark.parametrize("path", ["/readings", "/devices/7d444840-9dc0-11d1-b245-5ffdce74fad2/readings"])
    async def test_http10_stream_is_refused(self, client: Any, store: MemoryStore, path: str) -> None:
        """HTTP/1.0 has no chunked framing, so a cut stream could not be told from a complete one: 505."""
        await store.write([Reading(uuid.UUID("7d444840-9dc0-11d1-b245-5ffdce74fad2"), 5, 1.0, 2.0)])
        async with (
            aiohttp.ClientSession(version=HttpVersion10) as http10,
            http10.get(client.make_url(f"{path}?start=0&end=10")) as response,
        ):
            assert (505, "application/problem+json") == (response.status, response.content_type)
            assert "HTTP/1.1" in (await response.json(content_type="application/problem+json"))["detail"]
        response = await client.get(f"{path}?start=0&end=10")
        assert 200 == response.status
        assert 1 == len(parse_lines(await response.read()))

    @pytest.mark.parametrize(
        ("query", "parameter"),
        [
            ("end=1", "start"),
            ("start=1", "end"),
            ("start=yesterday&end=1", "start"),
            ("start=2026-01-01T00:00:00&end=1", "start"),
            ("start=10&end=10", "end"),
            ("start=0&end=2764800001", "end"),
            ("start=0&end=10&limit=0", "limit"),
            ("start=0&end=10&limit=ten", "limit"),
            ("start=0&end=10&after=5", "after"),
            ("start=0&end=10&after=5,not-a-uuid", "after"),
            ("start=0&end=10&after=x,7d444840-9dc0-11d1-b245-5ffdce74fad2", "after"),
        ],
    )
    async def test_bad_parameters(self, client: Any, query: str, parameter: str) -> None:
        """Bad parameters are 400 problem+json naming the parameter, before any data."""
        response = await client.get(f"/readings?{query}")
        assert 400 == response.status
        assert "application/problem+json" == response.content_type
        assert parameter == (await response.json())["parameter"]

    async def test_bad_device_id(self, client: Any) -> None:
        """A device path segment that is not a UUID is a 400."""
        assert 400 == (await client.get("/devices/abc/readings?start=0&end=1")).status
        assert 400 == (await client.get("/devices/abc/latest")).status


class _RefusingStore(MemoryStore):
    """Storage that refuses every write, as Cassandra does an invalid request (the cause holds a host name)."""

    async def write(self, readings: Any) -> None:
        try:
            raise ValueError("InvalidRequest from 10.1.2.3:9042: table secret_ks.readings is gone")
        except ValueError as cause:
            raise StoreFailure("Cassandra: InvalidRequest: table secret_ks.readings is gone") from cause


class TestStoreFailure:
    async def test_500_names_the_kind_logs_the_rest(
        self, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A refusal by storage is a 500 problem naming the driver error's type, not its text; the log has it all."""
        client = await aiohttp_client(create_app(settings_for(), opener_of(_RefusingStore())))
        reading = {"device_id": str(uuid.uuid4()), "ts": 1_780_000_000_000, "temperature": 1.0, "pressure": 2.0}
        with caplog.at_level(logging.ERROR, logger="readings_service"):
            response = await client.post("/readings", json=reading)
        problem = await response.json(content_type="application/problem+json")
        assert (500, "Storage error") == (response.status, problem["title"])
        assert "ValueError" in problem["detail"]
        assert "secret_ks" not in problem["detail"]
        assert "10.1.2.3" not in problem["detail"]
        logged = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert 1 == len(logged)
        assert "secret_ks" in logged[0].getMessage()
        assert logged[0].exc_info is not None

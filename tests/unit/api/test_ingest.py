"""POST /readings validation and the HTTP errors around it, on the in-memory store.

What is stored, and that a rejected request stores nothing in Cassandra, is tested against the real node in
tests/integration/test_ingest.py.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import time
import uuid
from typing import Any

import orjson
import pytest

from readings_service.api.app import create_app
from readings_service.config import Settings
from readings_service.core.memory_store import MemoryStore
from tests.conftest import PeakAllocation, opener_of

DEVICE_A = uuid.UUID("7d444840-9dc0-11d1-b245-5ffdce74fad2")
DEVICE_B = uuid.UUID("0191b2f4-65a3-7c3e-8a1b-2f6c1f0e9d42")
NOW_MS = int(time.time() * 1000)


def reading(device: uuid.UUID = DEVICE_A, ts: object = "2026-11-20T10:00:00.000Z", **fields: Any) -> dict[str, Any]:
    return {"device_id": str(device), "ts": ts, "temperature": 21.5, "pressure": 1013.25} | fields


class TestLatest:
    async def test_unknown_device_is_404(self, client: Any) -> None:
        """A device with no readings is a 404 problem."""
        response = await client.get(f"/devices/{uuid.uuid4()}/latest")
        assert 404 == response.status
        assert "application/problem+json" == response.content_type


class TestRejected:
    async def test_every_problem_is_listed(self, client: Any) -> None:
        """Each bad item and field is reported with its index, field and reason."""
        body = [
            {"device_id": "nope", "ts": "2026-11-20T10:00:00", "temperature": 1, "pressure": True},
            {"device_id": str(DEVICE_A), "ts": NOW_MS + 3_600_000, "temperature": 1, "pressure": 1},
            {"device_id": str(DEVICE_A), "ts": NOW_MS, "temperature": 1, "pressure": 1, "humidity": 3},
            {"ts": NOW_MS, "temperature": 1},
            [],
        ]
        response = await client.post("/readings", json=body)
        assert 422 == response.status
        found = {(p["index"], p["field"]) for p in (await response.json())["problems"]}
        assert {
            (0, "device_id"), (0, "ts"), (0, "pressure"),
            (1, "ts"),
            (2, "humidity"),
            (3, "device_id"), (3, "pressure"),
            (4, None),
        } == found  # fmt: skip

    async def test_ndjson_problems_use_line_numbers(self, client: Any) -> None:
        """NDJSON problems name the 1-based line, including lines that are not JSON."""
        body = orjson.dumps(reading()) + b"\n{not json\n" + orjson.dumps(reading(temperature=None))
        response = await client.post("/readings", data=body, headers={"Content-Type": "application/x-ndjson"})
        assert 422 == response.status
        assert [(2, None), (3, "temperature")] == [
            (p["index"], p["field"]) for p in (await response.json())["problems"]
        ]

    async def test_nan_and_infinity_are_rejected(self, client: Any) -> None:
        """NaN and Infinity, which some JSON encoders emit, are rejected as values (or as JSON)."""
        body = b'[{"device_id": "%s", "ts": 1, "temperature": NaN, "pressure": Infinity}]' % str(DEVICE_A).encode()
        response = await client.post("/readings", data=body, headers={"Content-Type": "application/json"})
        assert response.status in (400, 422)
        assert "application/problem+json" == response.content_type


class TestMalformed:
    @pytest.mark.parametrize(
        ("body", "headers", "status", "detail"),
        [
            (b"{not json", {"Content-Type": "application/json"}, 400, "not valid JSON"),
            (b"42", {"Content-Type": "application/json"}, 400, "JSON object or an array"),
            (b"[]", {"Content-Type": "application/json"}, 400, "no readings"),
            (b"x", {"Content-Type": "text/plain"}, 400, "is not supported"),
            (b"not gzip", {"Content-Type": "application/json", "Content-Encoding": "gzip"}, 400, "decode"),
            (b"{}", {"Content-Type": "application/json"}, 422, "problem"),
        ],
    )
    async def test_bad_bodies(
        self, client: Any, body: bytes, headers: dict[str, str], status: int, detail: str
    ) -> None:
        """Malformed bodies get 400 problem+json saying what was wrong."""
        response = await client.post("/readings", data=body, headers=headers)
        assert status == response.status
        assert "application/problem+json" == response.content_type
        assert detail in (await response.json())["detail"]

    async def test_bad_partial_flag(self, client: Any) -> None:
        """?partial must be true or false."""
        response = await client.post("/readings?partial=maybe", json=reading())
        assert 400 == response.status
        assert "partial" == (await response.json())["parameter"]


class TestLimits:
    async def test_too_many_items(self, aiohttp_client: Any, store: MemoryStore, settings: Settings) -> None:
        """More items than ingest.max_items is 413 and nothing is written."""
        limited = dataclasses.replace(
            settings, ingest=dataclasses.replace(settings.ingest, max_items=3, max_body_bytes=2000)
        )
        client = await aiohttp_client(create_app(limited, opener_of(store)))
        response = await client.post("/readings", json=[reading(ts=i) for i in range(4)])
        assert 413 == response.status
        assert "more than 3 readings" in (await response.json())["detail"]
        big = orjson.dumps([reading(ts=i) for i in range(3)]) + b" " * 2000
        response = await client.post("/readings", data=big, headers={"Content-Type": "application/json"})
        assert 413 == response.status
        bomb = gzip.compress(b" " * 100_000 + orjson.dumps(reading()))
        response = await client.post(
            "/readings", data=bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )
        assert 413 == response.status
        assert "after decompression" in (await response.json())["detail"]
        assert 0 == store.writes


class TestLargeBodies:
    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            (b"[" + b"{}," * 300_000 + b"{}]", "application/json"),
            (b"[[" + b"{}," * 300_000 + b"{}]]", "application/json"),
            (b"1\n" * 500_000, "application/x-ndjson"),
        ],
        ids=["json-objects", "json-nested", "ndjson-lines"],
    )
    async def test_adversarial_bodies_are_413_in_bounded_memory(
        self, aiohttp_client: Any, store: MemoryStore, settings: Settings, body: bytes, content_type: str
    ) -> None:
        """Bodies that would decode into far more objects than max_items readings are refused before that.

        Reading the body takes about twice its size (its chunks, then one bytes); decoding these took 4-30 times.
        """
        limited = dataclasses.replace(
            settings, ingest=dataclasses.replace(settings.ingest, max_items=100, max_body_bytes=2 * 2**20)
        )
        client = await aiohttp_client(create_app(limited, opener_of(store)))
        with PeakAllocation() as peak:
            response = await client.post("/readings", data=body, headers={"Content-Type": content_type})
            assert 413 == response.status
            assert "more than 100 readings" in (await response.json())["detail"]
        assert peak.allocated < 4 * len(body), f"{peak.allocated} bytes allocated for a body of {len(body)}"
        assert 0 == store.writes

    @pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson"])
    async def test_ten_thousand_readings_with_problems(
        self, client: Any, store: MemoryStore, content_type: str
    ) -> None:
        """A body of max_items readings (decoded off the event loop) is written whole; its problems are listed."""
        items = [reading(ts=NOW_MS - i, temperature=None if i % 1000 == 999 else 20.0) for i in range(10_000)]
        if content_type == "application/json":
            body, first_index = orjson.dumps(items), 0
        else:
            body, first_index = b"\n".join(orjson.dumps(item) for item in items), 1
        # From a file object: aiohttp warns about sending a body this large (over 1 MiB) as bytes.
        response = await client.post(
            "/readings?partial=true", data=io.BytesIO(body), headers={"Content-Type": content_type}
        )
        assert 207 == response.status
        answer = await response.json()
        assert (9990, 10) == (answer["accepted"], answer["rejected"])
        assert [(i + first_index, "temperature") for i in range(999, 10_000, 1000)] == [
            (p["index"], p["field"]) for p in answer["problems"]
        ]
        assert 9990 == len(store)


class TestRoutes:
    async def test_unknown_route_is_a_problem(self, client: Any) -> None:
        """Even aiohttp's own 404 comes as problem+json."""
        response = await client.get("/nope")
        assert 404 == response.status
        assert "application/problem+json" == response.content_type

    async def test_wrong_method_is_a_problem_with_allow(self, client: Any) -> None:
        """A method a route does not take is a 405 problem that still says, in Allow, which methods it takes."""
        response = await client.delete("/readings")
        assert 405 == response.status
        assert "application/problem+json" == response.content_type
        assert {"GET", "HEAD", "POST"} == {m.strip() for m in response.headers["Allow"].split(",")}

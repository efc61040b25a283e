"""POST /readings against the real Cassandra: what is stored, and that a rejected request stores nothing.

Validation and HTTP errors that need no storage are tested on the in-memory store in tests/unit/api/test_ingest.py.
"""

from __future__ import annotations

import gzip
import uuid
from typing import Any

import orjson
import pytest

from readings_service.core.bucketing import bucket_of, day_of

DEVICE_A = uuid.UUID("7d444840-9dc0-11d1-b245-5ffdce74fad2")
DEVICE_B = uuid.UUID("0191b2f4-65a3-7c3e-8a1b-2f6c1f0e9d42")


def reading(device: uuid.UUID = DEVICE_A, ts: object = "2026-11-20T10:00:00.000Z", **fields: Any) -> dict[str, Any]:
    return {"device_id": str(device), "ts": ts, "temperature": 21.5, "pressure": 1013.25} | fields


def stored(session: Any, keyspace: str) -> list[tuple[Any, ...]]:
    rows = session.execute(
        f"SELECT day, bucket, toUnixTimestamp(ts), device_id, temperature, pressure FROM {keyspace}.readings"
    )
    return sorted((str(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows)


def by_device(session: Any, keyspace: str) -> list[tuple[Any, ...]]:
    rows = session.execute(
        f"SELECT device_id, day, toUnixTimestamp(ts), temperature, pressure FROM {keyspace}.readings_by_device"
    )
    return sorted((r[0], str(r[1]), r[2], r[3], r[4]) for r in rows)


@pytest.fixture
def keyspace(shared_keyspace: Any) -> str:
    return shared_keyspace.cassandra.keyspace  # type: ignore[no-any-return]


class TestAccepted:
    async def test_single_object(self, client: Any, cassandra_session: Any, keyspace: str) -> None:
        """One JSON object is stored in its (day, bucket) partition and in the per-device table."""
        response = await client.post("/readings", json=reading())
        assert 200 == response.status
        assert {"accepted": 1} == await response.json()
        ts = 1_795_168_800_000
        expected = [("2026-11-20", bucket_of(DEVICE_A, 16), ts, DEVICE_A, 21.5, 1013.25)]
        assert expected == stored(cassandra_session, keyspace)
        assert [(DEVICE_A, "2026-11-20", ts, 21.5, 1013.25)] == by_device(cassandra_session, keyspace)

    async def test_array_with_offsets_and_epoch_ms(self, client: Any, cassandra_session: Any, keyspace: str) -> None:
        """An array mixes RFC 3339 offsets and epoch ms; offsets move readings to their UTC day."""
        body = [
            reading(ts="2026-11-21T00:30:00+01:00"),  # 2026-11-20T23:30Z
            reading(DEVICE_B, ts=1_795_219_200_000),  # 2026-11-21T00:00Z
        ]
        response = await client.post("/readings", json=body)
        assert {"accepted": 2} == await response.json()
        days = sorted((r[0], r[3]) for r in stored(cassandra_session, keyspace))
        assert [("2026-11-20", DEVICE_A), ("2026-11-21", DEVICE_B)] == days

    async def test_finer_digits_are_truncated(self, client: Any, cassandra_session: Any, keyspace: str) -> None:
        """Sub-millisecond digits are floored to the millisecond Cassandra stores."""
        await client.post("/readings", json=reading(ts="2026-11-20T10:00:00.123999Z"))
        assert [1_795_168_800_123] == [r[2] for r in stored(cassandra_session, keyspace)]

    async def test_ndjson(self, client: Any, cassandra_session: Any, keyspace: str) -> None:
        """NDJSON bodies are one reading per line; blank lines are ignored."""
        lines = [orjson.dumps(reading(ts=1_795_168_800_000 + i)) for i in range(5)]
        body = b"\n".join(lines[:2]) + b"\n\n" + b"\n".join(lines[2:]) + b"\n"
        response = await client.post("/readings", data=body, headers={"Content-Type": "application/x-ndjson"})
        assert {"accepted": 5} == await response.json()
        assert 5 == len(stored(cassandra_session, keyspace))

    @pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson"])
    async def test_gzip(self, client: Any, cassandra_session: Any, keyspace: str, content_type: str) -> None:
        """Content-Encoding: gzip works for JSON and NDJSON."""
        items = [reading(ts=1_795_168_800_000 + i) for i in range(3)]
        raw = orjson.dumps(items) if content_type == "application/json" else b"\n".join(map(orjson.dumps, items))
        response = await client.post(
            "/readings",
            data=gzip.compress(raw),
            headers={"Content-Type": content_type, "Content-Encoding": "gzip"},
        )
        assert {"accepted": 3} == await response.json()
        assert 3 == len(stored(cassandra_session, keyspace))

    async def test_duplicate_in_one_request_later_wins(
        self, client: Any, cassandra_session: Any, keyspace: str
    ) -> None:
        """The same (device_id, ts) twice in one request stores the later values, even if smaller."""
        body = [reading(temperature=99.0, pressure=2000.0), reading(temperature=1.0, pressure=1.0)]
        await client.post("/readings", json=body)
        assert [(1.0, 1.0)] == [(r[4], r[5]) for r in stored(cassandra_session, keyspace)]
        assert [(1.0, 1.0)] == [(r[3], r[4]) for r in by_device(cassandra_session, keyspace)]

    async def test_resend_later_wins_and_retry_is_safe(
        self, client: Any, cassandra_session: Any, keyspace: str
    ) -> None:
        """Sending the same reading again overwrites it; retrying a whole request changes nothing."""
        await client.post("/readings", json=[reading(temperature=50.0), reading(DEVICE_B)])
        await client.post("/readings", json=[reading(temperature=10.0), reading(DEVICE_B)])
        await client.post("/readings", json=[reading(temperature=10.0), reading(DEVICE_B)])
        rows = stored(cassandra_session, keyspace)
        assert 2 == len(rows)
        assert 10.0 == next(r[4] for r in rows if r[3] == DEVICE_A)

    async def test_many_partitions_and_batches(self, client: Any, cassandra_session: Any, keyspace: str) -> None:
        """A large request across days, buckets and batch boundaries stores every reading once."""
        devices = [uuid.UUID(int=(i * 7919) << 64 | 0x4000_0000_0000 | i) for i in range(50)]
        body = [
            reading(d, ts=1_700_000_000_000 + 3_600_000 * h, temperature=float(i), pressure=float(h))
            for i, d in enumerate(devices)
            for h in range(40)
        ]
        response = await client.post("/readings", json=body)
        assert {"accepted": 2000} == await response.json()
        rows = stored(cassandra_session, keyspace)
        assert 2000 == len(rows)
        for day, bucket, ts, device, _, _ in rows:
            assert (str(day_of(ts)), bucket_of(device, 16)) == (day, bucket)
        assert 2000 == len(by_device(cassandra_session, keyspace))


class TestLatest:
    async def test_latest_is_newest_ts_whatever_the_arrival_order(self, client: Any) -> None:
        """latest follows the greatest ts, even when an older reading arrives last."""
        await client.post("/readings", json=reading(ts="2026-11-20T10:00:00Z", temperature=2.0))
        await client.post("/readings", json=reading(ts="2026-11-19T10:00:00Z", temperature=1.0))
        response = await client.get(f"/devices/{DEVICE_A}/latest")
        assert 200 == response.status
        expected = {
            "device_id": str(DEVICE_A),
            "ts": "2026-11-20T10:00:00.000Z",
            "temperature": 2.0,
            "pressure": 1013.25,
        }
        assert expected == await response.json()

    async def test_unknown_device_has_no_latest(self, store: Any) -> None:
        """The store finds no latest reading of a device it never stored (the 404 is in tests/unit/api)."""
        assert await store.latest(uuid.uuid4()) is None


class TestRejected:
    async def test_one_invalid_item_writes_nothing(self, client: Any, cassandra_session: Any, keyspace: str) -> None:
        """All-or-nothing: a bad item anywhere means 422 and no write at all."""
        body = [reading(), reading(DEVICE_B, temperature="hot"), reading(ts="2026-11-20T11:00:00Z")]
        response = await client.post("/readings", json=body)
        assert 422 == response.status
        assert "application/problem+json" == response.content_type
        problem = await response.json()
        assert [{"index": 1, "field": "temperature", "reason": problem["problems"][0]["reason"]}] == problem["problems"]
        assert "nothing was written" in problem["detail"]
        assert [] == stored(cassandra_session, keyspace)
        assert [] == by_device(cassandra_session, keyspace)

    async def test_partial_writes_valid_items_and_lists_the_rest(
        self, client: Any, cassandra_session: Any, keyspace: str
    ) -> None:
        """?partial=true writes the valid readings and answers 207 with the problems."""
        body = [reading(), reading(DEVICE_B, pressure="x"), reading(DEVICE_B)]
        response = await client.post("/readings?partial=true", json=body)
        assert 207 == response.status
        answer = await response.json()
        assert (2, 1) == (answer["accepted"], answer["rejected"])
        assert [(1, "pressure")] == [(p["index"], p["field"]) for p in answer["problems"]]
        assert 2 == len(stored(cassandra_session, keyspace))


class TestTimestampSanity:
    async def test_epoch_seconds_are_refused_and_nothing_is_written(
        self, client: Any, cassandra_session: Any, keyspace: str
    ) -> None:
        """`"ts": 1795168800` (epoch seconds, 1970-01-21 as ms) is a 422 naming the likely unit; nothing is stored,
        not even the valid reading beside it."""
        body = [reading(), reading(DEVICE_B, ts=1_795_168_800)]
        response = await client.post("/readings", json=body)
        assert 422 == response.status
        problems = (await response.json())["problems"]
        assert [(1, "ts")] == [(p["index"], p["field"]) for p in problems]
        assert problems[0]["reason"].startswith("looks like epoch seconds; ts is epoch milliseconds")
        assert "2026-11-20T10:00:00.000Z" in problems[0]["reason"]
        assert [] == stored(cassandra_session, keyspace)
        assert [] == by_device(cassandra_session, keyspace)
        latest = await client.get(f"/devices/{DEVICE_B}/latest")
        assert 404 == latest.status

    async def test_partial_writes_only_readings_after_oldest_ts(
        self, client: Any, cassandra_session: Any, keyspace: str
    ) -> None:
        """With ?partial=true a reading before ingest.oldest_ts (text here) is listed and the rest is written."""
        body = [reading(), reading(DEVICE_B, ts="1999-12-31T23:59:59.999Z")]
        response = await client.post("/readings?partial=true", json=body)
        assert 207 == response.status
        answer = await response.json()
        assert (1, 1) == (answer["accepted"], answer["rejected"])
        assert "before ingest.oldest_ts, 2000-01-01T00:00:00.000Z" in answer["problems"][0]["reason"]
        assert [DEVICE_A] == [r[3] for r in stored(cassandra_session, keyspace)]


class TestHealth:
    async def test_health_and_ready(self, client: Any) -> None:
        """/health answers when alive, /ready when Cassandra answers."""
        assert 200 == (await client.get("/health")).status
        assert {"status": "ready"} == await (await client.get("/ready")).json()


class TestUnavailable:
    async def test_timeouts_are_503_with_retry_after(
        self, aiohttp_client: Any, cassandra_session: Any, shared_keyspace: Any
    ) -> None:
        """A Cassandra that does not answer in time gives 503 with Retry-After, for writes and readiness."""
        import dataclasses

        from readings_service.api.app import create_app
        from readings_service.store.cassandra import CassandraStore
        from tests.conftest import opener_of

        impatient = dataclasses.replace(shared_keyspace.cassandra, request_timeout_s=1e-6, max_retries=0)
        store = CassandraStore(cassandra_session, impatient, shared_keyspace.ingest, 16)
        client = await aiohttp_client(create_app(shared_keyspace, opener_of(store)))
        for response in (await client.post("/readings", json=reading()), await client.get("/ready")):
            assert 503 == response.status
            assert "1" == response.headers["Retry-After"]
            assert "Cassandra" in (await response.json())["detail"]

"""Range queries against the real Cassandra: order, paging, streaming, disconnects and mid-stream errors.

Parameter errors and other answers that need no storage are tested in tests/unit/api/test_query.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import random
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from datetime import date
from functools import cmp_to_key
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from readings_service.api.app import create_app
from readings_service.core.model import Reading
from readings_service.core.store import After, RawPageStore, StoredRow
from readings_service.core.timestamps import format_timestamp
from readings_service.errors import StoreUnavailable
from tests.conftest import opener_of

DAY_MS = 86_400_000
# The tests' own row shape: (ts_ms, device_id, temperature, pressure).
Row = tuple[int, uuid.UUID, float, float]
# Each property example writes into its own stretch of days, so examples never see each other's data.
BASE_DAY_MS = 19_000 * DAY_MS  # 2022-01-08
_example_counter = itertools.count()


def java_uuid_cmp(a: uuid.UUID, b: uuid.UUID) -> int:
    """Cassandra's UUIDType order, written out independently of the service's key function."""

    def signed(x: int) -> int:
        return x - (1 << 64) if x >= 1 << 63 else x

    va, vb = a.version or (a.int >> 76) & 0xF, b.version or (b.int >> 76) & 0xF
    if va != vb:
        return -1 if va < vb else 1
    msb_a, msb_b = a.int >> 64, b.int >> 64
    if va == 1:
        ta, tb = a.time, b.time
        if ta != tb:
            return -1 if ta < tb else 1
    elif msb_a != msb_b:
        return -1 if msb_a < msb_b else 1
    lsb_a, lsb_b = a.int & ((1 << 64) - 1), b.int & ((1 << 64) - 1)
    del signed
    return (lsb_a > lsb_b) - (lsb_a < lsb_b)


def reference_sort(rows: list[Row]) -> list[Row]:
    def cmp(x: Row, y: Row) -> int:
        if x[0] != y[0]:
            return -1 if x[0] < y[0] else 1
        return java_uuid_cmp(x[1], y[1])

    return sorted(rows, key=cmp_to_key(cmp))


def uuid7(rng: random.Random, ms: int) -> uuid.UUID:
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62)
    return uuid.UUID(int=value)


def device_pool(seed: int) -> list[uuid.UUID]:
    """Devices of mixed versions, including v1 ids whose byte order disagrees with their time order."""
    rng = random.Random(seed)
    pool = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(6)]
    pool += [uuid.uuid1(node=rng.getrandbits(48), clock_seq=rng.getrandbits(14)) for _ in range(3)]
    pool += [
        uuid.UUID(
            fields=(
                rng.getrandbits(32),
                rng.getrandbits(16),
                0x1000 | rng.getrandbits(12),
                0x80 | rng.getrandbits(6),
                rng.getrandbits(8),
                rng.getrandbits(48),
            )
        )
        for _ in range(3)
    ]
    pool += [uuid7(rng, 1_700_000_000_000 + i) for i in range(4)]
    pool += [uuid.UUID(int=rng.getrandbits(128), version=5), uuid.UUID(int=(1 << 127) | 1, version=4)]
    return pool


def parse_lines(body: bytes) -> list[Row]:
    rows = []
    for line in body.splitlines():
        item = orjson.loads(line)
        rows.append((item["ts"], uuid.UUID(item["device_id"]), item["temperature"], item["pressure"]))
    return rows  # type: ignore[return-value]


def printed(rows: list[Row]) -> list[tuple[Any, ...]]:
    return [(format_timestamp(r[0]), r[1], r[2], r[3]) for r in rows]


@st.composite
def datasets(draw: st.DrawFn) -> tuple[list[Reading], int, int]:
    """Readings over four days with many equal timestamps; returns (readings, first day ms, seed)."""
    seed = draw(st.integers(0, 2**16))
    devices = device_pool(seed)
    base = BASE_DAY_MS + next(_example_counter) * 5 * DAY_MS
    moments = [0, 1, 999, 3_600_000, DAY_MS - 1, DAY_MS, DAY_MS + 5, 2 * DAY_MS + 7, 3 * DAY_MS + 86_000_000]
    offsets = st.one_of(st.sampled_from(moments), st.integers(0, 4 * DAY_MS - 1))
    items = draw(st.lists(st.tuples(st.sampled_from(devices), offsets, st.floats(-50, 50)), max_size=120))
    readings = {(d, base + o): Reading(d, base + o, t, float(i)) for i, (d, o, t) in enumerate(items)}
    return list(readings.values()), base, seed


def to_rows(readings: list[Reading]) -> list[Row]:
    return [(r.ts_ms, r.device_id, r.temperature, r.pressure) for r in readings]


class TestClusteringOrder:
    def test_key_matches_cassandra_uuid_order(self, cassandra_session: Any, shared_keyspace: Any) -> None:
        """Within one partition and one ts, Cassandra returns uuids in exactly the service's key order."""
        from readings_service.core.ordering import uuid_order_key

        keyspace = shared_keyspace.cassandra.keyspace
        devices = list(itertools.chain.from_iterable(device_pool(s) for s in range(20)))
        devices += [uuid.UUID(int=(1 << 63) | (0x4 << 76)), uuid.UUID(int=(0x4 << 76) | (1 << 63) | 5)]
        insert = cassandra_session.prepare(
            f"INSERT INTO {keyspace}.readings (day, bucket, ts, device_id, temperature, pressure) "
            "VALUES ('1999-01-01', 999, 0, ?, 0, 0)"
        )
        for device in devices:
            cassandra_session.execute(insert, (device,))
        returned = [
            r[0]
            for r in cassandra_session.execute(
                f"SELECT device_id FROM {keyspace}.readings WHERE day = '1999-01-01' AND bucket = 999"
            )
        ]
        assert sorted(set(devices), key=uuid_order_key) == returned
        assert sorted(set(devices), key=cmp_to_key(java_uuid_cmp)) == returned


class TestRangeProperties:
    @settings(max_examples=25)
    @given(
        data=datasets(),
        bounds=st.lists(
            st.tuples(st.integers(-DAY_MS, 5 * DAY_MS), st.integers(1, 5 * DAY_MS)), min_size=3, max_size=3
        ),
    )
    async def test_ranges_equal_reference(
        self, client: Any, store: Any, data: tuple[list[Reading], int, int], bounds: list[tuple[int, int]]
    ) -> None:
        """Every range returns exactly the filtered reference, sorted by Cassandra's clustering order;
        per-device ranges and latest agree with the data."""
        readings, base, _ = data
        if readings:
            await store.write(readings)
        rows = to_rows(readings)
        for offset, length in bounds:
            start, end = base + offset, base + offset + length
            response = await client.get(f"/readings?start={start}&end={end}")
            assert 200 == response.status
            expected = reference_sort([r for r in rows if start <= r[0] < end])
            assert printed(expected) == parse_lines(await response.read())
        for device in {r[1] for r in rows}:
            start, end = base - 1, base + 4 * DAY_MS
            response = await client.get(f"/devices/{device}/readings?start={start}&end={end}")
            mine = sorted(r for r in rows if r[1] == device)
            assert printed(mine) == parse_lines(await response.read())
            latest = await (await client.get(f"/devices/{device}/latest")).json()
            assert printed(mine[-1:]) == parse_lines(orjson.dumps(latest))

    @settings(max_examples=15)
    @given(data=datasets(), limit=st.integers(1, 40))
    async def test_paging_with_limit_and_after(
        self, client: Any, store: Any, data: tuple[list[Reading], int, int], limit: int
    ) -> None:
        """Paging with limit + after walks the range with no gap and no duplicate."""
        readings, base, _ = data
        if readings:
            await store.write(readings)
        start, end = base, base + 4 * DAY_MS
        seen: list[Any] = []
        after = ""
        for _ in range(1000):
            response = await client.get(f"/readings?start={start}&end={end}&limit={limit}{after}")
            page = parse_lines(await response.read())
            assert len(page) <= limit
            seen.extend(page)
            if len(page) < limit:
                break
            after = f"&after={page[-1][0]},{page[-1][1]}"
        assert printed(reference_sort(to_rows(readings))) == seen


class RecordingStore:
    """Wraps the real store to watch paging: pages delivered, scans open, and optional gates and failures."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.pages = 0
        self.open_scans = 0
        self.opened = 0
        self.gate: asyncio.Event | None = None
        self.fail_after_pages: int | None = None

    async def write(self, readings: Any) -> None:
        await self.inner.write(readings)

    def scan_bucket(
        self, day: date, bucket: int, start_ms: int, end_ms: int, after: After | None
    ) -> AsyncIterator[list[StoredRow]]:
        return self._record(self.inner.scan_bucket(day, bucket, start_ms, end_ms, after))

    async def _record(self, scan: Any) -> AsyncIterator[Any]:
        self.open_scans += 1
        self.opened += 1
        try:
            async with contextlib.aclosing(scan) as pages:
                async for page in pages:
                    if self.fail_after_pages is not None and self.pages >= self.fail_after_pages:
                        raise StoreUnavailable("Cassandra: injected failure")
                    self.pages += 1
                    yield page
                    if self.gate is not None:
                        await self.gate.wait()
        finally:
            self.open_scans -= 1

    def scan_device(self, *args: Any) -> Any:
        return self.inner.scan_device(*args)

    async def latest(self, device_id: uuid.UUID) -> Any:
        return await self.inner.latest(device_id)

    async def ping(self) -> None:
        await self.inner.ping()


class RawRecordingStore(RecordingStore):
    """RecordingStore of a store with raw pages: the compiled path serves, and is watched the same way."""

    def scan_bucket_raw(
        self, day: date, bucket: int, start_ms: int, end_ms: int, after: After | None
    ) -> AsyncIterator[bytes]:
        return self._record(self.inner.scan_bucket_raw(day, bucket, start_ms, end_ms, after))

    def scan_device_raw(self, *args: Any) -> Any:
        return self.inner.scan_device_raw(*args)


def recording_store(inner: Any) -> RecordingStore:
    """A RecordingStore around `inner`, on the path `inner` allows."""
    return RawRecordingStore(inner) if isinstance(inner, RawPageStore) else RecordingStore(inner)


async def seed_day(store: Any, day_ms: int, count: int) -> None:
    devices = [uuid.UUID(int=random.Random(i).getrandbits(128), version=4) for i in range(64)]
    readings = [Reading(devices[i % 64], day_ms + i * 1000, float(i), 1.0) for i in range(count)]
    for start in range(0, count, 5000):
        await store.write(readings[start : start + 5000])


async def wait_for(condition: Any, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - polls state owned by the server under test, with a deadline
            await asyncio.sleep(0.01)


class TestStreaming:
    async def test_first_lines_arrive_before_the_last_page_is_read(
        self, aiohttp_client: Any, store: Any, shared_keyspace: Any
    ) -> None:
        """Lines reach the client while partition pages are still held back."""
        day = 1_600_000_000_000 // DAY_MS * DAY_MS
        await seed_day(store, day, 2000)
        recording = recording_store(store)
        recording.gate = asyncio.Event()
        settings_ = dataclasses.replace(
            shared_keyspace, query=dataclasses.replace(shared_keyspace.query, chunk_bytes=512)
        )
        client = await aiohttp_client(create_app(settings_, opener_of(recording)))
        response = await client.get(f"/readings?start={day}&end={day + DAY_MS}")
        assert 200 == response.status
        first = await asyncio.wait_for(response.content.readline(), 10)
        assert b'"temperature":0.0' in first
        held_back = recording.pages
        recording.gate.set()
        rest = await response.read()
        assert 2000 == 1 + len(rest.splitlines())
        assert held_back < recording.pages

    async def test_memory_does_not_grow_with_the_range(
        self, aiohttp_client: Any, store: Any, shared_keyspace: Any
    ) -> None:
        """Peak traced memory streaming 4 days is not above streaming 2 days of the same density (both use
        the day lookahead, so only the range length differs)."""
        day = 1_500_000_000_000 // DAY_MS * DAY_MS
        for d in range(4):
            await seed_day(store, day + d * DAY_MS, 4000)
        client = await aiohttp_client(create_app(shared_keyspace, opener_of(store)))

        async def peak_of(days: int) -> tuple[int, int]:
            tracemalloc.start()
            try:
                response = await client.get(f"/readings?start={day}&end={day + days * DAY_MS}")
                lines = 0
                async for _ in response.content:
                    lines += 1
                return lines, tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

        lines_2, peak_2 = await peak_of(2)
        lines_4, peak_4 = await peak_of(4)
        assert (8000, 16000) == (lines_2, lines_4)
        assert peak_4 < 1.3 * peak_2, (peak_2, peak_4)

    async def test_disconnect_stops_the_queries(self, aiohttp_client: Any, store: Any, shared_keyspace: Any) -> None:
        """A client that goes away closes every partition scan and no more pages are read."""
        day = 1_400_000_000_000 // DAY_MS * DAY_MS
        await seed_day(store, day, 3000)
        recording = recording_store(store)
        recording.gate = asyncio.Event()
        client = await aiohttp_client(create_app(shared_keyspace, opener_of(recording)))
        response = await client.get(f"/readings?start={day}&end={day + 3 * DAY_MS}")
        await asyncio.wait_for(response.content.readline(), 10)
        assert recording.open_scans > 0
        response.close()
        await wait_for(lambda: recording.open_scans == 0)
        pages = recording.pages
        recording.gate.set()
        await asyncio.sleep(0.2)
        assert pages == recording.pages
        assert recording.opened <= 16 * 2  # this day and the one lookahead day at most

    async def test_mid_stream_error_ends_with_error_line_and_no_final_chunk(
        self, aiohttp_client: Any, store: Any, shared_keyspace: Any
    ) -> None:
        """After streaming began, a failure writes one error line and cuts the response short."""
        day = 1_300_000_000_000 // DAY_MS * DAY_MS
        await seed_day(store, day, 3000)
        recording = recording_store(store)
        recording.fail_after_pages = 40
        client = await aiohttp_client(create_app(shared_keyspace, opener_of(recording)))
        response = await client.get(f"/readings?start={day}&end={day + DAY_MS}")
        assert 200 == response.status
        parts: list[bytes] = []

        async def read_all() -> None:
            async for part in response.content.iter_any():
                parts.append(part)  # noqa: PERF401 - parts must survive the error that ends the loop

        with pytest.raises(aiohttp.ClientPayloadError):
            await read_all()
        received = b"".join(parts)
        last = orjson.loads(received.splitlines()[-1])
        assert {"error": {"status": 503, "detail": "Cassandra: injected failure"}} == last
        assert len(received.splitlines()) > 1

    async def test_failure_before_first_byte_is_a_status(
        self, aiohttp_client: Any, store: Any, shared_keyspace: Any
    ) -> None:
        """A failure before anything was sent is a proper 503 problem."""
        recording = recording_store(store)
        recording.fail_after_pages = 0
        day = 1_300_000_000_000 // DAY_MS * DAY_MS
        await seed_day(store, day, 100)
        client = await aiohttp_client(create_app(shared_keyspace, opener_of(recording)))
        response = await client.get(f"/readings?start={day}&end={day + DAY_MS}")
        assert 503 == response.status
        assert "Retry-After" in response.headers


class TestPaging:
    async def test_first_page_is_small_then_fetch_size(
        self, cassandra_session: Any, store: Any, shared_keyspace: Any
    ) -> None:
        """A partition scan's first page holds FIRST_PAGE_ROWS rows, later pages the configured fetch size."""
        from readings_service.core.bucketing import bucket_of, day_of
        from readings_service.store.cassandra import FIRST_PAGE_ROWS, CassandraStore

        wide = dataclasses.replace(shared_keyspace.cassandra, fetch_size=FIRST_PAGE_ROWS + 50)
        big_pages = CassandraStore(cassandra_session, wide, shared_keyspace.ingest, 16)
        device = uuid.UUID(int=12345, version=4)
        day_ms = 1_200_000_000_000 // DAY_MS * DAY_MS
        await store.write([Reading(device, day_ms + i, 1.0, 2.0) for i in range(500)])
        scan = big_pages.scan_bucket(day_of(day_ms), bucket_of(device, 16), day_ms, day_ms + DAY_MS, None)
        sizes = [len(page) async for page in scan]
        assert [100, 150, 150, 100] == sizes

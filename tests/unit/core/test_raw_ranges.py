"""The compiled path against the pure-Python reference: the same rows give the same bytes.

Both paths read the same in-memory partitions, paged alike: the pure path as stored-row tuples, the compiled one
as the raw pages Cassandra would send (`[int rows]`, then `[int length][bytes]` per cell).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from readings_service.core.bucketing import bucket_of, day_of
from readings_service.core.ndjson import LineChunks, encode_rows
from readings_service.core.ordering import uuid_order_key
from readings_service.core.ranges import RangeRequest, as_lines, device_chunks, range_chunks, take, take_lines
from readings_service.core.store import After, StoredRow
from readings_service.core.timestamps import MAX_TS_MS, MIN_TS_MS, MS_PER_DAY, TimestampError
from tests.conftest import examples

readings_native = pytest.importorskip("readings_native")
from readings_service.core.raw_ranges import (  # noqa: E402 - only once the compiled module imports
    EncodedLines,
    native_device_lines,
    native_range_lines,
)

EMPTY = b""  # Cassandra's empty value: a double cell of no bytes, which the driver reads as None
SPECIAL_FLOATS = [
    0.0,
    -0.0,
    1.0,
    0.1,
    1e15,
    1e16,
    -1e16,
    1e17,
    1e21,
    1e22,
    1e-5,
    1e-6,
    1e-7,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    123456789.125,
    9007199254740993.0,
    math.nan,
    math.inf,
    -math.inf,
]


def cell(value: bytes | None) -> bytes:
    return struct.pack(">i", -1) if value is None else struct.pack(">i", len(value)) + value


def double(value: float | None, empty: bool = False) -> bytes:
    if value is None:
        return cell(EMPTY if empty else None)
    return cell(struct.pack(">d", value))


def range_page(rows: Sequence[StoredRow], empty_nulls: bool = False) -> bytes:
    """A raw page of `toUnixTimestamp(ts), uuidAsBlob(device_id), temperature, pressure`."""
    parts = [struct.pack(">i", len(rows))]
    for ts, _, device, temperature, pressure in rows:
        parts += [
            cell(struct.pack(">q", ts)),
            cell(device.bytes),
            double(temperature, empty_nulls),
            double(pressure, empty_nulls),
        ]
    return b"".join(parts)


def device_page(rows: Sequence[StoredRow]) -> bytes:
    """A raw page of `toUnixTimestamp(ts), temperature, pressure`."""
    parts = [struct.pack(">i", len(rows))]
    for ts, _, _, temperature, pressure in rows:
        parts += [cell(struct.pack(">q", ts)), double(temperature), double(pressure)]
    return b"".join(parts)


def key(row: StoredRow) -> tuple[int, int]:
    return row[0], row[1]


def stored(ts: int, device: uuid.UUID, temperature: float | None, pressure: float | None) -> StoredRow:
    return (ts, uuid_order_key(device), device, temperature, pressure)  # type: ignore[return-value]


# Every version nibble, v1 ids whose time order disagrees with their byte order, and arbitrary variant bits.
devices = st.one_of(
    st.uuids(),
    st.uuids(version=1),
    st.builds(
        lambda version, bits: uuid.UUID(int=(bits & ~(0xF << 76)) | version << 76),
        st.integers(0, 15),
        st.integers(0, 2**128 - 1),
    ),
)
values = st.one_of(st.none(), st.floats(), st.sampled_from(SPECIAL_FLOATS))
timestamps = st.one_of(
    st.integers(MIN_TS_MS, MAX_TS_MS),
    st.sampled_from([MIN_TS_MS, MAX_TS_MS, 0, -1, 1, MS_PER_DAY - 1, 951_782_400_000, 4_107_542_399_999]),
)


def unique(rows: list[StoredRow]) -> list[StoredRow]:
    """One row per clustering key, sorted by it."""
    return sorted({key(row): row for row in rows}.values(), key=key)


def run(coroutine: Any) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(20):
            return await coroutine

    return asyncio.run(bounded())


async def drain(chunks: LineChunks) -> bytes:
    async with contextlib.aclosing(chunks):
        return b"".join([chunk.encode() async for chunk in chunks])


class TestEncoder:
    @given(st.lists(st.tuples(timestamps, devices, values, values), max_size=60), st.booleans())
    def test_one_partition_encodes_as_the_reference(
        self, items: list[tuple[int, uuid.UUID, float | None, float | None]], empty_nulls: bool
    ) -> None:
        """Any rows, nulls (as null or as the empty value), NaN, infinities, extreme floats and dates: the
        compiled encoder writes exactly what encode_rows (orjson) writes."""
        rows = unique([stored(*item) for item in items])
        merge = readings_native.DayMerge(1)
        merge.push(0, range_page(rows, empty_nulls))
        merge.finish(0)
        data, count, complete, dry = merge.cut()
        assert (encode_rows(rows), len(rows), True, []) == (data, count, complete, dry)

    @given(st.lists(st.tuples(timestamps, values, values), max_size=40), devices, timestamps)
    def test_device_page_encodes_as_the_reference(
        self, items: list[tuple[int, float | None, float | None]], device: uuid.UUID, first_ts: int
    ) -> None:
        """A device's page, from a first ts on, encodes as the reference does."""
        rows = unique([stored(ts, device, t, p) for ts, t, p in items])
        data, count, complete = readings_native.encode_device_page(device_page(rows), device.bytes, first_ts)
        kept = [row for row in rows if row[0] >= first_ts]
        assert (encode_rows(kept), len(kept), True) == (data, count, complete)

    @given(st.lists(devices, min_size=2, max_size=2))
    def test_uuid_order_is_the_reference_order(self, pair: list[uuid.UUID]) -> None:
        """The compiled uuid order agrees with core.ordering for every pair."""
        left, right = (readings_native.uuid_order_key(d.bytes) for d in pair)
        expected = (uuid_order_key(pair[0]) > uuid_order_key(pair[1])) - (
            uuid_order_key(pair[0]) < uuid_order_key(pair[1])
        )
        assert expected == (left > right) - (left < right)

    @pytest.mark.parametrize("ts", [MIN_TS_MS - 1, MAX_TS_MS + 1, -(2**63), 2**63 - 1])
    def test_timestamp_out_of_range_fails_like_the_reference(self, ts: int) -> None:
        """A stored instant outside the years 0001 to 9999 fails the chunk holding it with TimestampError."""
        device = uuid.UUID(int=7, version=4)
        rows = [stored(0, device, 1.0, 2.0), stored(ts, device, 1.0, 2.0)]
        rows.sort(key=key)
        with pytest.raises(TimestampError):
            encode_rows(rows)
        merge = readings_native.DayMerge(1)
        merge.push(0, range_page(rows))
        merge.finish(0)
        data, count, complete, _ = merge.cut()
        assert not complete
        with pytest.raises(TimestampError):
            EncodedLines(data, count, complete).encode()

    @pytest.mark.parametrize("blob", [b"", b"\x01" * 15, b"\x01" * 17])
    def test_device_id_not_16_bytes_is_a_value_error(self, blob: bytes) -> None:
        """A uuid cell that is not 16 bytes raises ValueError, as uuid.UUID(bytes=...) does on the pure path."""
        page = struct.pack(">i", 1) + cell(struct.pack(">q", 0)) + cell(blob) + double(1.0) + double(2.0)
        with pytest.raises(ValueError, match="16-char"):
            readings_native.DayMerge(1).push(0, page)

    def test_truncated_page_is_a_value_error(self) -> None:
        """A page cut short is refused, never read past its end."""
        page = range_page([stored(0, uuid.UUID(int=1), 1.0, 2.0)])
        with pytest.raises(ValueError, match="ends in the middle"):
            readings_native.DayMerge(1).push(0, page[:-3])

    @given(st.integers(0, 12), st.integers(0, 10))
    def test_head_keeps_whole_lines(self, lines: int, head: int) -> None:
        """EncodedLines.head(n) is the first n lines."""
        data = b"".join(b'{"n":%d}\n' % i for i in range(lines))
        expected = b"".join(data.splitlines(keepends=True)[:head])
        chunk = EncodedLines(data, lines).head(head)
        assert (expected, min(head, lines)) == (chunk.data, chunk.rows)


class PagedStore:
    """Partitions in memory, paged like the Cassandra store: parsed pages and raw ones of the same rows."""

    def __init__(self, rows: list[StoredRow], buckets: int, page_rows: int, first_page_rows: int) -> None:
        self.buckets = buckets
        self.page_rows = page_rows
        self.first_page_rows = first_page_rows
        self.partitions: dict[tuple[date, int], list[StoredRow]] = {}
        self.devices: dict[tuple[uuid.UUID, date], list[StoredRow]] = {}
        for row in unique(rows):
            day = day_of(row[0])
            self.partitions.setdefault((day, bucket_of(row[2], buckets)), []).append(row)
            self.devices.setdefault((row[2], day), []).append(row)

    def _pages(self, rows: list[StoredRow]) -> list[list[StoredRow]]:
        pages = [rows[: self.first_page_rows]]
        pages += [rows[i : i + self.page_rows] for i in range(self.first_page_rows, len(rows), self.page_rows)]
        return pages

    def _bucket(self, day: date, bucket: int, start_ms: int, end_ms: int, after: After | None) -> list[StoredRow]:
        floor = (after.ts_ms, uuid_order_key(after.device_id)) if after else None
        return [
            row
            for row in self.partitions.get((day, bucket), [])
            if start_ms <= row[0] < end_ms and (floor is None or key(row) > floor)
        ]

    async def scan_bucket(
        self, day: date, bucket: int, start_ms: int, end_ms: int, after: After | None
    ) -> AsyncIterator[list[StoredRow]]:
        for page in self._pages(self._bucket(day, bucket, start_ms, end_ms, after)):
            await asyncio.sleep(0)
            yield page

    async def scan_bucket_raw(
        self, day: date, bucket: int, start_ms: int, end_ms: int, after: After | None
    ) -> AsyncIterator[bytes]:
        for page in self._pages(self._bucket(day, bucket, start_ms, end_ms, after)):
            await asyncio.sleep(0)
            yield range_page(page)

    def _device(self, device_id: uuid.UUID, day: date, start_ms: int, end_ms: int) -> list[StoredRow]:
        return [row for row in self.devices.get((device_id, day), []) if start_ms <= row[0] < end_ms]

    async def scan_device(
        self, device_id: uuid.UUID, day: date, start_ms: int, end_ms: int
    ) -> AsyncIterator[list[StoredRow]]:
        for page in self._pages(self._device(device_id, day, start_ms, end_ms)):
            yield page

    async def scan_device_raw(
        self, device_id: uuid.UUID, day: date, start_ms: int, end_ms: int
    ) -> AsyncIterator[bytes]:
        for page in self._pages(self._device(device_id, day, start_ms, end_ms)):
            yield device_page(page)

    async def write(self, readings: Any) -> None:
        raise NotImplementedError

    async def latest(self, device_id: uuid.UUID) -> StoredRow | None:
        raise NotImplementedError

    async def ping(self) -> None:
        pass


BASE_MS = 1_750_000_000_000 // MS_PER_DAY * MS_PER_DAY


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[PagedStore, RangeRequest, int, list[uuid.UUID]]:
    """Rows over three days with shared timestamps, paged small, and a range with or without after and limit."""
    pool = draw(st.lists(devices, min_size=1, max_size=12, unique=True))
    offsets = st.one_of(
        st.integers(0, 3 * MS_PER_DAY - 1),
        st.sampled_from([0, 1, 1000, MS_PER_DAY - 1, MS_PER_DAY, 2 * MS_PER_DAY + 5]),
    )
    items = draw(st.lists(st.tuples(offsets, st.sampled_from(pool), values, values), max_size=20))
    # Many more rows, from a seeded generator: shared timestamps, every device, page-sized runs.
    rng = draw(st.randoms(use_true_random=False))
    moments = [rng.randrange(3 * MS_PER_DAY) for _ in range(rng.randrange(1, 40))]
    items += [
        (
            rng.choice(moments),
            rng.choice(pool),
            rng.choice([*SPECIAL_FLOATS, None, rng.uniform(-50, 50)]),
            rng.uniform(900, 1100),
        )
        for _ in range(draw(st.integers(0, 300)))
    ]
    rows = [stored(BASE_MS + offset, device, t, p) for offset, device, t, p in items]
    buckets = draw(st.sampled_from([1, 2, 16]))
    store = PagedStore(rows, buckets, draw(st.integers(1, 9)), draw(st.integers(1, 5)))
    start = BASE_MS + draw(st.integers(-MS_PER_DAY, 2 * MS_PER_DAY))
    end = start + draw(st.integers(1, 4 * MS_PER_DAY))
    if draw(st.booleans()):
        start, end = BASE_MS, BASE_MS + 3 * MS_PER_DAY  # every row
    after = None
    if draw(st.booleans()):
        if rows and draw(st.booleans()):
            row = draw(st.sampled_from(rows))
            after = After(row[0], row[2])
        else:
            after = After(BASE_MS + draw(offsets), draw(st.sampled_from(pool) | devices))
    limit = draw(st.none() | st.integers(1, 60))
    return store, RangeRequest(start, end, limit, after), draw(st.integers(0, 2)), pool


class TestPathsAgree:
    @settings(max_examples=examples(200))
    @given(scenarios())
    def test_ranges_give_identical_bytes(self, scenario: tuple[PagedStore, RangeRequest, int, list[uuid.UUID]]) -> None:
        """For any rows, paging, bucket count, range, resume point, limit and lookahead, the compiled path's
        bytes equal the pure path's."""
        store, request, lookahead, _ = scenario
        pure = as_lines(take(range_chunks(store, request, store.buckets, lookahead), request.limit))
        native = take_lines(native_range_lines(store, request, store.buckets, lookahead), request.limit)
        expected = run(drain(pure))
        assert expected == run(drain(native))

    @settings(max_examples=examples(100))
    @given(scenarios(), st.data())
    def test_device_ranges_give_identical_bytes(
        self, scenario: tuple[PagedStore, RangeRequest, int, list[uuid.UUID]], data: st.DataObject
    ) -> None:
        """One device's range, with or without resume point and limit: identical bytes on both paths."""
        store, request, _, pool = scenario
        device = data.draw(st.sampled_from(pool))
        pure = as_lines(take(device_chunks(store, device, request), request.limit))
        native = take_lines(native_device_lines(store, device, request), request.limit)
        expected = run(drain(pure))
        assert expected == run(drain(native))

    def test_merged_output_is_in_clustering_order(self) -> None:
        """Rows of 16 partitions sharing timestamps come out by ts, then Cassandra's uuid order."""
        pool = [
            uuid.UUID(int=(0x9E3779B97F4A7C15 * (i + 1) << 56 | i) % 2**128 & ~(0xF << 76) | version << 76)
            for i, version in enumerate([1, 4, 7, 1, 5, 3] * 5)
        ]
        rows = [stored(BASE_MS + (i % 7) * 1000, device, float(i), None) for i, device in enumerate(pool * 4)]
        store = PagedStore(rows, 16, 3, 2)
        request = RangeRequest(BASE_MS, BASE_MS + MS_PER_DAY, None, None)
        body = run(drain(native_range_lines(store, request, 16, 1)))
        assert encode_rows(unique(rows)) == body

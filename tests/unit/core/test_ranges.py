"""Range planning, day chaining with its lookahead, per-device ranges and `take`, on the in-memory store."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import date
from itertools import chain
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from readings_service.core.bucketing import day_of
from readings_service.core.memory_store import MemoryStore
from readings_service.core.model import Reading
from readings_service.core.ordering import uuid_order_key
from readings_service.core.ranges import RangeRequest, device_chunks, plan_days, range_chunks, row_key, take
from readings_service.core.store import After, Pages, StoredRow
from readings_service.errors import StoreUnavailable
from tests.conftest import examples

DAY_MS = 86_400_000
BASE_MS = 19_000 * DAY_MS  # midnight, 2022-01-08
BUCKETS = 4
DEADLINE_S = 5.0
DEVICES = [
    uuid.UUID("7d444840-9dc0-11d1-b245-5ffdce74fad2"),
    uuid.UUID("5a8b0c9e-3f1d-4e2a-9b7c-6d5e4f3a2b1c"),
    uuid.UUID("0191b2f4-65a3-7c3e-8a1b-2f6c1f0e9d42"),
    uuid.UUID("00000000-0000-4000-8000-000000000001"),
    uuid.UUID("ffffffff-ffff-4fff-bfff-ffffffffffff"),
]


def day(n: int) -> date:
    return day_of(BASE_MS + n * DAY_MS)


def request(start_ms: int, end_ms: int, limit: int | None = None, after: After | None = None) -> RangeRequest:
    return RangeRequest(start_ms, end_ms, limit, after)


async def collect(chunks: Pages) -> list[list[StoredRow]]:
    async with contextlib.aclosing(chunks):
        return [chunk async for chunk in chunks]


async def filled(days: int, per_day: int, page_rows: int = 3) -> MemoryStore:
    """A store with `per_day` readings a day over `days` days, spread over the devices and buckets."""
    store = MemoryStore(buckets=BUCKETS, page_rows=page_rows)
    await store.write(
        [Reading(DEVICES[i % len(DEVICES)], BASE_MS + d * DAY_MS + (i // 2) * 1000, float(i), float(d))
         for d in range(days) for i in range(per_day)]
    )  # fmt: skip
    return store


def everything(store: MemoryStore) -> list[StoredRow]:
    return sorted(chain.from_iterable(p.rows.values() for p in store.partitions.values()), key=row_key)


class RecordingStore:
    """Wraps the memory store to watch which partition scans run, and to fail the scans of one day."""

    def __init__(self, inner: MemoryStore, fail_day: date | None = None) -> None:
        self.inner = inner
        self.fail_day = fail_day
        self.started: list[date] = []
        self.open_scans = 0

    async def write(self, readings: Sequence[Reading]) -> None:
        await self.inner.write(readings)

    async def scan_bucket(self, day: date, bucket: int, start_ms: int, end_ms: int, after: After | None) -> Pages:
        self.started.append(day)
        self.open_scans += 1
        try:
            if day == self.fail_day:
                raise StoreUnavailable("Cassandra: injected failure")
            async with contextlib.aclosing(self.inner.scan_bucket(day, bucket, start_ms, end_ms, after)) as pages:
                async for page in pages:
                    yield page
        finally:
            self.open_scans -= 1

    def scan_device(self, device_id: uuid.UUID, day: date, start_ms: int, end_ms: int) -> Pages:
        return self.inner.scan_device(device_id, day, start_ms, end_ms)

    async def latest(self, device_id: uuid.UUID) -> StoredRow | None:
        return await self.inner.latest(device_id)

    async def ping(self) -> None:
        await self.inner.ping()

    def days_started(self) -> list[date]:
        return sorted(set(self.started))


async def wait_for(condition: Callable[[], bool]) -> None:
    """Let the loop run until `condition` holds, failing after a deadline."""
    async with asyncio.timeout(DEADLINE_S):
        while not condition():  # noqa: ASYNC110 - polls state owned by the code under test, with a deadline
            await asyncio.sleep(0)


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for every Hypothesis example: a fresh loop per example costs more than the example."""
    with asyncio.Runner() as loop_runner:
        yield loop_runner


class TestPlanDays:
    def test_days_are_clipped_to_the_range(self) -> None:
        """Each day touched by [start, end) is read from max(start, midnight) to min(end, next midnight)."""
        scans = plan_days(request(BASE_MS + 5, BASE_MS + 2 * DAY_MS + 7))
        assert [
            (day(0), BASE_MS + 5, BASE_MS + DAY_MS, None),
            (day(1), BASE_MS + DAY_MS, BASE_MS + 2 * DAY_MS, None),
            (day(2), BASE_MS + 2 * DAY_MS, BASE_MS + 2 * DAY_MS + 7, None),
        ] == [(s.day, s.start_ms, s.end_ms, s.after) for s in scans]

    def test_resume_point_drops_earlier_days_and_applies_to_its_own_day_only(self) -> None:
        """Days before the resume point's day are left out; only its day carries `after`."""
        after = After(BASE_MS + DAY_MS + 10, DEVICES[0])
        scans = plan_days(request(BASE_MS, BASE_MS + 3 * DAY_MS, after=after))
        assert [
            (day(1), BASE_MS + DAY_MS + 10, BASE_MS + 2 * DAY_MS, after),
            (day(2), BASE_MS + 2 * DAY_MS, BASE_MS + 3 * DAY_MS, None),
        ] == [(s.day, s.start_ms, s.end_ms, s.after) for s in scans]

    def test_resume_point_before_the_range_is_ignored(self) -> None:
        """A resume point before start leaves the whole range to read."""
        scans = plan_days(request(BASE_MS + 10, BASE_MS + 20, after=After(BASE_MS, DEVICES[0])))
        assert [(day(0), BASE_MS + 10, BASE_MS + 20, None)] == [(s.day, s.start_ms, s.end_ms, s.after) for s in scans]

    def test_resume_point_at_the_end_reads_nothing(self) -> None:
        assert [] == plan_days(request(BASE_MS, BASE_MS + 20, after=After(BASE_MS + 20, DEVICES[0])))


class TestDayChaining:
    async def test_days_follow_each_other_in_clustering_order(self) -> None:
        """Across days and buckets, the chunks concatenate to every row in (ts, uuid order); none is empty."""
        store = await filled(days=3, per_day=20)
        chunks = await collect(range_chunks(store, request(BASE_MS, BASE_MS + 3 * DAY_MS), BUCKETS, lookahead=1))
        assert everything(store) == list(chain.from_iterable(chunks))
        assert all(chunks)

    @settings(max_examples=examples(120))
    @given(
        data=st.lists(
            st.tuples(st.sampled_from(DEVICES), st.integers(0, 4 * DAY_MS - 1), st.floats(-9, 9)), max_size=40
        ),
        start=st.integers(-DAY_MS, 3 * DAY_MS),
        length=st.integers(1, 4 * DAY_MS),
        after_index=st.none() | st.integers(0, 39),
        lookahead=st.integers(0, 2),
    )
    def test_equals_the_filtered_reference(
        self,
        runner: asyncio.Runner,
        data: list[tuple[uuid.UUID, int, float]],
        start: int,
        length: int,
        after_index: int | None,
        lookahead: int,
    ) -> None:
        """Any range, resumed after any stored row or not, is the rows in [start, end) after that row, sorted."""
        store = MemoryStore(buckets=BUCKETS, page_rows=2)
        runner.run(store.write([Reading(d, BASE_MS + offset, t, 0.0) for d, offset, t in data]))
        rows = everything(store)
        after = None
        if after_index is not None and rows:
            mark = rows[after_index % len(rows)]
            after = After(mark[0], mark[2])
        start_ms, end_ms = BASE_MS + start, BASE_MS + start + length
        chunks = runner.run(collect(range_chunks(store, request(start_ms, end_ms, after=after), BUCKETS, lookahead)))
        after_key = (after.ts_ms, uuid_order_key(after.device_id)) if after else None
        expected = [r for r in rows if start_ms <= r[0] < end_ms and (after_key is None or row_key(r) > after_key)]
        assert expected == list(chain.from_iterable(chunks))

    @pytest.mark.parametrize("lookahead", [0, 1, 2])
    async def test_next_days_start_while_a_day_streams(self, lookahead: int) -> None:
        """While the first day's rows are held by the consumer, the next `lookahead` days' scans are already
        running, and no day beyond them."""
        recording = RecordingStore(await filled(days=5, per_day=40))
        chunks = range_chunks(recording, request(BASE_MS, BASE_MS + 5 * DAY_MS), BUCKETS, lookahead)
        async with contextlib.aclosing(chunks):
            first = await anext(chunks)
            assert day(0) == day_of(first[0][0])
            await wait_for(lambda: len(recording.days_started()) == 1 + lookahead)
            for _ in range(10):  # give a wrongly eager chaining every chance to open more
                await asyncio.sleep(0)
            assert [day(n) for n in range(1 + lookahead)] == recording.days_started()

    async def test_closing_mid_stream_closes_every_scan(self) -> None:
        """Closing the range while a day streams and the next is looked ahead closes every partition scan."""
        recording = RecordingStore(await filled(days=3, per_day=40))
        chunks = range_chunks(recording, request(BASE_MS, BASE_MS + 3 * DAY_MS), BUCKETS, lookahead=1)
        await anext(chunks)
        await wait_for(lambda: day(1) in recording.started)
        assert recording.open_scans > 0
        await chunks.aclose()
        assert 0 == recording.open_scans

    async def test_a_failing_later_day_fails_when_it_is_reached(self) -> None:
        """A day whose scans fail (already, in the lookahead) raises only after the earlier days' rows."""
        store = await filled(days=3, per_day=10)
        recording = RecordingStore(store, fail_day=day(1))
        chunks = range_chunks(recording, request(BASE_MS, BASE_MS + 3 * DAY_MS), BUCKETS, lookahead=1)
        received: list[StoredRow] = []

        async def read_all() -> None:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    received.extend(chunk)

        with pytest.raises(StoreUnavailable, match="injected failure"):
            await read_all()
        assert [r for r in everything(store) if day_of(r[0]) == day(0)] == received
        assert 0 == recording.open_scans

    async def test_a_failed_lookahead_is_retrieved_when_closed_before_it(self) -> None:
        """Closing the range before reaching a looked-ahead day that failed logs nothing."""
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        recording = RecordingStore(await filled(days=2, per_day=10), fail_day=day(1))
        chunks = range_chunks(recording, request(BASE_MS, BASE_MS + 2 * DAY_MS), BUCKETS, lookahead=1)
        await anext(chunks)
        await wait_for(lambda: day(1) in recording.started)
        await chunks.aclose()
        assert (0, []) == (recording.open_scans, errors)


class TestDeviceChunks:
    async def test_one_device_by_ts_after_the_resume_point(self) -> None:
        """A device's rows over several days by ts; with `after`, only rows after it (ts, then uuid order)."""
        store = await filled(days=3, per_day=20, page_rows=2)
        device = DEVICES[1]
        mine = [r for r in everything(store) if r[2] == device]
        chunks = await collect(device_chunks(store, device, request(BASE_MS, BASE_MS + 3 * DAY_MS)))
        assert mine == list(chain.from_iterable(chunks))
        mark = mine[len(mine) // 2]
        for after_device in DEVICES:
            after = After(mark[0], after_device)
            resumed = await collect(device_chunks(store, device, request(BASE_MS, BASE_MS + 3 * DAY_MS, after=after)))
            key = (mark[0], uuid_order_key(after_device))
            assert [r for r in mine if row_key(r) > key] == list(chain.from_iterable(resumed))
            assert all(resumed)


class CountingSource:
    """Chunks handed out one by one, counting the pulls and noting the close."""

    def __init__(self, chunks: list[list[StoredRow]]) -> None:
        self.chunks = chunks
        self.pulled = 0
        self.closed = False

    async def __call__(self) -> AsyncIterator[list[StoredRow]]:
        try:
            for chunk in self.chunks:
                self.pulled += 1
                yield chunk
        finally:
            self.closed = True


def rows(n: int, start: int = 0) -> list[StoredRow]:
    return [(BASE_MS + i, 0, DEVICES[0], 0.0, 0.0) for i in range(start, start + n)]


class TestTake:
    @settings(max_examples=examples(120))
    @given(sizes=st.lists(st.integers(1, 5), max_size=8), limit=st.none() | st.integers(1, 45))
    def test_exactly_the_first_limit_rows(self, runner: asyncio.Runner, sizes: list[int], limit: int | None) -> None:
        """The chunks of `take` are the first `limit` rows (all without a limit), in the source's chunking; the
        source is pulled no further than needed, and closed."""
        chunks: list[list[StoredRow]] = []
        for size in sizes:
            chunks.append(rows(size, start=sum(len(c) for c in chunks)))
        source = CountingSource(chunks)
        taken = runner.run(collect(take(source(), limit)))  # type: ignore[arg-type]
        flat = list(chain.from_iterable(chunks))
        assert flat[:limit] == list(chain.from_iterable(taken))
        assert all(taken)
        needed = (
            len(chunks)
            if limit is None or limit >= len(flat)
            else next(i + 1 for i in range(len(chunks)) if sum(map(len, chunks[: i + 1])) >= limit)
        )
        assert (needed, True) == (source.pulled, source.closed)

    async def test_limit_on_a_chunk_boundary_stops_without_pulling_more(self) -> None:
        """When a chunk ends exactly at the limit, no further chunk is asked for and the source is closed."""
        source = CountingSource([rows(3), rows(2, start=3), rows(4, start=5)])
        taken = await collect(take(source(), 5))  # type: ignore[arg-type]
        assert ([rows(3), rows(2, start=3)], 2, True) == (taken, source.pulled, source.closed)

"""The in-memory ReadingStore: Cassandra's partitions, clustering order and paging, without Cassandra."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from datetime import date
from itertools import chain

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from readings_service.core.bucketing import bucket_of, day_of, days_between
from readings_service.core.memory_store import MemoryStore
from readings_service.core.model import Reading
from readings_service.core.ordering import uuid_order_key
from readings_service.core.store import After, Pages, ReadingStore, StoredRow
from tests.conftest import examples

DAY_MS = 86_400_000
BASE_MS = 19_000 * DAY_MS
V1 = uuid.UUID("7d444840-9dc0-11d1-b245-5ffdce74fad2")
V4 = uuid.UUID("5a8b0c9e-3f1d-4e2a-9b7c-6d5e4f3a2b1c")
V7 = uuid.UUID("0191b2f4-65a3-7c3e-8a1b-2f6c1f0e9d42")


async def drain(pages: Pages) -> list[list[StoredRow]]:
    async with contextlib.aclosing(pages):
        return [page async for page in pages]


def clustering(row: StoredRow) -> tuple[int, int]:
    return row[0], uuid_order_key(row[2])


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for every Hypothesis example: a fresh loop per example costs more than the example."""
    with asyncio.Runner() as loop_runner:
        yield loop_runner


devices = st.sampled_from([V1, V4, V7, uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1), uuid.UUID(int=1 << 76)])
readings = st.lists(
    st.builds(Reading, devices, st.integers(BASE_MS - 5, BASE_MS + 3 * DAY_MS), st.just(1.0), st.floats(0, 9)),
    max_size=60,
)


class TestProtocol:
    def test_is_a_reading_store(self) -> None:
        """MemoryStore has every method of the Protocol (mypy checks the signatures where it is used)."""
        store: ReadingStore = MemoryStore()
        assert all(callable(getattr(store, name)) for name in ("write", "scan_bucket", "scan_device", "latest", "ping"))


class TestClusteringOrder:
    @settings(max_examples=examples(120))
    @given(
        data=readings,
        page_rows=st.integers(1, 7),
        bounds=st.tuples(st.integers(-10, 2 * DAY_MS), st.integers(0, 2 * DAY_MS)),
    )
    def test_partition_pages_are_the_filtered_rows_in_clustering_order(
        self, runner: asyncio.Runner, data: list[Reading], page_rows: int, bounds: tuple[int, int]
    ) -> None:
        """Each (day, bucket) partition pages out exactly its rows of [start, end), by (ts, uuid order), the last
        write of a (device_id, ts) winning; pages are non-empty and at most page_rows long."""
        store = MemoryStore(buckets=4, page_rows=page_rows)
        start, end = BASE_MS + bounds[0], BASE_MS + bounds[0] + bounds[1]
        partitions = [
            (day, bucket) for day in days_between(BASE_MS - 5, BASE_MS + 3 * DAY_MS + 1) for bucket in range(4)
        ]

        async def scan_all() -> list[list[list[StoredRow]]]:
            await store.write(data)
            return [await drain(store.scan_bucket(day, bucket, start, end, None)) for day, bucket in partitions]

        latest = {(r.device_id, r.ts_ms): r for r in data}
        for (day, bucket), pages in zip(partitions, runner.run(scan_all()), strict=True):
            expected = sorted(
                (
                    (r.ts_ms, uuid_order_key(r.device_id), r.device_id, r.temperature, r.pressure)
                    for r in latest.values()
                    if day_of(r.ts_ms) == day and bucket_of(r.device_id, 4) == bucket and start <= r.ts_ms < end
                ),
                key=clustering,
            )
            assert expected == list(chain.from_iterable(pages))
            assert all(0 < len(page) <= page_rows for page in pages)

    @settings(max_examples=examples(100))
    @given(data=readings, cut=st.integers(0, 59))
    def test_after_resumes_strictly_after_the_row(self, runner: asyncio.Runner, data: list[Reading], cut: int) -> None:
        """With `after`, a partition pages out the rows strictly after (ts, device_id) and before end."""
        store = MemoryStore(buckets=1, page_rows=3)
        runner.run(store.write(data))
        day = day_of(BASE_MS)
        everything = list(chain.from_iterable(runner.run(drain(store.scan_bucket(day, 0, 0, 2**62, None)))))
        if not everything:
            return
        mark = everything[cut % len(everything)]
        after = After(mark[0], mark[2])
        resumed = runner.run(drain(store.scan_bucket(day, 0, 0, 2**62, after)))
        assert everything[cut % len(everything) + 1 :] == list(chain.from_iterable(resumed))

    async def test_ties_on_ts_follow_cassandra_uuid_order(self) -> None:
        """Equal timestamps come in Cassandra's uuid order (v1 before v4 before v7), not Python's."""
        store = MemoryStore(buckets=1)
        await store.write([Reading(device, BASE_MS, 1.0, 2.0) for device in (V7, V4, V1)])
        pages = await drain(store.scan_bucket(day_of(BASE_MS), 0, BASE_MS, BASE_MS + 1, None))
        assert [[V1, V4, V7]] == [[row[2] for row in page] for page in pages]
        assert sorted([V1, V4, V7]) != [V1, V4, V7]


class TestPaging:
    async def test_a_write_between_pages_shows_in_the_next(self) -> None:
        """Each page resumes after the last row handed out, as Cassandra's paging state does."""
        store = MemoryStore(buckets=1, page_rows=2)
        await store.write([Reading(V4, BASE_MS + i * 10, 1.0, 2.0) for i in range(4)])
        pages = store.scan_bucket(day_of(BASE_MS), 0, BASE_MS, BASE_MS + DAY_MS, None)
        async with contextlib.aclosing(pages):
            first = await anext(pages)
            await store.write([Reading(V4, BASE_MS + 15, 3.0, 4.0), Reading(V4, BASE_MS + 5, 5.0, 6.0)])
            rest = [page async for page in pages]
        assert [BASE_MS, BASE_MS + 10] == [row[0] for row in first]
        assert [[BASE_MS + 15, BASE_MS + 20], [BASE_MS + 30]] == [[row[0] for row in page] for page in rest]

    async def test_empty_partition_has_no_pages(self) -> None:
        """A partition without rows in the range yields no page at all, not an empty one."""
        store = MemoryStore()
        await store.write([Reading(V4, BASE_MS, 1.0, 2.0)])
        day = day_of(BASE_MS)
        assert [] == await drain(store.scan_bucket(day, bucket_of(V4, 16), BASE_MS + 1, BASE_MS + 2, None))
        assert [] == await drain(store.scan_bucket(date(2000, 1, 1), 0, 0, 2**62, None))

    def test_page_rows_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="page_rows must be at least 1, got 0"):
            MemoryStore(page_rows=0)


class TestDevice:
    async def test_scan_device_and_latest(self) -> None:
        """A device's day pages out its rows of the range by ts; latest is its greatest ts whatever the
        arrival order, and None for a device never written."""
        store = MemoryStore(page_rows=2)
        later = BASE_MS + DAY_MS + 5
        await store.write([Reading(V1, later, 9.0, 9.0)])
        await store.write([Reading(V1, BASE_MS + i, float(i), 0.0) for i in (3, 1, 2)] + [Reading(V4, BASE_MS, 0, 0)])
        pages = await drain(store.scan_device(V1, day_of(BASE_MS), BASE_MS + 2, BASE_MS + DAY_MS))
        assert [[BASE_MS + 2, BASE_MS + 3]] == [[row[0] for row in page] for page in pages]
        assert (later, uuid_order_key(V1), V1, 9.0, 9.0) == await store.latest(V1)
        assert await store.latest(V7) is None
        assert 5 == len(store)

    async def test_ping_answers(self) -> None:
        """ping returns (raises nothing): the in-memory store is always there."""
        await MemoryStore().ping()

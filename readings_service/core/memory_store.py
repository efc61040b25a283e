"""An in-memory ReadingStore, for HTTP-layer and query-planning unit tests only.

It keeps Cassandra's layout and order — rows per (day, bucket) partition in clustering order (ts, then the
`uuid` order of `core.ordering`), rows per (device_id, day) by ts — and pages the way the Cassandra adapter
does: non-empty pages of at most `page_rows` rows, each page resuming strictly after the last row handed out,
so a write between two pages shows up in the later one as it would on Cassandra. It proves nothing about
storage: what Cassandra stores and returns is tested against a real node.
"""

from __future__ import annotations

import asyncio
import bisect
import uuid
from collections.abc import Sequence
from datetime import date

from readings_service.core.bucketing import bucket_of, day_of
from readings_service.core.model import Reading
from readings_service.core.ordering import uuid_order_key
from readings_service.core.store import After, Pages, StoredRow

# A row's position in its partition: (ts_ms, uuid order key); unique per (device_id, ts).
_Key = tuple[int, int]
# Below every uuid's order key (they are >= 0), so (ts, _FIRST) is where a ts starts.
_FIRST = -1


class _Partition:
    """Rows kept sorted by their clustering key; writing a key again replaces the row."""

    __slots__ = ("keys", "rows")

    def __init__(self) -> None:
        self.keys: list[_Key] = []
        self.rows: dict[_Key, StoredRow] = {}

    def upsert(self, row: StoredRow) -> None:
        key = (row[0], row[1])
        if key not in self.rows:
            bisect.insort(self.keys, key)
        self.rows[key] = row

    def page(self, lower: _Key, inclusive: bool, end_ms: int, rows: int) -> list[StoredRow]:
        """At most `rows` rows from `lower` on (strictly after it unless inclusive) with ts < end_ms."""
        find = bisect.bisect_left if inclusive else bisect.bisect_right
        first = find(self.keys, lower)
        page: list[StoredRow] = []
        for key in self.keys[first : first + rows]:
            if key[0] >= end_ms:
                break
            page.append(self.rows[key])
        return page

    def last(self) -> StoredRow | None:
        return self.rows[self.keys[-1]] if self.keys else None


class MemoryStore:
    """ReadingStore in dicts; see the module docstring for what it is (and is not) for."""

    def __init__(self, buckets: int = 16, page_rows: int = 100) -> None:
        if page_rows < 1:
            raise ValueError(f"page_rows must be at least 1, got {page_rows}")
        self.buckets = buckets
        self.page_rows = page_rows
        self.partitions: dict[tuple[date, int], _Partition] = {}
        self.device_days: dict[tuple[uuid.UUID, date], _Partition] = {}
        self.writes = 0

    def __len__(self) -> int:
        """The number of distinct readings stored."""
        return sum(len(partition.keys) for partition in self.partitions.values())

    async def write(self, readings: Sequence[Reading]) -> None:
        """Upsert every reading; for the same (device_id, ts) the later one wins, also within one call."""
        await asyncio.sleep(0)  # a write is a suspension point, as on any real store
        for reading in readings:
            day = day_of(reading.ts_ms)
            row = (
                reading.ts_ms,
                uuid_order_key(reading.device_id),
                reading.device_id,
                reading.temperature,
                reading.pressure,
            )
            self.partitions.setdefault((day, bucket_of(reading.device_id, self.buckets)), _Partition()).upsert(row)
            self.device_days.setdefault((reading.device_id, day), _Partition()).upsert(row)
        self.writes += 1

    def scan_bucket(self, day: date, bucket: int, start_ms: int, end_ms: int, after: After | None) -> Pages:
        if after is None:
            return self._pages(self.partitions.get((day, bucket)), (start_ms, _FIRST), True, end_ms)
        # As the CQL does: strictly after (ts, device_id), with no other lower bound.
        return self._pages(
            self.partitions.get((day, bucket)), (after.ts_ms, uuid_order_key(after.device_id)), False, end_ms
        )

    def scan_device(self, device_id: uuid.UUID, day: date, start_ms: int, end_ms: int) -> Pages:
        return self._pages(self.device_days.get((device_id, day)), (start_ms, _FIRST), True, end_ms)

    async def _pages(self, partition: _Partition | None, lower: _Key, inclusive: bool, end_ms: int) -> Pages:
        while True:
            await asyncio.sleep(0)  # one suspension per page, like a page fetched from a server
            page = [] if partition is None else partition.page(lower, inclusive, end_ms, self.page_rows)
            if not page:
                return
            yield page
            lower, inclusive = (page[-1][0], page[-1][1]), False
            if len(page) < self.page_rows:
                return

    async def latest(self, device_id: uuid.UUID) -> StoredRow | None:
        await asyncio.sleep(0)
        days = [day for (device, day) in self.device_days if device == device_id]
        return self.device_days[(device_id, max(days))].last() if days else None

    async def ping(self) -> None:
        await asyncio.sleep(0)

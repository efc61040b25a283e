"""Range reads: plan the days, fan out per (day, bucket), merge each day, chain the days, take a limit."""

from __future__ import annotations

import asyncio
import contextlib
import operator
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from readings_service.core.bucketing import day_bounds_ms, day_of, days_between
from readings_service.core.merge import merge_sorted_pages
from readings_service.core.ndjson import LineChunks, RowLines
from readings_service.core.ordering import uuid_order_key
from readings_service.core.store import After, Pages, ReadingStore, StoredRow


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """A validated range: start inclusive, end exclusive, optional line limit and resume point."""

    start_ms: int
    end_ms: int
    limit: int | None
    after: After | None


# Clustering order of a stored row: ts, then Cassandra's uuid order (precomputed by the store).
row_key: Callable[[StoredRow], tuple[int, int]] = operator.itemgetter(0, 1)


C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class DayScan:
    """One day's part of a range: its bounds and, on the resume point's day, the resume point."""

    day: date
    start_ms: int
    end_ms: int
    after: After | None


def plan_days(request: RangeRequest) -> list[DayScan]:
    """The days to read, each with its own bounds; days wholly before the resume point are left out."""
    start_ms = request.start_ms
    after = request.after
    if after is not None and after.ts_ms < start_ms:
        after = None  # the whole range lies after the resume point
    if after is not None:
        start_ms = after.ts_ms
    scans = []
    for day in days_between(start_ms, request.end_ms):
        day_start, day_end = day_bounds_ms(day)
        first = after is not None and day == day_of(after.ts_ms)
        scans.append(DayScan(day, max(start_ms, day_start), min(request.end_ms, day_end), after if first else None))
    return scans


async def _open_day(store: ReadingStore, scan: DayScan, buckets: int) -> Pages:
    sources = [store.scan_bucket(scan.day, b, scan.start_ms, scan.end_ms, scan.after) for b in range(buckets)]
    async with contextlib.aclosing(merge_sorted_pages(sources, row_key)) as merged:
        async for chunk in merged:
            yield chunk


def range_chunks(store: ReadingStore, request: RangeRequest, buckets: int, lookahead: int) -> Pages:
    """Sorted chunks of the range's rows, days in order (apply `take` for the limit); see `chain_days`."""
    return chain_days(lambda scan: _open_day(store, scan, buckets), plan_days(request), lookahead)


async def _first_chunk(day: AsyncGenerator[C, None]) -> C | None:
    return await anext(day, None)


async def chain_days(
    open_day: Callable[[DayScan], AsyncGenerator[C, None]], scans: list[DayScan], lookahead: int
) -> AsyncGenerator[C, None]:
    """The chunks of each day's scan, days in order.

    While one day streams, the partition queries of the next `lookahead` days are already running (their first
    chunk is fetched in a task), so a day boundary does not stall the stream. Closing this generator cancels
    and closes every open day and with it every partition's paging.
    """
    # Not aiostream's concat: under a CPU-bound consumer it opens a day only when the last ends (query-performance.md).
    pending: deque[tuple[AsyncGenerator[C, None], asyncio.Task[C | None]]] = deque()
    plans = deque(scans)
    try:
        while plans or pending:
            while plans and len(pending) <= lookahead:
                day = open_day(plans.popleft())
                pending.append((day, asyncio.ensure_future(_first_chunk(day))))
            day, first = pending.popleft()
            async with contextlib.aclosing(day):
                chunk = await first
                while chunk is not None:
                    yield chunk
                    chunk = await anext(day, None)
    finally:
        for day, first in pending:
            first.cancel()
            with contextlib.suppress(BaseException):
                await first
            await day.aclose()


async def device_chunks(store: ReadingStore, device_id: uuid.UUID, request: RangeRequest) -> Pages:
    """One device's rows of the range by ts, one partition per day, after the resume point if any."""
    after_key = (request.after.ts_ms, uuid_order_key(request.after.device_id)) if request.after else None
    for scan in plan_days(request):
        async with contextlib.aclosing(store.scan_device(device_id, scan.day, scan.start_ms, scan.end_ms)) as pages:
            async for page in pages:
                if after_key is not None and page and row_key(page[0]) <= after_key:
                    page = [row for row in page if row_key(row) > after_key]
                if page:
                    yield page


async def take(chunks: Pages, limit: int | None) -> Pages:
    """The chunks up to `limit` rows in all; closes the source when the limit is reached."""
    async with contextlib.aclosing(chunks):
        if limit is None:
            async for chunk in chunks:
                yield chunk
            return
        remaining = limit
        async for chunk in chunks:
            if len(chunk) >= remaining:
                yield chunk[:remaining]
                return
            remaining -= len(chunk)
            yield chunk


async def as_lines(chunks: Pages) -> LineChunks:
    """The chunks as NDJSON lines encoded when sent (the pure-Python encoder); closes the source."""
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            yield RowLines(chunk)


async def take_lines(chunks: LineChunks, limit: int | None) -> LineChunks:
    """The chunks up to `limit` lines in all; closes the source when the limit is reached."""
    async with contextlib.aclosing(chunks):
        remaining = limit
        async for chunk in chunks:
            if remaining is not None and chunk.rows >= remaining:
                yield chunk.head(remaining)
                return
            if remaining is not None:
                remaining -= chunk.rows
            yield chunk

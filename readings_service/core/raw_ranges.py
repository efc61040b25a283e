"""Range reads on raw pages: the compiled module parses, merges and encodes; Python plans, pages and chains.

The same plan, paging, day chaining and limit as `ranges`, with the per-row work in `readings_native` (which
releases the GIL): each day's partitions are merged by `DayMerge` in Cassandra's clustering order and come out
as NDJSON bytes identical to what `ndjson.encode_rows` writes for the same rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass

import readings_native

from readings_service.core.merge import next_of_each
from readings_service.core.ndjson import LineChunks
from readings_service.core.ordering import uuid_order_key
from readings_service.core.ranges import DayScan, RangeRequest, chain_days, plan_days
from readings_service.core.store import RawPageStore
from readings_service.core.timestamps import OUT_OF_RANGE, TimestampError

__all__ = ["EncodedLines", "native_device_lines", "native_range_lines"]


@dataclass(frozen=True, slots=True)
class EncodedLines:
    """Lines the compiled encoder wrote; if not `complete`, a row after them had a timestamp out of range.

    That row fails when the lines are sent, as the pure-Python encoder fails on a chunk holding it.
    """

    data: bytes
    rows: int
    complete: bool = True

    def encode(self) -> bytes:
        if not self.complete:
            raise TimestampError(OUT_OF_RANGE)
        return self.data

    def head(self, rows: int) -> EncodedLines:
        if rows >= self.rows:
            return self
        return EncodedLines(self.data[: readings_native.line_end(self.data, rows)], rows)


async def _open_day(store: RawPageStore, scan: DayScan, buckets: int) -> LineChunks:
    """The day's lines in clustering order; a partition is awaited only when the merge needs its next page."""
    merge = readings_native.DayMerge(buckets)
    sources = [store.scan_bucket_raw(scan.day, b, scan.start_ms, scan.end_ms, scan.after) for b in range(buckets)]
    async with contextlib.AsyncExitStack() as stack:
        for source in sources:
            stack.push_async_callback(source.aclose)
        dry = list(range(buckets))
        while True:
            if dry:
                pages = await next_of_each([sources[index] for index in dry])
                for index, page in zip(dry, pages, strict=True):
                    if page is None:
                        merge.finish(index)
                    else:
                        merge.push(index, page)
            # On a worker thread: the cut runs without the GIL, and the loop serves other requests meanwhile.
            data, rows, complete, dry = await asyncio.to_thread(merge.cut)
            if rows or not complete:
                yield EncodedLines(data, rows, complete)
            # With no partition to refill, every one has ended: the next cut takes the rest, then nothing is left.
            if not complete or (not dry and not rows):
                return


def native_range_lines(store: RawPageStore, request: RangeRequest, buckets: int, lookahead: int) -> LineChunks:
    """The range's lines, days in order, with the next `lookahead` days' queries already running."""
    return chain_days(lambda scan: _open_day(store, scan, buckets), plan_days(request), lookahead)


async def native_device_lines(store: RawPageStore, device_id: uuid.UUID, request: RangeRequest) -> LineChunks:
    """One device's lines of the range by ts, one partition per day, after the resume point if any."""
    first_ts = request.start_ms
    if request.after is not None:
        after = request.after
        # Rows come strictly after (after.ts, after.device_id) in clustering order: at after.ts itself only
        # if this device sorts after the resume point's device.
        later = uuid_order_key(device_id) > uuid_order_key(after.device_id)
        first_ts = max(first_ts, after.ts_ms if later else after.ts_ms + 1)
    device = device_id.bytes
    for scan in plan_days(request):
        async with contextlib.aclosing(store.scan_device_raw(device_id, scan.day, scan.start_ms, scan.end_ms)) as pages:
            async for page in pages:
                data, rows, complete = readings_native.encode_device_page(page, device, first_ts)
                if rows or not complete:
                    yield EncodedLines(data, rows, complete)

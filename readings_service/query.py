"""Range queries: parse the parameters, fan out per (day, bucket), merge each day, chain the days."""

from __future__ import annotations

import asyncio
import contextlib
import operator
import re
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date

from readings_service.bucketing import MS_PER_DAY, day_bounds_ms, day_of, days_between
from readings_service.errors import BadRequest
from readings_service.merge import merge_sorted_pages
from readings_service.ordering import uuid_order_key
from readings_service.store import After, Pages, ReadingStore, StoredRow
from readings_service.timestamps import TimestampError, parse_timestamp

_EPOCH_MS = re.compile(r"-?[0-9]{1,16}")
# An unencoded '+' in a query string arrives as a space: "...T10:00:00 01:00" meant "+01:00".
_SPACE_OFFSET = re.compile(r"(.*[0-9]) ([0-9]{2}:[0-9]{2})")


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """A validated range: start inclusive, end exclusive, optional line limit and resume point."""

    start_ms: int
    end_ms: int
    limit: int | None
    after: After | None


def parse_time_param(name: str, raw: str) -> int:
    """Epoch ms of a query-string timestamp (RFC 3339 with offset, or integer epoch ms)."""
    if _EPOCH_MS.fullmatch(raw):
        return int(raw)
    fixed = _SPACE_OFFSET.fullmatch(raw)
    try:
        return parse_timestamp(f"{fixed[1]}+{fixed[2]}" if fixed else raw)
    except TimestampError as error:
        raise BadRequest(f"parameter {name}={raw!r}: {error}", parameter=name) from None


def parse_after(raw: str) -> After:
    """The resume key `<ts>,<device_id>`, as a result line prints them."""
    ts_text, comma, device_text = raw.rpartition(",")
    if not comma:
        raise BadRequest(f"parameter after={raw!r} must be '<ts>,<device_id>'", parameter="after")
    try:
        device_id = uuid.UUID(device_text.strip())
    except ValueError:
        raise BadRequest(f"parameter after={raw!r}: {device_text!r} is not a UUID", parameter="after") from None
    return After(parse_time_param("after", ts_text.strip()), device_id)


def parse_limit(raw: str | None, max_limit: int) -> int | None:
    """A positive line limit, capped by max_limit when that is set."""
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise BadRequest(f"parameter limit={raw!r} must be a positive integer", parameter="limit")
    limit = int(raw)
    if max_limit and limit > max_limit:
        raise BadRequest(f"parameter limit={limit} is over the maximum of {max_limit}", parameter="limit")
    return limit


def parse_range(params: Mapping[str, str], *, max_range_days: int, max_limit: int) -> RangeRequest:
    """Validate start, end, limit and after; raises BadRequest naming the parameter."""
    for name in ("start", "end"):
        if not params.get(name):
            raise BadRequest(f"parameter {name} is required", parameter=name)
    start_ms = parse_time_param("start", params["start"])
    end_ms = parse_time_param("end", params["end"])
    if start_ms >= end_ms:
        raise BadRequest("start must be before end (start is inclusive, end exclusive)", parameter="end")
    if end_ms - start_ms > max_range_days * MS_PER_DAY:
        raise BadRequest(f"the range is longer than the maximum of {max_range_days} days", parameter="end")
    after_raw = params.get("after")
    after = parse_after(after_raw) if after_raw else None
    return RangeRequest(start_ms, end_ms, parse_limit(params.get("limit"), max_limit), after)


# Clustering order of a stored row: ts, then Cassandra's uuid order (precomputed by the store).
row_key: Callable[[StoredRow], tuple[int, int]] = operator.itemgetter(0, 1)


@dataclass(frozen=True, slots=True)
class _DayScan:
    day: date
    start_ms: int
    end_ms: int
    after: After | None


def plan_days(request: RangeRequest) -> list[_DayScan]:
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
        scans.append(_DayScan(day, max(start_ms, day_start), min(request.end_ms, day_end), after if first else None))
    return scans


async def _open_day(store: ReadingStore, scan: _DayScan, buckets: int) -> Pages:
    sources = [store.scan_bucket(scan.day, b, scan.start_ms, scan.end_ms, scan.after) for b in range(buckets)]
    async with contextlib.aclosing(merge_sorted_pages(sources, row_key)) as merged:
        async for chunk in merged:
            yield chunk


async def _first_chunk(day: Pages) -> list[StoredRow] | None:
    return await anext(day, None)


async def range_chunks(
    store: ReadingStore, request: RangeRequest, buckets: int, lookahead: int
) -> Pages:
    """Sorted chunks of the range's rows, days in order (apply `take` for the limit).

    While one day streams, the partition queries of the next `lookahead` days are already running (their first
    chunk is fetched in a task), so a day boundary does not stall the stream. Closing this generator cancels
    and closes every open day and with it every partition's paging.
    """
    pending: deque[tuple[Pages, asyncio.Task[list[StoredRow] | None]]] = deque()
    plans = deque(plan_days(request))
    try:
        while plans or pending:
            while plans and len(pending) <= lookahead:
                day = _open_day(store, plans.popleft(), buckets)
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


async def device_chunks(
    store: ReadingStore, device_id: uuid.UUID, request: RangeRequest
) -> Pages:
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

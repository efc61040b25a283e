"""The storage port: what the service needs from a readings store, whatever the backend."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol, runtime_checkable

from readings_service.core.model import Reading

# One stored reading as a store returns it: (ts in epoch ms, device order, device_id, temperature, pressure).
# `device order` is uuid_order_key(device_id), carried along so that the merge compares plain ints.
StoredRow = tuple[int, int, uuid.UUID, float, float]
# Lists of rows in order, page by page; a generator so that callers can close it and stop the reading.
Pages = AsyncGenerator[list[StoredRow], None]
# Pages as Cassandra sent them: each the body of a ROWS result after its metadata (`[int rows]`, then every
# cell as `[int length][bytes]`), for the compiled merge and encoder to parse.
RawPages = AsyncGenerator[bytes, None]


@dataclass(frozen=True, slots=True)
class After:
    """A resume point: rows strictly after (ts_ms, device_id) in clustering order."""

    ts_ms: int
    device_id: uuid.UUID


class ReadingStore(Protocol):
    """Writes readings and scans them partition by partition, page by page."""

    async def write(self, readings: Sequence[Reading]) -> None:
        """Store every reading, returning only once all writes are acknowledged."""
        ...

    def scan_bucket(self, day: date, bucket: int, start_ms: int, end_ms: int, after: After | None) -> Pages:
        """Pages of one (day, bucket) partition, start_ms <= ts < end_ms and after `after`, in clustering order."""
        ...

    def scan_device(self, device_id: uuid.UUID, day: date, start_ms: int, end_ms: int) -> Pages:
        """Pages of one device's readings of one day with start_ms <= ts < end_ms, by ts."""
        ...

    async def latest(self, device_id: uuid.UUID) -> StoredRow | None:
        """The device's reading with the greatest ts, or None."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers a trivial query now."""
        ...


@runtime_checkable
class RawPageStore(ReadingStore, Protocol):
    """A ReadingStore that can also hand over its scans' pages unparsed.

    `scan_bucket_raw` pages hold `toUnixTimestamp(ts) bigint, uuidAsBlob(device_id) blob, temperature double,
    pressure double`; `scan_device_raw` pages `toUnixTimestamp(ts) bigint, temperature double, pressure double`.
    Both have the same bounds, order and paging as their parsed counterparts.
    """

    def scan_bucket_raw(self, day: date, bucket: int, start_ms: int, end_ms: int, after: After | None) -> RawPages:
        """Raw pages of what scan_bucket returns."""
        ...

    def scan_device_raw(self, device_id: uuid.UUID, day: date, start_ms: int, end_ms: int) -> RawPages:
        """Raw pages of what scan_device returns."""
        ...

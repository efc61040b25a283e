"""Partition key parts: the bucket of a device and the UTC day of a timestamp."""

import datetime
import uuid
from hashlib import blake2b

from readings_service.core.timestamps import MS_PER_DAY

_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


def bucket_hash(device_id: uuid.UUID) -> int:
    """Stable 64-bit hash of a device id, the value that `bucket_of` reduces.

    Definition, fixed forever because stored data is partitioned by it: BLAKE2b
    (RFC 7693) with an 8-byte digest, no key, salt or personalisation, over the 16
    bytes of the UUID in network order (`UUID.bytes`); the digest read as a
    big-endian unsigned integer. Equivalent to `b2sum -l 64` of those 16 bytes.
    """
    return int.from_bytes(blake2b(device_id.bytes, digest_size=8).digest(), "big")


def bucket_of(device_id: uuid.UUID, buckets: int) -> int:
    """Bucket of a device: `bucket_hash(device_id) % buckets`, in [0, buckets).

    Changing `buckets` moves almost every device to another partition, so the
    count is part of the data layout, not a tuning knob.
    """
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, got {buckets}")
    return bucket_hash(device_id) % buckets


def day_of(ts_ms: int) -> datetime.date:
    """UTC date of a timestamp in epoch milliseconds (floor, so -1 ms is 1969-12-31)."""
    return datetime.date.fromordinal(ts_ms // MS_PER_DAY + _EPOCH_ORDINAL)


def day_bounds_ms(day: datetime.date) -> tuple[int, int]:
    """Half-open [start, end) of a UTC day in epoch milliseconds."""
    start = (day.toordinal() - _EPOCH_ORDINAL) * MS_PER_DAY
    return start, start + MS_PER_DAY


def days_between(start_ms: int, end_ms: int) -> list[datetime.date]:
    """UTC days touched by the half-open range [start_ms, end_ms), oldest first."""
    if start_ms >= end_ms:
        return []
    first = start_ms // MS_PER_DAY + _EPOCH_ORDINAL
    last = (end_ms - 1) // MS_PER_DAY + _EPOCH_ORDINAL
    return [datetime.date.fromordinal(ordinal) for ordinal in range(first, last + 1)]

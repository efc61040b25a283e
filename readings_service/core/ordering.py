"""Cassandra's clustering order for the CQL ``uuid`` type, as plain Python ints.

Python orders ``uuid.UUID`` by its 128-bit value, which is not the order Cassandra
returns rows in: Cassandra (``UUIDType.compareCustom``) compares the version nibble
first, then the timestamp of version-1 UUIDs (whose bytes store the low time bits
first), and only then the raw bits. Merging partitions by Python's order would
interleave rows differently from a single Cassandra query.
"""

import uuid

__all__ = ["uuid_order_key", "uuid_order_key_from_bytes"]

_SIZE = 16
_LOW_64 = (1 << 64) - 1
# Masks over the 128-bit value; the field names are RFC 4122's version-1 layout.
_TIME_HI_AND_VERSION = 0xFFFF << 64
_TIME_MID = 0xFFFF << 80
_TIME_LOW = 0xFFFF_FFFF << 64  # where time_low lands after shifting the value right by 32


def _order_key(value: int) -> int:
    # Every comparison in UUIDType.compareCustom is unsigned in effect, so one
    # unsigned int reproduces it: version, then the 64-bit most significant half
    # (timestamp-reordered for version 1), then the least significant half.
    # Cassandra compares the reordered timestamp with the signed Long.compare, but
    # its top nibble holds the version (1), so it is never negative.
    version = (value >> 76) & 0xF
    if version == 1:
        return (
            1 << 128
            | (value & _TIME_HI_AND_VERSION) << 48
            | (value & _TIME_MID) << 16
            | (value >> 32) & _TIME_LOW
            | value & _LOW_64
        )
    return version << 128 | value


def uuid_order_key(value: uuid.UUID) -> int:
    """Return an int that sorts like ``value`` does in a Cassandra ``uuid`` column."""
    # The version is read from the bits, not ``value.version``, which is None
    # for UUIDs that are not of the RFC 4122 variant; Cassandra ignores the variant.
    return _order_key(value.int)


def uuid_order_key_from_bytes(value: bytes) -> int:
    """Return the order key of a ``uuid`` cell as serialized by Cassandra.

    An empty value, which Cassandra accepts for ``uuid``, sorts before every UUID.
    """
    if len(value) != _SIZE:
        if not value:
            return -1
        message = f"a uuid value is {_SIZE} bytes or empty, got {len(value)} bytes"
        raise ValueError(message)
    return _order_key(int.from_bytes(value))

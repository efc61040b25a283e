"""Tests for Cassandra's ``uuid`` clustering order."""

import functools
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from readings_service.core.ordering import uuid_order_key, uuid_order_key_from_bytes
from tests.conftest import examples

_LONG = 1 << 64


def _java_long(value: int) -> int:
    """Read a 64-bit pattern as Java's signed ``long``."""
    return value - _LONG if value >= _LONG >> 1 else value


def _compare(left: int, right: int) -> int:
    return (left > right) - (left < right)


def _reorder_timestamp_bytes(msb: int) -> int:
    """``TimeUUIDType.reorderTimestampBytes``, wrapped to 64 bits like Java's ``long``."""
    return ((msb << 48) | ((msb << 16) & 0xFFFF00000000) | (msb >> 32)) % _LONG


def reference_compare(left: uuid.UUID, right: uuid.UUID) -> int:
    """``UUIDType.compareCustom`` of Cassandra 5.0, transcribed with its signedness."""
    # ByteBuffer.getLong gives a signed long; the bit patterns are kept unsigned
    # here and every Java comparison says which reading it uses.
    msb1, lsb1 = left.int >> 64, left.int % _LONG
    msb2, lsb2 = right.int >> 64, right.int % _LONG
    version1 = (msb1 >> 12) & 0xF  # `>>>` on the pattern: unsigned by definition
    version2 = (msb2 >> 12) & 0xF
    if version1 != version2:
        return _compare(version1, version2)
    if version1 == 1:
        # Long.compare: signed.
        c = _compare(
            _java_long(_reorder_timestamp_bytes(msb1)),
            _java_long(_reorder_timestamp_bytes(msb2)),
        )
    else:
        c = _compare(msb1, msb2)  # UnsignedLongs.compare: unsigned
    if c != 0:
        return c
    return _compare(lsb1, lsb2)  # UnsignedLongs.compare: unsigned


def _v1(timestamp: int, lsb: int = 0x8000_0000_0000_0000) -> uuid.UUID:
    """Build a version-1 UUID from its 60-bit timestamp and its least significant half."""
    time_low = timestamp & 0xFFFF_FFFF
    time_mid = (timestamp >> 32) & 0xFFFF
    time_hi = timestamp >> 48
    msb = time_low << 32 | time_mid << 16 | 0x1000 | time_hi
    return uuid.UUID(int=msb << 64 | lsb)


def _with_version(version: int, msb: int, lsb: int) -> uuid.UUID:
    msb = msb & ~0xF000 | version << 12
    return uuid.UUID(int=msb << 64 | lsb)


def _sort_order(*values: uuid.UUID) -> list[uuid.UUID]:
    return sorted(values, key=uuid_order_key)


class TestVersions:
    """The version nibble is compared before anything else."""

    def test_v1_with_the_largest_timestamp_sorts_before_the_smallest_v4(self) -> None:
        """Time-based UUIDs all come before random ones, whatever their bits."""
        latest_v1 = _v1((1 << 60) - 1, lsb=_LONG - 1)
        smallest_v4 = _with_version(4, 0, 0)

        assert [latest_v1, smallest_v4] == _sort_order(smallest_v4, latest_v1)

    def test_nil_uuid_sorts_before_v1(self) -> None:
        """The nil UUID has version 0."""
        earliest_v1 = _v1(0, lsb=0)

        assert [uuid.UUID(int=0), earliest_v1] == _sort_order(earliest_v1, uuid.UUID(int=0))

    def test_version_is_read_from_the_bits_whatever_the_variant(self) -> None:
        """Cassandra ignores the variant field, so a non-RFC 4122 v1 is still compared by time."""
        earlier = _v1(0xFFFF_FFFF, lsb=0)  # variant bits 0: uuid.UUID.version is None
        later = _v1(0x1_0000_0000, lsb=0)

        assert earlier.version is None
        assert [earlier, later] == _sort_order(later, earlier)


class TestTimeBased:
    """Version-1 UUIDs compare by their 60-bit timestamp, then their lower half."""

    def test_timestamp_wins_over_byte_order(self) -> None:
        """time_low comes first in the bytes but is the least significant part of the time."""
        earlier = _v1(0x0000_0000_FFFF_FFFF)  # time_low ff ff ff ff
        later = _v1(0x0000_0001_0000_0000)  # time_low 00 00 00 00, time_mid 00 01

        assert earlier > later  # Python's order, which follows the bytes
        assert [earlier, later] == _sort_order(later, earlier)

    def test_high_time_bits_are_most_significant(self) -> None:
        """time_hi outranks time_mid, which outranks time_low."""
        values = [_v1(1 << 59), _v1(1 << 47), _v1(1 << 31), _v1((1 << 60) - 1)]

        assert [values[2], values[1], values[0], values[3]] == _sort_order(*values)

    def test_lower_half_compares_unsigned(self) -> None:
        """On a timestamp tie, 0x80... sorts after 0x7f... (``uuid``, unlike ``timeuuid``)."""
        low_bit_set = _v1(12345, lsb=0x7FFF_FFFF_FFFF_FFFF)
        high_bit_set = _v1(12345, lsb=0x8000_0000_0000_0000)

        assert [low_bit_set, high_bit_set] == _sort_order(high_bit_set, low_bit_set)


class TestOtherVersions:
    """Other versions compare both 64-bit halves as unsigned numbers."""

    def test_upper_half_compares_unsigned(self) -> None:
        """An upper half starting 0x80 sorts after one starting 0x7f."""
        below = _with_version(4, 0x7FFF_FFFF_FFFF_FFFF, 0)
        above = _with_version(4, 0x8000_0000_0000_0000, 0)

        assert [below, above] == _sort_order(above, below)

    def test_lower_half_compares_unsigned(self) -> None:
        """A lower half starting 0x80 sorts after one starting 0x7f."""
        below = _with_version(4, 0, 0x7FFF_FFFF_FFFF_FFFF)
        above = _with_version(4, 0, 0x8000_0000_0000_0000)

        assert [below, above] == _sort_order(above, below)

    def test_upper_half_outranks_lower_half(self) -> None:
        """The lower half only breaks ties."""
        first = _with_version(4, 0, _LONG - 1)
        second = _with_version(4, 1 << 16, 0)

        assert [first, second] == _sort_order(second, first)


class TestFromBytes:
    """Keys from serialized cells agree with keys from ``uuid.UUID``."""

    def test_empty_value_sorts_first(self) -> None:
        """Cassandra puts an empty ``uuid`` value before every UUID."""
        assert uuid_order_key_from_bytes(b"") < uuid_order_key(uuid.UUID(int=0))

    @pytest.mark.parametrize("size", [1, 15, 17])
    def test_other_sizes_are_rejected(self, size: int) -> None:
        """Only 16-byte and empty values are UUIDs."""
        with pytest.raises(ValueError, match=f"got {size} bytes"):
            uuid_order_key_from_bytes(bytes(size))


_versions = st.one_of(st.sampled_from([1, 4]), st.integers(0, 15))
_halves = st.one_of(
    st.sampled_from([0, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, _LONG - 1]),
    st.integers(0, _LONG - 1),
)
uuids = st.builds(_with_version, _versions, _halves, _halves) | st.uuids()


class TestAgainstReference:
    """The key orders exactly like a direct transcription of the Java comparator."""

    @settings(deadline=None, max_examples=examples(300))
    @given(uuids, uuids)
    def test_pairs_compare_alike(self, left: uuid.UUID, right: uuid.UUID) -> None:
        """Comparing keys gives the reference's sign, in both directions."""
        expected = reference_compare(left, right)

        assert expected == -reference_compare(right, left)
        assert expected == _compare(uuid_order_key(left), uuid_order_key(right))

    @settings(deadline=None, max_examples=examples(200))
    @given(st.lists(uuids, max_size=20))
    def test_sorting_by_key_matches_the_reference(self, values: list[uuid.UUID]) -> None:
        """Sorting by the key is sorting with the reference comparator."""
        expected = sorted(values, key=functools.cmp_to_key(reference_compare))

        assert expected == sorted(values, key=uuid_order_key)

    @settings(deadline=None, max_examples=examples(200))
    @given(uuids)
    def test_bytes_and_uuid_keys_agree(self, value: uuid.UUID) -> None:
        """The serialized form gives the same key."""
        assert uuid_order_key(value) == uuid_order_key_from_bytes(value.bytes)

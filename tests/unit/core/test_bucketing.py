"""Tests for bucket hashing and UTC day arithmetic."""

import collections
import datetime
import itertools
import random
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from readings_service.core.bucketing import (
    MS_PER_DAY,
    bucket_hash,
    bucket_of,
    day_bounds_ms,
    day_of,
    days_between,
)
from readings_service.core.timestamps import MAX_TS_MS, MIN_TS_MS

# Computed once and cross-checked with coreutils (`xxd -r -p | b2sum -l 64`).
# Stored readings are partitioned by these values: they must never change.
GOLDEN = [
    # (device id, raw 64-bit hash, bucket of 16, bucket of 64)
    ("00000000-0000-0000-0000-000000000000", 0x5250A507F994740E, 14, 14),
    ("ffffffff-ffff-ffff-ffff-ffffffffffff", 0xF56935CF5CB88727, 7, 39),
    ("123e4567-e89b-12d3-a456-426614174000", 0xCC0A31F635A6EA5D, 13, 29),
    ("6ba7b810-9dad-11d1-80b4-00c04fd430c8", 0xE9CEEE50CC048F58, 8, 24),
    ("6ba7b811-9dad-11d1-80b4-00c04fd430c8", 0x4EB3FB0F34786E50, 0, 16),
    ("f47ac10b-58cc-4372-a567-0e02b2c3d479", 0x6FAB732B785E5B83, 3, 3),
    ("0190f3b2-7c3a-7d4e-9f10-3c1d2b4a5e6f", 0xF7188336A0D8A8EC, 12, 44),
    ("0190f3b2-7c3b-7d4e-9f10-3c1d2b4a5e6f", 0x46F216E5A227A2E0, 0, 32),
    ("00000000-0000-0000-0000-000000000001", 0xBE28C32B13FEBF82, 2, 2),
    ("c232ab00-9414-11ec-b3c8-9f6bdeced846", 0xEB86A1A17BFEE7EE, 14, 46),
]

BUCKETS = 16
SAMPLE = 10_000
# Chi-square with 15 degrees of freedom exceeds 37.7 with probability 0.001.
CHI_SQUARE_LIMIT = 37.7

NODE = 0x0242AC110002
CLOCK_SEQ = 0x1A2B
# 2026-11-21T00:00:00Z in 100 ns ticks since 1582-10-15, the UUID v1 epoch.
V1_START = (1_795_219_200 * 10_000_000) + 0x01B21DD213814000


def uuid1_at(timestamp: int, clock_seq: int, node: int) -> uuid.UUID:
    """The UUID v1 that `uuid.uuid1(node, clock_seq)` makes at a given 100 ns timestamp."""
    return uuid.UUID(
        fields=(
            timestamp & 0xFFFFFFFF,
            (timestamp >> 32) & 0xFFFF,
            (timestamp >> 48) & 0x0FFF,
            (clock_seq >> 8) & 0x3F,
            clock_seq & 0xFF,
            node,
        ),
        version=1,
    )


def uuid7_at(ts_ms: int, rng: random.Random) -> uuid.UUID:
    """A UUID v7 (RFC 9562): 48-bit epoch milliseconds, version 7, variant 10, random rest."""
    rand_a = rng.getrandbits(12)
    rand_b = rng.getrandbits(62)
    return uuid.UUID(int=(ts_ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)


def spread(device_ids: list[uuid.UUID]) -> list[int]:
    counts = collections.Counter(bucket_of(device_id, BUCKETS) for device_id in device_ids)
    return [counts[bucket] for bucket in range(BUCKETS)]


def chi_square(counts: list[int]) -> float:
    expected = sum(counts) / len(counts)
    return sum((count - expected) ** 2 / expected for count in counts)


class TestBucketHash:
    """The bucket hash is pinned forever by golden vectors."""

    @pytest.mark.parametrize(("device_id", "raw", "of_16", "of_64"), GOLDEN)
    def test_golden_vectors(self, device_id: str, raw: int, of_16: int, of_64: int) -> None:
        """Hash and buckets of fixed ids never change."""
        parsed = uuid.UUID(device_id)

        assert (raw, of_16, of_64) == (bucket_hash(parsed), bucket_of(parsed, 16), bucket_of(parsed, 64))

    def test_bucket_is_hash_modulo_count(self) -> None:
        """bucket_of reduces bucket_hash, for any bucket count."""
        device_id = uuid.UUID(GOLDEN[2][0])

        assert [GOLDEN[2][1] % n for n in range(1, 100)] == [bucket_of(device_id, n) for n in range(1, 100)]

    def test_one_bucket(self) -> None:
        """With a single bucket every device is in bucket 0."""
        expected = {0}

        assert expected == {bucket_of(uuid.uuid4(), 1) for _ in range(10)}

    @pytest.mark.parametrize("buckets", [0, -1])
    def test_rejects_non_positive_count(self, buckets: int) -> None:
        """A bucket count below one is a programming error."""
        with pytest.raises(ValueError, match="at least 1"):
            bucket_of(uuid.uuid4(), buckets)


class TestBucketSpread:
    """Real-world ids spread evenly over buckets."""

    def assert_even(self, device_ids: list[uuid.UUID]) -> None:
        assert len(set(device_ids)) == len(device_ids), "the sample has duplicate ids"
        counts = spread(device_ids)
        mean = SAMPLE / BUCKETS

        assert chi_square(counts) < CHI_SQUARE_LIMIT, counts
        assert 0.85 * mean <= min(counts), counts
        assert max(counts) <= 1.15 * mean, counts

    def test_uuid1_helper_matches_stdlib(self) -> None:
        """The v1 helper builds exactly what uuid.uuid1 builds for one host."""
        made = uuid.uuid1(node=NODE, clock_seq=CLOCK_SEQ)

        assert made == uuid1_at(made.time, CLOCK_SEQ, NODE)

    @pytest.mark.parametrize("step", [1, 10_000], ids=["100ns", "1ms"])
    def test_uuid1_one_host(self, step: int) -> None:
        """v1 ids from one host, which differ only in their time fields."""
        self.assert_even([uuid1_at(V1_START + i * step, CLOCK_SEQ, NODE) for i in range(SAMPLE)])

    def test_uuid4(self) -> None:
        """Random v4 ids."""
        rng = random.Random(4)

        self.assert_even([uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(SAMPLE)])

    def test_uuid7(self) -> None:
        """v7 ids one millisecond apart, whose leading bytes barely change."""
        rng = random.Random(7)
        start_ms = 1_795_219_200_000
        device_ids = [uuid7_at(start_ms + i, rng) for i in range(SAMPLE)]

        assert {7} == {device_id.version for device_id in device_ids}
        self.assert_even(device_ids)


class TestDays:
    """UTC days of epoch milliseconds."""

    @pytest.mark.parametrize(
        ("ts_ms", "expected"),
        [
            (0, datetime.date(1970, 1, 1)),
            (MS_PER_DAY - 1, datetime.date(1970, 1, 1)),
            (MS_PER_DAY, datetime.date(1970, 1, 2)),
            (-1, datetime.date(1969, 12, 31)),
            (-MS_PER_DAY, datetime.date(1969, 12, 31)),
            (-MS_PER_DAY - 1, datetime.date(1969, 12, 30)),
            (1_795_229_916_120, datetime.date(2026, 11, 21)),
            (MIN_TS_MS, datetime.date(1, 1, 1)),
            (MAX_TS_MS, datetime.date(9999, 12, 31)),
        ],
    )
    def test_day_of(self, ts_ms: int, expected: datetime.date) -> None:
        """The day is the UTC date, floored for negative epoch times."""
        assert expected == day_of(ts_ms)

    def test_day_bounds(self) -> None:
        """Bounds are the half-open epoch millisecond range of the day."""
        expected = [(1_795_219_200_000, 1_795_305_600_000), (-MS_PER_DAY, 0)]

        assert expected == [
            day_bounds_ms(datetime.date(2026, 11, 21)),
            day_bounds_ms(datetime.date(1969, 12, 31)),
        ]

    @pytest.mark.parametrize(
        ("start_ms", "end_ms", "expected"),
        [
            (0, 0, []),
            (5, 4, []),
            (0, 1, [datetime.date(1970, 1, 1)]),
            (0, MS_PER_DAY, [datetime.date(1970, 1, 1)]),
            (0, MS_PER_DAY + 1, [datetime.date(1970, 1, 1), datetime.date(1970, 1, 2)]),
            (-1, 1, [datetime.date(1969, 12, 31), datetime.date(1970, 1, 1)]),
        ],
    )
    def test_days_between_examples(self, start_ms: int, end_ms: int, expected: list[datetime.date]) -> None:
        """The end is exclusive and an empty range touches no day."""
        assert expected == days_between(start_ms, end_ms)


timestamps = st.one_of(
    st.integers(min_value=MIN_TS_MS, max_value=MAX_TS_MS),
    # Exact midnights and their neighbours.
    st.tuples(
        st.integers(min_value=MIN_TS_MS // MS_PER_DAY + 1, max_value=MAX_TS_MS // MS_PER_DAY),
        st.integers(min_value=-1, max_value=1),
    ).map(lambda day_and_shift: day_and_shift[0] * MS_PER_DAY + day_and_shift[1]),
)


@st.composite
def ranges(draw: st.DrawFn) -> tuple[int, int]:
    """Ranges starting anywhere, spanning at most about forty days, often with an end near midnight.

    Empty and reversed ranges are included; the span is bounded to keep the day lists short.
    """
    start_ms = draw(timestamps)
    if draw(st.booleans()):
        end_ms = start_ms + draw(st.integers(min_value=-MS_PER_DAY, max_value=40 * MS_PER_DAY))
    else:
        # Midnights, and one millisecond either side, are where off-by-one errors live.
        midnight = (start_ms // MS_PER_DAY + draw(st.integers(min_value=0, max_value=40))) * MS_PER_DAY
        end_ms = midnight + draw(st.integers(min_value=-1, max_value=1))
    return start_ms, min(end_ms, MAX_TS_MS + 1)


class TestDaysBetweenProperties:
    """days_between covers a range with exactly the days that intersect it."""

    @given(timestamps)
    def test_day_bounds_contain_timestamp(self, ts_ms: int) -> None:
        """A timestamp lies within the bounds of its day."""
        start, end = day_bounds_ms(day_of(ts_ms))

        assert start <= ts_ms < end
        assert end - start == MS_PER_DAY

    @given(ranges())
    def test_days_intersect_range(self, bounds: tuple[int, int]) -> None:
        """Every day returned overlaps the range, and the range has no ms outside them."""
        start_ms, end_ms = bounds
        days = days_between(start_ms, end_ms)

        if start_ms >= end_ms:
            assert not days
            return
        assert day_of(start_ms) == days[0]
        assert day_of(end_ms - 1) == days[-1]
        assert [datetime.timedelta(days=1)] * (len(days) - 1) == [b - a for a, b in itertools.pairwise(days)]
        for day in days:
            day_start, day_end = day_bounds_ms(day)
            assert max(start_ms, day_start) < min(end_ms, day_end)
        assert day_bounds_ms(days[0])[0] <= start_ms
        assert end_ms <= day_bounds_ms(days[-1])[1]

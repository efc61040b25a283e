"""Tests for parsing API timestamps and formatting epoch milliseconds."""

import datetime
import enum

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from readings_service.core.bucketing import day_of
from readings_service.core.timestamps import (
    MAX_TS_MS,
    MIN_TS_MS,
    TimestampError,
    format_timestamp,
    parse_time_text,
    parse_timestamp,
)

TS_MS = 1_795_229_916_120
"""2026-11-21T02:58:36.120Z"""

WRONG_TYPE = "timestamp must be integer epoch milliseconds or an RFC 3339 string"

timestamps = st.integers(min_value=MIN_TS_MS, max_value=MAX_TS_MS)


class TestParseStrings:
    """RFC 3339 strings become epoch milliseconds UTC."""

    @pytest.mark.parametrize(
        "text",
        [
            "2026-11-21T02:58:36.120Z",
            "2026-11-21t02:58:36.120z",
            "2026-11-21 02:58:36.120Z",
            "2026-11-21T02:58:36.120+00:00",
            "2026-11-21T02:58:36.120-00:00",
            "2026-11-21T08:28:36.120+05:30",
            "2026-11-20T21:58:36.120-05:00",
            "2026-11-21T02:58:36.12Z",
            "2026-11-21T02:58:36.120999Z",
        ],
    )
    def test_same_instant(self, text: str) -> None:
        """Separators, offset spellings and offsets all denote the same instant."""
        expected = TS_MS

        assert expected == parse_timestamp(text)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2026-11-21T22:30:00-05:00", "2026-11-22T03:30:00.000Z"),
            ("2026-11-21T00:15:00-00:01", "2026-11-21T00:16:00.000Z"),
            ("2026-11-21T01:30:00+05:00", "2026-11-20T20:30:00.000Z"),
            ("2026-01-01T00:00:00+01:00", "2025-12-31T23:00:00.000Z"),
            ("2024-02-28T23:00:00-02:00", "2024-02-29T01:00:00.000Z"),
            ("2025-02-28T23:00:00-02:00", "2025-03-01T01:00:00.000Z"),
            ("1970-01-01T00:30:00+01:00", "1969-12-31T23:30:00.000Z"),
        ],
    )
    def test_offset_crossing_midnight(self, text: str, expected: str) -> None:
        """An offset can move the instant into the previous or the next UTC day."""
        assert expected == format_timestamp(parse_timestamp(text))

    def test_offset_decides_the_day(self) -> None:
        """The UTC day comes from the instant, not from the local date."""
        expected = [datetime.date(2026, 11, 22), datetime.date(2026, 11, 20)]

        assert expected == [
            day_of(parse_timestamp("2026-11-21T23:00:00-01:00")),
            day_of(parse_timestamp("2026-11-21T00:59:59.999+01:00")),
        ]

    @pytest.mark.parametrize(
        ("fraction", "expected"),
        [
            ("", 0),
            (".1", 100),
            (".12", 120),
            (".123", 123),
            (".1239", 123),
            (".12399", 123),
            (".123999", 123),
            (".1239999", 123),
            (".12399999", 123),
            (".123999999", 123),
            (".000999999", 0),
            ("." + "9" * 1000, 999),
        ],
    )
    def test_fraction_is_floored(self, fraction: str, expected: int) -> None:
        """Any number of fractional digits; those past the millisecond are dropped."""
        assert TS_MS - 120 + expected == parse_timestamp(f"2026-11-21T02:58:36{fraction}Z")

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("1969-12-31T23:59:59.999999999Z", -1),
            ("1969-12-31T23:59:59.9995Z", -1),
            ("1969-12-31T23:59:59.0009Z", -1000),
            ("1969-12-31T23:59:59Z", -1000),
            ("1970-01-01T00:00:00.0001Z", 0),
            ("0001-01-01T00:00:00.0009Z", MIN_TS_MS),
            ("9999-12-31T23:59:59.999999Z", MAX_TS_MS),
        ],
    )
    def test_fraction_floors_toward_the_past_before_epoch(self, text: str, expected: int) -> None:
        """Truncation goes toward the past for negative epoch times too, never toward zero."""
        assert expected == parse_timestamp(text)


class TestParseIntegers:
    """Integers are epoch milliseconds."""

    @pytest.mark.parametrize("value", [0, -1, TS_MS, MIN_TS_MS, MAX_TS_MS])
    def test_epoch_milliseconds(self, value: int) -> None:
        """The value is returned unchanged."""
        assert value == parse_timestamp(value)

    def test_int_subclass_becomes_int(self) -> None:
        """An int subclass other than bool is accepted and returned as a plain int."""

        class Millis(enum.IntEnum):
            EPOCH = 0

        parsed = parse_timestamp(Millis.EPOCH)

        assert (0, int) == (parsed, type(parsed))


class TestParseRejects:
    """Every rejection raises TimestampError with a message saying why."""

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (1.7e12, f"{WRONG_TYPE}, not a float (its unit would be ambiguous)"),
            (0.0, f"{WRONG_TYPE}, not a float (its unit would be ambiguous)"),
            (True, f"{WRONG_TYPE}, not a boolean"),
            (False, f"{WRONG_TYPE}, not a boolean"),
            (None, WRONG_TYPE),
            ([2026, 11, 21], WRONG_TYPE),
            ({"ts": 0}, WRONG_TYPE),
            (b"2026-11-21T02:58:36Z", WRONG_TYPE),
        ],
    )
    def test_wrong_type(self, value: object, expected: str) -> None:
        """Only integers and strings are timestamps; floats and booleans are named."""
        with pytest.raises(TimestampError) as raised:
            parse_timestamp(value)

        assert expected == str(raised.value)

    @pytest.mark.parametrize(
        "text",
        [
            "2026-11-21T02:58:36",
            "2026-11-21T02:58:36.120",
            "2026-11-21 02:58:36.123456789",
        ],
    )
    def test_no_offset(self, text: str) -> None:
        """A local time without offset is ambiguous."""
        expected = "timestamp has no UTC offset; ambiguous"

        with pytest.raises(TimestampError) as raised:
            parse_timestamp(text)

        assert expected == str(raised.value)

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "yesterday",
            "1795229916120",
            "-1",
            "2026-11-21",
            "2026-11-21T02:58Z",
            "2026-11-21T02:58:36.Z",
            "2026-11-21T02:58:36,120Z",
            "2026-11-21T2:58:36Z",
            "20261121T025836Z",
            "2026-11-21T02:58:36+0530",
            "2026-11-21T02:58:36+05",
            "2026-11-21T02:58:36UTC",
            "2026-11-21T02:58:36.120Z ",
            " 2026-11-21T02:58:36.120Z",
            "2026-11-21T02:58:36.120Z\n",
            "2026-11-21_02:58:36Z",
            "+2026-11-21T02:58:36Z",
            "12026-11-21T02:58:36Z",
            "\uff12\uff10\uff12\uff16-11-21T02:58:36Z",
            "2026-11-21T02:58:36.\uff11Z",
        ],
    )
    def test_not_rfc3339(self, text: str) -> None:
        """Other ISO 8601 forms, numeric strings, padding and non-ASCII digits are refused."""
        expected = "timestamp is not an RFC 3339 date-time"

        with pytest.raises(TimestampError) as raised:
            parse_timestamp(text)

        assert expected == str(raised.value)

    @pytest.mark.parametrize(
        "text",
        ["2026-02-30T00:00:00Z", "2025-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z"],
    )
    def test_invalid_date(self, text: str) -> None:
        """Dates must exist in the proleptic Gregorian calendar."""
        expected = "timestamp has an invalid calendar date"

        with pytest.raises(TimestampError) as raised:
            parse_timestamp(text)

        assert expected == str(raised.value)

    @pytest.mark.parametrize(
        "text",
        ["2026-11-21T24:00:00Z", "2026-11-21T23:60:00Z", "2026-11-21T23:59:61Z", "2026-11-21T99:00:00Z"],
    )
    def test_invalid_time_of_day(self, text: str) -> None:
        """Hour 24 and minutes or seconds past 59 are refused."""
        expected = "timestamp has an invalid time of day"

        with pytest.raises(TimestampError) as raised:
            parse_timestamp(text)

        assert expected == str(raised.value)

    @pytest.mark.parametrize("text", ["2016-12-31T23:59:60Z", "2016-12-31T23:59:60.500+00:00"])
    def test_leap_second(self, text: str) -> None:
        """Epoch milliseconds have no room for a leap second."""
        with pytest.raises(TimestampError, match="leap second"):
            parse_timestamp(text)

    @pytest.mark.parametrize("text", ["2026-11-21T02:58:36+24:00", "2026-11-21T02:58:36-05:60"])
    def test_invalid_offset(self, text: str) -> None:
        """Offsets are limited to 23:59 either way."""
        expected = "timestamp has an invalid UTC offset"

        with pytest.raises(TimestampError) as raised:
            parse_timestamp(text)

        assert expected == str(raised.value)

    @pytest.mark.parametrize(
        "value",
        [
            "0000-01-01T00:00:00Z",
            "0000-12-31T23:59:59.999Z",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:30:00-01:00",
            MIN_TS_MS - 1,
            MAX_TS_MS + 1,
            2**100,
            -(2**100),
        ],
    )
    def test_out_of_range(self, value: object) -> None:
        """Only instants in the UTC years 0001 to 9999 are accepted."""
        expected = "timestamp is out of range (years 0001 to 9999 UTC)"

        with pytest.raises(TimestampError) as raised:
            parse_timestamp(value)

        assert expected == str(raised.value)

    def test_is_a_value_error(self) -> None:
        """Callers that catch ValueError catch timestamp errors too."""
        with pytest.raises(ValueError, match="RFC 3339"):
            parse_timestamp("soon")


class TestFormat:
    """Epoch milliseconds become RFC 3339 UTC with three fractional digits."""

    @pytest.mark.parametrize(
        ("ts_ms", "expected"),
        [
            (0, "1970-01-01T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-1000, "1969-12-31T23:59:59.000Z"),
            (TS_MS, "2026-11-21T02:58:36.120Z"),
            (1_795_305_599_999, "2026-11-21T23:59:59.999Z"),
            (MIN_TS_MS, "0001-01-01T00:00:00.000Z"),
            (MAX_TS_MS, "9999-12-31T23:59:59.999Z"),
        ],
    )
    def test_examples(self, ts_ms: int, expected: str) -> None:
        """Year padded to four digits, always milliseconds, always `Z`."""
        assert expected == format_timestamp(ts_ms)

    @pytest.mark.parametrize("ts_ms", [MIN_TS_MS - 1, MAX_TS_MS + 1, 2**70])
    def test_out_of_range(self, ts_ms: int) -> None:
        """Instants outside the years 0001 to 9999 cannot be formatted."""
        with pytest.raises(TimestampError, match="out of range"):
            format_timestamp(ts_ms)

    @given(timestamps)
    def test_matches_stdlib(self, ts_ms: int) -> None:
        """The table-driven formatter agrees with datetime.isoformat."""
        instant = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=ts_ms)
        expected = instant.isoformat(timespec="milliseconds") + "Z"

        assert expected == format_timestamp(ts_ms)


class TestRoundTrip:
    """Formatting and parsing are inverse on the accepted range."""

    @given(timestamps)
    def test_parse_format(self, ts_ms: int) -> None:
        """Parsing a formatted timestamp gives back the same milliseconds."""
        assert ts_ms == parse_timestamp(format_timestamp(ts_ms))

    @given(timestamps)
    def test_format_parse_format(self, ts_ms: int) -> None:
        """Formatting is a fixed point of parse-then-format."""
        expected = format_timestamp(ts_ms)

        assert expected == format_timestamp(parse_timestamp(expected))

    @given(
        timestamps,
        st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
        st.text(alphabet="0123456789", max_size=6),
        st.sampled_from("Tt "),
    )
    def test_any_offset_and_extra_digits(self, ts_ms: int, minutes_east: int, extra: str, separator: str) -> None:
        """The same instant written in local time at any offset, with sub-millisecond digits, parses back."""
        local_ms = ts_ms + minutes_east * 60_000
        assume(MIN_TS_MS <= local_ms <= MAX_TS_MS)
        sign = "-" if minutes_east < 0 else "+"
        hours, minutes = divmod(abs(minutes_east), 60)
        local = format_timestamp(local_ms)[:-1].replace("T", separator)

        assert ts_ms == parse_timestamp(f"{local}{extra}{sign}{hours:02d}:{minutes:02d}")


class TestParseText:
    @pytest.mark.parametrize("raw", [str(MAX_TS_MS + 1), str(MIN_TS_MS - 1), "9999999999999999", "-9999999999999999"])
    def test_epoch_ms_out_of_range(self, raw: str) -> None:
        """Epoch ms text outside the years 0001-9999 is refused like any other out-of-range timestamp (it was
        not, and a query range ending there was a 500)."""
        with pytest.raises(TimestampError, match="out of range"):
            parse_time_text(raw)

    @pytest.mark.parametrize("value", [MIN_TS_MS, 0, TS_MS, MAX_TS_MS])
    def test_epoch_ms_in_range(self, value: int) -> None:
        assert value == parse_time_text(str(value))

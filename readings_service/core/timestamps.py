"""Reading timestamps: API input to epoch milliseconds, and epoch milliseconds to RFC 3339."""

from __future__ import annotations

import datetime
import functools
import re
import time
from dataclasses import dataclass

MIN_TS_MS = -62_135_596_800_000
"""0001-01-01T00:00:00.000Z, the earliest accepted instant."""
MAX_TS_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the latest accepted instant."""

MS_PER_DAY = 86_400_000
OLDEST_TS_MS = 946_684_800_000
"""2000-01-01T00:00:00Z, the default of ingest.oldest_ts."""
# An integer refused as epoch ms may be a count of another unit: (name, milliseconds per unit as a fraction).
_OTHER_UNITS = (("seconds", 1000, 1), ("microseconds", 1, 1000), ("nanoseconds", 1, 1_000_000))
_EPOCH_MS_TEXT = re.compile(r"-?[0-9]{1,16}")
# An unencoded '+' in a query string arrives as a space: "...T10:00:00 01:00" meant "+01:00".
_SPACE_OFFSET = re.compile(r"(.*[0-9]) ([0-9]{2}:[0-9]{2})")
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()

# RFC 3339 section 5.6 date-time, with the space separator its note allows. The
# offset is optional here only so that a missing one gets its own message. Only
# the first three fractional digits are captured: the rest are truncated.
_DATE_TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,3})[0-9]*)?([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)

# Table lookups instead of int() and format specs: this code runs once per reading.
_TWO_DIGITS = {f"{n:02d}": n for n in range(100)}
_MILLIS = {
    digits: int(digits.ljust(3, "0")) for width in (1, 2, 3) for digits in (f"{n:0{width}d}" for n in range(10**width))
}
_TWO_DIGIT_TEXT = tuple(f"{n:02d}" for n in range(60))
_THREE_DIGIT_TEXT = tuple(f"{n:03d}" for n in range(1000))

_WRONG_TYPE = "timestamp must be integer epoch milliseconds or an RFC 3339 string"
_OUT_OF_RANGE = "timestamp is out of range (years 0001 to 9999 UTC)"
OUT_OF_RANGE = _OUT_OF_RANGE
"""The message of the TimestampError that an instant outside the years 0001 to 9999 raises."""


class TimestampError(ValueError):
    """A timestamp that is neither integer epoch milliseconds nor an RFC 3339 string in range."""


def parse_time_text(raw: str) -> int:
    """Epoch ms of a timestamp given as text (a query string, a command line): integer epoch ms or RFC 3339.

    A `+` offset that arrived unencoded in a query string, and so as a space, is understood. Epoch ms must lie
    in the same years 0001 to 9999 as every other timestamp.
    """
    if _EPOCH_MS_TEXT.fullmatch(raw):
        return parse_timestamp(int(raw))
    fixed = _SPACE_OFFSET.fullmatch(raw)
    return parse_timestamp(f"{fixed[1]}+{fixed[2]}" if fixed else raw)


def latest_accepted_ms(max_future_skew_s: int, now_s: float | None = None) -> int:
    """The latest timestamp accepted now: the server clock plus the allowed skew, in epoch ms."""
    return int((time.time() if now_s is None else now_s) * 1000) + max_future_skew_s * 1000


@dataclass(frozen=True, slots=True)
class TimestampRules:
    """Which reading timestamps are accepted, as configured: `ingest.oldest_ts`, `ingest.max_future_skew_s` and
    `storage.retention_days` (0: kept forever)."""

    oldest_ms: int = OLDEST_TS_MS
    max_future_skew_s: int = 300
    retention_days: int = 0

    def limits(self, now_s: float | None = None) -> TimestampLimits:
        """The limits at `now_s` (the server clock by default)."""
        now_ms = int((time.time() if now_s is None else now_s) * 1000)
        retained_from_ms = now_ms - self.retention_days * MS_PER_DAY if self.retention_days else MIN_TS_MS
        return TimestampLimits(
            self.oldest_ms, now_ms + self.max_future_skew_s * 1000, retained_from_ms, self.retention_days
        )


@dataclass(frozen=True, slots=True)
class TimestampLimits:
    """The reading timestamps accepted at one moment, in epoch ms: from `oldest_ms` to `latest_ms`, both included.

    `oldest_ms` is `ingest.oldest_ts`: an earlier timestamp is taken for a client's mistake (a wrong unit, an
    unset clock) rather than data. `latest_ms` is the server clock plus the allowed skew. A reading before
    `retained_from_ms` would already have expired under `retention_days` (0: none expires).
    """

    oldest_ms: int
    latest_ms: int
    retained_from_ms: int = MIN_TS_MS
    retention_days: int = 0

    def likely_unit(self, value: int) -> tuple[str, int] | None:
        """The unit ("seconds", "microseconds", "nanoseconds") in which an integer refused as epoch milliseconds
        would be an accepted timestamp, and that timestamp in epoch ms; None if there is no such unit."""
        for unit, multiply, divide in _OTHER_UNITS:
            ts_ms = value * multiply // divide
            if self.oldest_ms <= ts_ms <= self.latest_ms:
                return unit, ts_ms
        return None


def parse_timestamp(value: object) -> int:
    """Epoch milliseconds of an API timestamp: integer epoch milliseconds or an RFC 3339 string.

    Strings need an explicit offset (`Z`, `+hh:mm`, `-hh:mm`; `-00:00` counts as
    UTC). Fractional seconds may have any number of digits; those finer than a
    millisecond are truncated toward the past, so a reading stays in the
    millisecond, and the UTC day, in which it happened. Floats are rejected
    because their unit (seconds or milliseconds) is ambiguous, and so are numeric
    strings. Only instants in the UTC years 0001 to 9999 are accepted. Leap
    seconds (`:60`) are rejected: epoch milliseconds cannot represent them.
    """
    if isinstance(value, str):
        return _parse_rfc3339(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not MIN_TS_MS <= value <= MAX_TS_MS:
            raise TimestampError(_OUT_OF_RANGE)
        return int(value)
    if isinstance(value, float):
        raise TimestampError(f"{_WRONG_TYPE}, not a float (its unit would be ambiguous)")
    if isinstance(value, bool):
        raise TimestampError(f"{_WRONG_TYPE}, not a boolean")
    raise TimestampError(_WRONG_TYPE)


def _parse_rfc3339(text: str) -> int:
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise TimestampError("timestamp is not an RFC 3339 date-time")
    date, hour, minute, second, fraction, offset = match.groups()
    if offset is None:
        raise TimestampError("timestamp has no UTC offset; ambiguous")
    days = _epoch_day(date)
    hours, minutes, seconds = _TWO_DIGITS[hour], _TWO_DIGITS[minute], _TWO_DIGITS[second]
    if seconds == 60:
        raise TimestampError("timestamp is a leap second, which epoch time cannot represent")
    if hours > 23 or minutes > 59 or seconds > 59:
        raise TimestampError("timestamp has an invalid time of day")
    if offset in ("Z", "z"):
        minutes_east = 0
    else:
        offset_hours, offset_minutes = _TWO_DIGITS[offset[1:3]], _TWO_DIGITS[offset[4:6]]
        if offset_hours > 23 or offset_minutes > 59:
            raise TimestampError("timestamp has an invalid UTC offset")
        minutes_east = offset_hours * 60 + offset_minutes
        if offset[0] == "-":
            minutes_east = -minutes_east
    # The fraction is added to whole seconds, so dropping its digits past the
    # millisecond floors the instant, for negative epoch times too.
    millis = _MILLIS[fraction] if fraction else 0
    ts_ms = (((days * 24 + hours) * 60 + minutes - minutes_east) * 60 + seconds) * 1000 + millis
    if not MIN_TS_MS <= ts_ms <= MAX_TS_MS:
        raise TimestampError(_OUT_OF_RANGE)
    return ts_ms


# The readings of one request, or the rows of one stream, fall on few distinct
# days, so the calendar work is cached per day; the cache cannot change a result.
@functools.lru_cache(maxsize=1024)
def _epoch_day(date: str) -> int:
    """Days since 1970-01-01 of a `YYYY-MM-DD` string of digits."""
    if date.startswith("0000"):
        raise TimestampError(_OUT_OF_RANGE)
    try:
        day = datetime.date(int(date[0:4]), int(date[5:7]), int(date[8:10]))
    except ValueError:
        raise TimestampError("timestamp has an invalid calendar date") from None
    return day.toordinal() - _EPOCH_ORDINAL


def format_timestamp(ts_ms: int) -> str:
    """RFC 3339 UTC form of epoch milliseconds, with exactly three fractional digits and `Z`."""
    days, millis = divmod(ts_ms, MS_PER_DAY)
    seconds, millis = divmod(millis, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{_date_text(days)}T{_TWO_DIGIT_TEXT[hours]}:{_TWO_DIGIT_TEXT[minutes]}"
        f":{_TWO_DIGIT_TEXT[seconds]}.{_THREE_DIGIT_TEXT[millis]}Z"
    )


@functools.lru_cache(maxsize=1024)  # per day, as for _epoch_day
def _date_text(days: int) -> str:
    """`YYYY-MM-DD` of a day counted from 1970-01-01."""
    try:
        return datetime.date.fromordinal(days + _EPOCH_ORDINAL).isoformat()
    except (ValueError, OverflowError):
        raise TimestampError(_OUT_OF_RANGE) from None

"""Tests for validating decoded JSON items into readings."""

import math
import uuid

import pytest

from readings_service.core.model import Problem, Reading, parse_reading, reading_to_json_dict
from readings_service.core.timestamps import OLDEST_TS_MS, TimestampLimits

DEVICE_ID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
TS = "2026-11-21T02:58:36.120Z"
TS_MS = 1_795_229_916_120
MAX_TS_MS = TS_MS + 60_000
LIMITS = TimestampLimits(OLDEST_TS_MS, MAX_TS_MS)
INDEX = 7


def item(**overrides: object) -> dict[str, object]:
    """A valid reading item with some fields replaced."""
    fields: dict[str, object] = {"device_id": DEVICE_ID, "ts": TS, "temperature": 21.5, "pressure": 1013}
    fields.update(overrides)
    return fields


def problems_of(value: object) -> list[Problem]:
    parsed = parse_reading(value, INDEX, limits=LIMITS)
    assert isinstance(parsed, list), parsed
    return parsed


class TestValidItems:
    """Valid items become readings."""

    def test_reading(self) -> None:
        """Every field is converted to its domain type."""
        expected = Reading(uuid.UUID(DEVICE_ID), TS_MS, 21.5, 1013.0)

        assert expected == parse_reading(item(), INDEX, limits=LIMITS)

    def test_integer_numbers_become_floats(self) -> None:
        """JSON integers are accepted for measurements and stored as floats."""
        parsed = parse_reading(item(temperature=-3, pressure=0), INDEX, limits=LIMITS)

        assert isinstance(parsed, Reading)
        assert [(-3.0, float), (0.0, float)] == [
            (parsed.temperature, type(parsed.temperature)),
            (parsed.pressure, type(parsed.pressure)),
        ]

    def test_uppercase_device_id_is_normalised(self) -> None:
        """Device ids are case-insensitive and come out lowercase."""
        parsed = parse_reading(item(device_id=DEVICE_ID.upper()), INDEX, limits=LIMITS)

        expected = DEVICE_ID

        assert isinstance(parsed, Reading)
        assert expected == reading_to_json_dict(parsed)["device_id"]

    def test_epoch_milliseconds(self) -> None:
        """`ts` may be integer epoch milliseconds."""
        expected = Reading(uuid.UUID(DEVICE_ID), TS_MS, 21.5, 1013.0)

        assert expected == parse_reading(item(ts=TS_MS), INDEX, limits=LIMITS)

    def test_timestamp_at_skew_limit(self) -> None:
        """A timestamp exactly at the limit is accepted."""
        parsed = parse_reading(item(ts=MAX_TS_MS), INDEX, limits=LIMITS)

        assert isinstance(parsed, Reading)

    @pytest.mark.parametrize("value", [1.7976931348623157e308, -1e-320, 0.0, -0.0])
    def test_extreme_finite_floats(self, value: float) -> None:
        """Any finite float is a measurement."""
        parsed = parse_reading(item(temperature=value), INDEX, limits=LIMITS)

        assert isinstance(parsed, Reading)
        assert value == parsed.temperature


class TestWholeItemProblems:
    """An item that is not an object gets one problem without a field."""

    @pytest.mark.parametrize(
        ("value", "type_name"),
        [
            ([], "an array"),
            ("reading", "a string"),
            (3, "a number"),
            (2.5, "a number"),
            (True, "a boolean"),
            (None, "null"),
        ],
    )
    def test_not_an_object(self, value: object, type_name: str) -> None:
        """The reason names the JSON type that was sent."""
        expected = [Problem(INDEX, None, f"item must be an object, not {type_name}")]

        assert expected == problems_of(value)


class TestFieldProblems:
    """Each bad field gets a problem naming it."""

    def test_unknown_field(self) -> None:
        """A misspelt field is refused rather than dropped, and the real one is missing."""
        fields = item(temprature=21.5)
        del fields["temperature"]
        expected = [
            Problem(INDEX, "temprature", "unknown field"),
            Problem(INDEX, "temperature", "missing field"),
        ]

        assert expected == problems_of(fields)

    def test_long_unknown_field_is_shortened(self) -> None:
        """Field names in problems are cut to about 60 characters."""
        expected = [Problem(INDEX, "x" * 57 + "...", "unknown field")]

        assert expected == problems_of(item(**{"x" * 500: 1}))

    def test_every_field_missing(self) -> None:
        """An empty object gets one problem per missing field, in field order."""
        expected = [Problem(INDEX, name, "missing field") for name in ("device_id", "ts", "temperature", "pressure")]

        assert expected == problems_of({})

    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            (42, "device_id must be a string, not a number"),
            (None, "device_id must be a string, not null"),
            ([DEVICE_ID], "device_id must be a string, not an array"),
            ("not-a-uuid", 'device_id is not a hyphenated UUID: "not-a-uuid"'),
            ("", 'device_id is not a hyphenated UUID: ""'),
            (
                DEVICE_ID.replace("-", ""),
                f'device_id is not a hyphenated UUID: "{DEVICE_ID.replace("-", "")}"',
            ),
            ("{" + DEVICE_ID + "}", f'device_id is not a hyphenated UUID: "{{{DEVICE_ID}}}"'),
            ("urn:uuid:" + DEVICE_ID, f'device_id is not a hyphenated UUID: "urn:uuid:{DEVICE_ID}"'),
            (DEVICE_ID + " ", f'device_id is not a hyphenated UUID: "{DEVICE_ID} "'),
            (DEVICE_ID[:-1] + "g", f'device_id is not a hyphenated UUID: "{DEVICE_ID[:-1]}g"'),
        ],
    )
    def test_bad_device_id(self, value: object, reason: str) -> None:
        """Only the 36-character hyphenated form is a device id."""
        expected = [Problem(INDEX, "device_id", reason)]

        assert expected == problems_of(item(device_id=value))

    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            (
                "2026-11-21T02:58:36",
                'timestamp has no UTC offset; ambiguous: "2026-11-21T02:58:36"',
            ),
            ("tomorrow", 'timestamp is not an RFC 3339 date-time: "tomorrow"'),
            (
                1.7e12,
                "timestamp must be integer epoch milliseconds or an RFC 3339 string,"
                " not a float (its unit would be ambiguous): 1700000000000.0",
            ),
            (
                True,
                "timestamp must be integer epoch milliseconds or an RFC 3339 string, not a boolean: true",
            ),
            (None, "timestamp must be integer epoch milliseconds or an RFC 3339 string: null"),
            ("2026-02-30T00:00:00Z", 'timestamp has an invalid calendar date: "2026-02-30T00:00:00Z"'),
            (
                "2016-12-31T23:59:60Z",
                'timestamp is a leap second, which epoch time cannot represent: "2016-12-31T23:59:60Z"',
            ),
            (-(10**15), "timestamp is out of range (years 0001 to 9999 UTC): -1000000000000000"),
            (MAX_TS_MS + 1, "timestamp is more than the allowed skew in the future"),
            ("2030-01-01T00:00:00Z", "timestamp is more than the allowed skew in the future"),
        ],
    )
    def test_bad_timestamp(self, value: object, reason: str) -> None:
        """The timestamp error is reported with the value that caused it."""
        expected = [Problem(INDEX, "ts", reason)]

        assert expected == problems_of(item(ts=value))

    def test_long_value_is_shortened(self) -> None:
        """Offending values are cut to about 60 characters."""
        expected = [Problem(INDEX, "ts", 'timestamp is not an RFC 3339 date-time: "' + "x" * 56 + "...")]

        assert expected == problems_of(item(ts="x" * 1000))

    @pytest.mark.parametrize("field", ["temperature", "pressure"])
    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            ("21.5", "{} must be a number, not a string"),
            (True, "{} must be a number, not a boolean"),
            (None, "{} must be a number, not null"),
            ({"celsius": 21.5}, "{} must be a number, not an object"),
            (math.nan, "{} must be finite, not NaN"),
            (math.inf, "{} must be finite, not Infinity"),
            (-math.inf, "{} must be finite, not -Infinity"),
            (10**400, "{} is out of float range: " + "1" + "0" * 56 + "..."),
            pytest.param(10**5000, "{} is out of float range: an integer too large to show", id="10**5000"),
        ],
    )
    def test_bad_measurement(self, field: str, value: object, reason: str) -> None:
        """Measurements are finite JSON numbers that fit a float."""
        expected = [Problem(INDEX, field, reason.format(field))]

        assert expected == problems_of(item(**{field: value}))


class TestTimestampTooOld:
    """Timestamps before ingest.oldest_ts are refused; a reason names the unit an integer was likely sent in."""

    def test_oldest_is_accepted(self) -> None:
        """ingest.oldest_ts itself is accepted, as integer and as text."""
        expected = Reading(uuid.UUID(DEVICE_ID), OLDEST_TS_MS, 21.5, 1013.0)

        assert expected == parse_reading(item(ts=OLDEST_TS_MS), INDEX, limits=LIMITS)
        assert expected == parse_reading(item(ts="2000-01-01T00:00:00Z"), INDEX, limits=LIMITS)

    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            (OLDEST_TS_MS - 1, "timestamp is before ingest.oldest_ts, 2000-01-01T00:00:00.000Z: 946684799999"),
            (0, "timestamp is before ingest.oldest_ts, 2000-01-01T00:00:00.000Z: 0"),
            (-1, "timestamp is before ingest.oldest_ts, 2000-01-01T00:00:00.000Z: -1"),
            (
                "1999-12-31T23:59:59.999Z",
                'timestamp is before ingest.oldest_ts, 2000-01-01T00:00:00.000Z: "1999-12-31T23:59:59.999Z"',
            ),
            (
                "1970-01-01T00:00:00+01:00",
                'timestamp is before ingest.oldest_ts, 2000-01-01T00:00:00.000Z: "1970-01-01T00:00:00+01:00"',
            ),
        ],
    )
    def test_before_oldest(self, value: object, reason: str) -> None:
        """An earlier timestamp, integer or text, is a problem of the ts field naming the limit and the value."""
        assert [Problem(INDEX, "ts", reason)] == problems_of(item(ts=value))

    def test_epoch_seconds(self) -> None:
        """An integer that reads as an accepted time in epoch seconds is called out as epoch seconds."""
        expected = [
            Problem(
                INDEX,
                "ts",
                (
                    "looks like epoch seconds; ts is epoch milliseconds (as seconds 1795168800 is"
                    " 2026-11-20T10:00:00.000Z, as milliseconds 1970-01-21T18:39:28.800Z)"
                ),
            )
        ]

        assert expected == problems_of(item(ts=1_795_168_800))

    @pytest.mark.parametrize(("unit", "value"), [("microseconds", TS_MS * 1000), ("nanoseconds", TS_MS * 10**6)])
    def test_finer_units(self, unit: str, value: int) -> None:
        """Epoch microseconds and nanoseconds, beyond the year 9999 as milliseconds, are named as such."""
        expected = [
            Problem(
                INDEX,
                "ts",
                (
                    f"looks like epoch {unit}; ts is epoch milliseconds (as {unit} {value} is"
                    f" {TS}, as milliseconds after the year 9999)"
                ),
            )
        ]

        assert expected == problems_of(item(ts=value))

    def test_seconds_in_the_future_get_no_guess(self) -> None:
        """Epoch seconds that would be beyond the allowed skew are not an accepted time in any unit."""
        too_late_s = MAX_TS_MS // 1000 + 1
        reason = f"timestamp is before ingest.oldest_ts, 2000-01-01T00:00:00.000Z: {too_late_s}"

        assert [Problem(INDEX, "ts", reason)] == problems_of(item(ts=too_late_s))

    def test_oldest_is_configurable(self) -> None:
        """Another oldest_ms moves the limit; 0 accepts 1970 and so has no unit to guess for small integers."""
        limits = TimestampLimits(0, MAX_TS_MS)

        assert Reading(uuid.UUID(DEVICE_ID), 1_795_168_800, 21.5, 1013.0) == parse_reading(
            item(ts=1_795_168_800), INDEX, limits=limits
        )
        assert [Problem(INDEX, "ts", "timestamp is before ingest.oldest_ts, 1970-01-01T00:00:00.000Z: -1")] == (
            parse_reading(item(ts=-1), INDEX, limits=limits)
        )


class TestRetention:
    """With a retention, readings that would already have expired are refused."""

    LIMITS = TimestampLimits(OLDEST_TS_MS, MAX_TS_MS, retained_from_ms=TS_MS - 30 * 86_400_000, retention_days=30)

    def test_within_retention(self) -> None:
        oldest_kept = TS_MS - 30 * 86_400_000
        assert isinstance(parse_reading(item(ts=oldest_kept), INDEX, limits=self.LIMITS), Reading)

    def test_older_than_retention(self) -> None:
        too_old = TS_MS - 30 * 86_400_000 - 1
        expected = [
            Problem(
                INDEX,
                "ts",
                (
                    "timestamp is more than storage.retention_days (30) days old, "
                    f"so the reading would expire at once: {too_old}"
                ),
            )
        ]

        assert expected == parse_reading(item(ts=too_old), INDEX, limits=self.LIMITS)

    def test_before_oldest_names_oldest_first(self) -> None:
        """A timestamp before ingest.oldest_ts is reported as such (with its unit guess), not as expired."""
        [problem] = problems_of_with(self.LIMITS, 1_795_168_800)
        assert problem.reason.startswith("looks like epoch seconds")


def problems_of_with(limits: TimestampLimits, ts: object) -> list[Problem]:
    parsed = parse_reading(item(ts=ts), INDEX, limits=limits)
    assert isinstance(parsed, list), parsed
    return parsed


class TestAllProblemsCollected:
    """Every problem of an item is reported at once."""

    def test_all_fields_bad(self) -> None:
        """Unknown, missing and invalid fields all appear, in a stable order."""
        fields = {"device_id": "nope", "ts": "2026-11-21T02:58:36", "temperature": math.nan, "colour": "red"}
        expected = [
            Problem(INDEX, "colour", "unknown field"),
            Problem(INDEX, "pressure", "missing field"),
            Problem(INDEX, "device_id", 'device_id is not a hyphenated UUID: "nope"'),
            Problem(INDEX, "ts", 'timestamp has no UTC offset; ambiguous: "2026-11-21T02:58:36"'),
            Problem(INDEX, "temperature", "temperature must be finite, not NaN"),
        ]

        assert expected == problems_of(fields)

    def test_unknown_field_alone_rejects_item(self) -> None:
        """Valid known fields do not make up for an extra one."""
        expected = [Problem(INDEX, "humidity", "unknown field")]

        assert expected == problems_of(item(humidity=40))


class TestProblem:
    """Problems serialise for the problem+json body."""

    def test_as_dict(self) -> None:
        """The keys are index, field and reason; a whole-item problem has a null field."""
        expected = [
            {"index": 3, "field": "ts", "reason": "missing field"},
            {"index": 4, "field": None, "reason": "item must be an object, not null"},
        ]

        assert expected == [
            Problem(3, "ts", "missing field").as_dict(),
            Problem(4, None, "item must be an object, not null").as_dict(),
        ]


class TestReadingToJson:
    """Readings serialise in their API form."""

    def test_json_dict(self) -> None:
        """Lowercase device id, RFC 3339 UTC timestamp with milliseconds, float measurements."""
        reading = Reading(uuid.UUID(DEVICE_ID.upper()), -1, -40.0, 1013.25)
        expected = {
            "device_id": DEVICE_ID,
            "ts": "1969-12-31T23:59:59.999Z",
            "temperature": -40.0,
            "pressure": 1013.25,
        }

        assert expected == reading_to_json_dict(reading)

    def test_round_trip(self) -> None:
        """A serialised reading parses back to the same reading."""
        reading = Reading(uuid.UUID(DEVICE_ID), TS_MS, 21.5, 1013.0)

        assert reading == parse_reading(reading_to_json_dict(reading), INDEX, limits=LIMITS)

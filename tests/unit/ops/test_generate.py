"""Synthetic readings: deterministic per seed, realistic bounds, mixed uuid versions, shared timestamps."""

from __future__ import annotations

import csv
import io
import itertools
from collections import Counter, defaultdict
from typing import ClassVar

import orjson
import pytest

from readings_service.core.model import Reading, parse_reading
from readings_service.core.timestamps import MIN_TS_MS, TimestampLimits
from readings_service.ops.generate import GenerateError, Plan, encode, generate, parse_duration

START_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
HOUR_MS = 3_600_000


def plan(**changes: object) -> Plan:
    fields: dict[str, object] = {
        "devices": 12,
        "start_ms": START_MS,
        "end_ms": START_MS + 6 * HOUR_MS,
        "interval_ms": 60_000,
        "seed": 3,
    }
    return Plan(**(fields | changes))  # type: ignore[arg-type]


def by_device(readings: list[Reading]) -> dict[object, list[Reading]]:
    devices: dict[object, list[Reading]] = defaultdict(list)
    for reading in readings:
        devices[reading.device_id].append(reading)
    return devices


class TestDeterminism:
    def test_same_seed_same_readings(self) -> None:
        """The output is a function of the plan."""
        assert list(generate(plan())) == list(generate(plan()))

    def test_other_seed_other_readings(self) -> None:
        """Another seed gives other devices and values."""
        assert list(generate(plan(seed=1))) != list(generate(plan(seed=2)))

    def test_later_end_only_appends(self) -> None:
        """Extending the range keeps every earlier reading as it was."""
        short = list(generate(plan(jitter_ms=5_000, shared=0.5)))
        longer = list(generate(plan(jitter_ms=5_000, shared=0.5, end_ms=START_MS + 9 * HOUR_MS)))
        assert short == longer[: len(short)]


class TestShape:
    def test_one_reading_per_device_and_interval_inside_the_range(self) -> None:
        """Every device reads once per interval, strictly increasing, within [start, end)."""
        readings = list(generate(plan(jitter_ms=20_000)))
        devices = by_device(readings)
        assert 12 == len(devices)
        for series in devices.values():
            times = [r.ts_ms for r in series]
            assert 360 == len(times)
            assert times == sorted(set(times))
            assert START_MS <= times[0]
            assert times[-1] < START_MS + 6 * HOUR_MS

    def test_values_are_bounded_random_walks(self) -> None:
        """Temperatures stay near each device's base, pressures in a plausible band; steps are small."""
        readings = list(generate(plan(interval_ms=10_000, end_ms=START_MS + 24 * HOUR_MS, devices=3)))
        for series in by_device(readings).values():
            temperatures = [r.temperature for r in series]
            assert max(temperatures) - min(temperatures) <= 20.0
            assert all(960.0 <= r.pressure <= 1050.0 for r in series)
            steps = [abs(b - a) for a, b in itertools.pairwise(temperatures)]
            assert max(steps) < 0.5
            assert len(set(temperatures)) > 100  # it does move

    def test_uuid_versions_are_mixed(self) -> None:
        """Device ids are versions 4, 1 and 7 in turn, with the RFC 4122 variant."""
        devices = list(by_device(list(generate(plan(devices=9)))))
        assert Counter({4: 3, 1: 3, 7: 3}) == Counter(d.version for d in devices)  # type: ignore[attr-defined]

    def test_shared_fraction_reports_on_the_grid(self) -> None:
        """With --shared-timestamps 0.5 half the devices share every grid timestamp; the others do not."""
        readings = list(generate(plan(shared=0.5, jitter_ms=10_000)))
        per_ts = Counter(r.ts_ms for r in readings)
        grid = range(START_MS, START_MS + 6 * HOUR_MS, 60_000)
        assert all(6 <= per_ts[ts] for ts in grid)
        assert 360 == sum(1 for count in per_ts.values() if count >= 6)

    def test_no_shared_timestamps_by_default(self) -> None:
        """Without the option every device keeps its own phase, so timestamps rarely coincide."""
        readings = list(generate(plan()))
        assert 10 > sum(1 for count in Counter(r.ts_ms for r in readings).values() if count > 1)

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"devices": 0}, "devices must be at least 1"),
            ({"end_ms": START_MS}, "end must be after start"),
            ({"jitter_ms": 60_000}, "jitter must be"),
            ({"shared": 1.5}, "fraction from 0 to 1"),
        ],
    )
    def test_bad_plans_are_refused(self, changes: dict[str, object], message: str) -> None:
        """Parameters that cannot work together name the problem."""
        with pytest.raises(GenerateError, match=message):
            list(generate(plan(**changes)))


class TestDuration:
    @pytest.mark.parametrize(
        ("text", "ms"), [("250ms", 250), ("10s", 10_000), ("5m", 300_000), ("1h", 3_600_000), ("2d", 172_800_000)]
    )
    def test_units(self, text: str, ms: int) -> None:
        """A number and a unit."""
        assert ms == parse_duration(text)

    @pytest.mark.parametrize("text", ["10", "1.5s", "s", "10 sec", "-1s"])
    def test_refused(self, text: str) -> None:
        """No unit, fractions and signs are refused."""
        with pytest.raises(GenerateError, match="is not a number followed by"):
            parse_duration(text)


class TestEncode:
    readings: ClassVar[list[Reading]] = list(generate(plan(devices=3, end_ms=START_MS + HOUR_MS)))

    def valid(self, items: list[object]) -> list[Reading]:
        parsed = [parse_reading(item, 0, limits=TimestampLimits(MIN_TS_MS, 2**62)) for item in items]
        assert all(isinstance(p, Reading) for p in parsed)
        return parsed  # type: ignore[return-value]

    def test_ndjson_round_trips_through_validation(self) -> None:
        """Every NDJSON line passes the API's validation and gives the same reading back."""
        body = b"".join(encode(self.readings, "ndjson", chunk_rows=7))
        assert self.readings == self.valid([orjson.loads(line) for line in body.splitlines()])

    def test_json_array(self) -> None:
        """The JSON form is one array of the same objects."""
        body = b"".join(encode(self.readings, "json", chunk_rows=7))
        assert self.readings == self.valid(orjson.loads(body))
        assert [] == orjson.loads(b"".join(encode([], "json")))

    def test_csv_with_header(self) -> None:
        """The CSV form has the header and one row per reading, floats in their shortest exact form."""
        text = b"".join(encode(self.readings, "csv", chunk_rows=7)).decode()
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(self.readings) == len(rows)
        assert [(str(r.device_id), r.temperature) for r in self.readings] == [
            (row["device_id"], float(row["temperature"])) for row in rows
        ]

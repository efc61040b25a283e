"""Synthetic readings for fixtures and load tests: bounded random walks per device, deterministic per seed."""

from __future__ import annotations

import math
import random
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson

from readings_service.core.model import Reading
from readings_service.core.timestamps import format_timestamp

FORMATS = ("ndjson", "json", "csv")
CSV_HEADER = b"device_id,ts,temperature,pressure\n"

_DURATION = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# Device ids cycle through these versions, so that data exercises Cassandra's uuid order (version first, v1 by
# its timestamp, then bytes).
_VERSIONS = (4, 1, 7)
_TEMPERATURE_SPAN = 10.0  # each device's temperature stays within ±10 °C of its own base
_PRESSURE_BOUNDS = (960.0, 1050.0)  # hPa


class GenerateError(ValueError):
    """Generation parameters that cannot work together; the message says which."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What to generate: `devices` readings every `interval_ms` in [start_ms, end_ms).

    `shared` is the fraction of devices that report exactly on the common grid `start + k·interval`, so they
    share timestamps; the others report at their own fixed phase plus up to `jitter_ms` per reading.
    """

    devices: int
    start_ms: int
    end_ms: int
    interval_ms: int
    seed: int = 0
    jitter_ms: int = 0
    shared: float = 0.0

    def check(self) -> None:
        """Raise GenerateError naming the first parameter that is out of range."""
        if self.devices < 1:
            raise GenerateError(f"devices must be at least 1, not {self.devices}")
        if self.interval_ms < 1:
            raise GenerateError("interval must be at least 1 ms")
        if self.end_ms <= self.start_ms:
            raise GenerateError("end must be after start (start is inclusive, end exclusive)")
        if not 0 <= self.jitter_ms < self.interval_ms:
            raise GenerateError("jitter must be 0 or more and shorter than the interval")
        if not 0.0 <= self.shared <= 1.0:
            raise GenerateError(f"shared timestamps must be a fraction from 0 to 1, not {self.shared}")

    @property
    def ticks(self) -> int:
        """Grid points in [start, end)."""
        return -(-(self.end_ms - self.start_ms) // self.interval_ms)


def parse_duration(text: str) -> int:
    """Milliseconds of a duration such as `250ms`, `10s`, `5m`, `1h` or `1d`."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise GenerateError(f"duration {text!r} is not a number followed by ms, s, m, h or d")
    return int(match[1]) * _UNIT_MS[match[2]]


def device_ids(count: int, rng: random.Random) -> list[uuid.UUID]:
    """`count` distinct device ids, versions 4, 1 and 7 in turn, drawn from `rng`."""
    ids: list[uuid.UUID] = []
    seen: set[uuid.UUID] = set()
    while len(ids) < count:
        version = _VERSIONS[len(ids) % len(_VERSIONS)]
        bits = rng.getrandbits(128)
        # Version nibble and RFC 4122 variant set by hand: uuid.UUID(version=7) needs Python 3.14.
        device = uuid.UUID(int=bits & ~(0xF << 76 | 0x3 << 62) | version << 76 | 0x2 << 62)
        if device not in seen:
            seen.add(device)
            ids.append(device)
    return ids


def generate(plan: Plan) -> Iterator[Reading]:
    """Every reading of the plan, grid point by grid point, devices in a fixed order within each.

    Each device's temperature and pressure are random walks reflected at fixed bounds, with steps growing with
    the square root of the interval. The output is a pure function of the plan: the same seed gives the same
    readings, and a later `end_ms` only appends.
    """
    plan.check()
    rng = random.Random(plan.seed)
    devices = device_ids(plan.devices, rng)
    aligned = set(rng.sample(range(plan.devices), round(plan.shared * plan.devices)))
    phases = [0 if d in aligned else rng.randrange(plan.interval_ms - plan.jitter_ms) for d in range(plan.devices)]
    bases = [rng.uniform(5.0, 30.0) for _ in devices]
    temperatures = [base + rng.uniform(-2.0, 2.0) for base in bases]
    pressures = [rng.uniform(995.0, 1030.0) for _ in devices]
    interval_s = plan.interval_ms / 1000
    temperature_step = min(0.5, 0.02 * math.sqrt(interval_s))
    pressure_step = min(1.0, 0.01 * math.sqrt(interval_s))
    low_p, high_p = _PRESSURE_BOUNDS
    gauss, randrange = rng.gauss, rng.randrange
    for tick in range(plan.ticks):
        grid_ms = plan.start_ms + tick * plan.interval_ms
        for d, device in enumerate(devices):
            temperature = _reflect(
                temperatures[d] + gauss(0.0, temperature_step),
                bases[d] - _TEMPERATURE_SPAN,
                bases[d] + _TEMPERATURE_SPAN,
            )
            pressure = _reflect(pressures[d] + gauss(0.0, pressure_step), low_p, high_p)
            temperatures[d], pressures[d] = temperature, pressure
            ts_ms = grid_ms + phases[d]
            if plan.jitter_ms and d not in aligned:
                ts_ms += randrange(plan.jitter_ms + 1)
            # The walk advances even for a reading past the end, so that a later end only appends.
            if ts_ms < plan.end_ms:
                yield Reading(device, ts_ms, round(temperature, 2), round(pressure, 2))


def _reflect(value: float, low: float, high: float) -> float:
    """The value mirrored back into [low, high] (steps are far smaller than the span)."""
    if value > high:
        value = 2 * high - value
    elif value < low:
        value = 2 * low - value
    return min(max(value, low), high)


def encode(readings: Iterable[Reading], fmt: str, chunk_rows: int = 2000) -> Iterator[bytes]:
    """The readings as NDJSON, a JSON array or CSV with a header, in chunks of about `chunk_rows` readings."""
    if fmt not in FORMATS:
        raise GenerateError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    line = _LINE_ENCODERS[fmt]
    if fmt == "csv":
        yield CSV_HEADER
    elif fmt == "json":
        yield b"["
    chunk: list[bytes] = []
    first = True
    for reading in readings:
        chunk.append(line(reading))
        if len(chunk) >= chunk_rows:
            yield _joined(chunk, fmt, first)
            first = False
            chunk = []
    if chunk:
        yield _joined(chunk, fmt, first)
    if fmt == "json":
        yield b"\n]\n"


def _joined(lines: list[bytes], fmt: str, first: bool) -> bytes:
    if fmt != "json":
        return b"".join(lines)
    body = b",\n".join(lines)
    return b"\n" + body if first else b",\n" + body


def _json_object(reading: Reading) -> bytes:
    return orjson.dumps(
        {
            "device_id": str(reading.device_id),
            "ts": format_timestamp(reading.ts_ms),
            "temperature": reading.temperature,
            "pressure": reading.pressure,
        }
    )


def _ndjson_line(reading: Reading) -> bytes:
    return _json_object(reading) + b"\n"


def _csv_line(reading: Reading) -> bytes:
    # repr() of a float is its shortest round-tripping form, as in JSON.
    text = f"{reading.device_id},{format_timestamp(reading.ts_ms)},{reading.temperature!r},{reading.pressure!r}\n"
    return text.encode()


_LINE_ENCODERS = {"ndjson": _ndjson_line, "json": _json_object, "csv": _csv_line}

"""A reading, and validation of one decoded JSON item into a reading or its problems."""

import json
import math
import re
import uuid
from dataclasses import dataclass

from readings_service.core.timestamps import (
    MAX_TS_MS,
    TimestampError,
    TimestampLimits,
    format_timestamp,
    parse_timestamp,
)

FIELDS = ("device_id", "ts", "temperature", "pressure")

_MAX_SHOWN = 60

# Only the canonical hyphenated form: braces, "urn:uuid:" and bare hex are
# refused so that one device has one spelling in requests (case aside).
_UUID_TEXT = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")

_JSON_TYPE_NAMES: dict[type, str] = {
    bool: "a boolean",
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    type(None): "null",
}


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement of one device; `ts_ms` is epoch milliseconds UTC."""

    device_id: uuid.UUID
    ts_ms: int
    temperature: float
    pressure: float


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with one item of a request; `field` is None when the whole item is wrong.

    `index` is whatever the caller counts items by: the position in a JSON array,
    or the line number in NDJSON.
    """

    index: int
    field: str | None
    reason: str

    def as_dict(self) -> dict[str, object]:
        """The problem as a JSON-ready object with keys `index`, `field` and `reason`."""
        return {"index": self.index, "field": self.field, "reason": self.reason}


def parse_reading(item: object, index: int, *, limits: TimestampLimits) -> Reading | list[Problem]:
    """A reading from one decoded JSON value, or every problem found in it.

    The value must be an object with exactly the keys `device_id`, `ts`,
    `temperature` and `pressure`: an unknown key is a problem rather than being
    ignored, so a misspelt field cannot silently drop data. Timestamps outside
    `limits` are refused; for an integer that would be accepted in another unit
    (epoch seconds, microseconds, nanoseconds) the reason names that unit.
    """
    if not isinstance(item, dict):
        return [Problem(index, None, f"item must be an object, not {_json_type(item)}")]
    problems = [Problem(index, _shorten(str(key)), "unknown field") for key in item if key not in FIELDS]
    problems.extend(Problem(index, name, "missing field") for name in FIELDS if name not in item)

    device_id: uuid.UUID | None = None
    if "device_id" in item:
        device_id = _parse_device_id(item["device_id"], index, problems)
    ts_ms: int | None = None
    if "ts" in item:
        ts_ms = _parse_ts(item["ts"], index, limits, problems)
    temperature: float | None = None
    if "temperature" in item:
        temperature = _parse_number(item["temperature"], "temperature", index, problems)
    pressure: float | None = None
    if "pressure" in item:
        pressure = _parse_number(item["pressure"], "pressure", index, problems)

    # A field is None only if a problem says why, so the None checks just narrow types.
    if problems or device_id is None or ts_ms is None or temperature is None or pressure is None:
        return problems
    return Reading(device_id, ts_ms, temperature, pressure)


def reading_to_json_dict(reading: Reading) -> dict[str, object]:
    """The reading in its API form: lowercase hyphenated device id and RFC 3339 UTC `ts`."""
    return {
        "device_id": str(reading.device_id),
        "ts": format_timestamp(reading.ts_ms),
        "temperature": reading.temperature,
        "pressure": reading.pressure,
    }


def _parse_device_id(value: object, index: int, problems: list[Problem]) -> uuid.UUID | None:
    if not isinstance(value, str):
        problems.append(Problem(index, "device_id", f"device_id must be a string, not {_json_type(value)}"))
        return None
    if _UUID_TEXT.fullmatch(value) is None:
        problems.append(Problem(index, "device_id", f"device_id is not a hyphenated UUID: {_show(value)}"))
        return None
    return uuid.UUID(value)


def _parse_ts(value: object, index: int, limits: TimestampLimits, problems: list[Problem]) -> int | None:
    try:
        ts_ms = parse_timestamp(value)
    except TimestampError as error:
        problems.append(Problem(index, "ts", _wrong_unit(value, limits) or f"{error}: {_show(value)}"))
        return None
    if ts_ms > limits.latest_ms:
        reason = "timestamp is more than the allowed skew in the future"
        problems.append(Problem(index, "ts", _wrong_unit(value, limits) or reason))
        return None
    if ts_ms < limits.oldest_ms:
        reason = f"timestamp is before ingest.oldest_ts, {format_timestamp(limits.oldest_ms)}: {_show(value)}"
        problems.append(Problem(index, "ts", _wrong_unit(value, limits) or reason))
        return None
    if ts_ms < limits.retained_from_ms:
        reason = (
            f"timestamp is more than storage.retention_days ({limits.retention_days}) days old, so the "
            f"reading would expire at once: {_show(value)}"
        )
        problems.append(Problem(index, "ts", reason))
        return None
    return ts_ms


def _wrong_unit(value: object, limits: TimestampLimits) -> str | None:
    """Why an integer refused as epoch ms is likely in another unit, or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    likely = limits.likely_unit(value)
    if likely is None:
        return None
    unit, ts_ms = likely
    as_ms = "after the year 9999" if value > MAX_TS_MS else format_timestamp(value)
    return (
        f"looks like epoch {unit}; ts is epoch milliseconds (as {unit} {_show(value)} is "
        f"{format_timestamp(ts_ms)}, as milliseconds {as_ms})"
    )


def _parse_number(value: object, field: str, index: int, problems: list[Problem]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(Problem(index, field, f"{field} must be a number, not {_json_type(value)}"))
        return None
    try:
        number = float(value)
    except OverflowError:
        problems.append(Problem(index, field, f"{field} is out of float range: {_show(value)}"))
        return None
    if not math.isfinite(number):
        problems.append(Problem(index, field, f"{field} must be finite, not {_show(value)}"))
        return None
    return number


def _json_type(value: object) -> str:
    """The JSON name of a value's type, for messages to API clients."""
    # bool is checked before int, its base class.
    for python_type, name in _JSON_TYPE_NAMES.items():
        if isinstance(value, python_type):
            return name
    return type(value).__name__


def _show(value: object) -> str:
    """A value as JSON, the way the client sent it, cut to about 60 characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # not JSON, or an int too long to convert to text
        text = "an integer too large to show" if isinstance(value, int) else repr(value)
    return _shorten(text)


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."

"""Query-string parameters of the read endpoints, validated into a RangeRequest before any query runs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from readings_service.core.ranges import RangeRequest
from readings_service.core.store import After
from readings_service.core.timestamps import MS_PER_DAY, TimestampError, parse_time_text
from readings_service.errors import BadRequest


def parse_time_param(name: str, raw: str) -> int:
    """Epoch ms of a query-string timestamp (RFC 3339 with offset, or integer epoch ms)."""
    try:
        return parse_time_text(raw)
    except TimestampError as error:
        raise BadRequest(f"parameter {name}={raw!r}: {error}", parameter=name) from None


def parse_after(raw: str) -> After:
    """The resume key `<ts>,<device_id>`, as a result line prints them."""
    ts_text, comma, device_text = raw.rpartition(",")
    if not comma:
        raise BadRequest(f"parameter after={raw!r} must be '<ts>,<device_id>'", parameter="after")
    try:
        device_id = uuid.UUID(device_text.strip())
    except ValueError:
        raise BadRequest(f"parameter after={raw!r}: {device_text!r} is not a UUID", parameter="after") from None
    return After(parse_time_param("after", ts_text.strip()), device_id)


def parse_limit(raw: str | None, max_limit: int) -> int | None:
    """A positive line limit, capped by max_limit when that is set."""
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:  # isdigit alone admits "²", which int() refuses
        raise BadRequest(f"parameter limit={raw!r} must be a positive integer", parameter="limit")
    limit = int(raw)
    if max_limit and limit > max_limit:
        raise BadRequest(f"parameter limit={limit} is over the maximum of {max_limit}", parameter="limit")
    return limit


def parse_range(params: Mapping[str, str], *, max_range_days: int, max_limit: int) -> RangeRequest:
    """Validate start, end, limit and after; raises BadRequest naming the parameter."""
    for name in ("start", "end"):
        if not params.get(name):
            raise BadRequest(f"parameter {name} is required", parameter=name)
    start_ms = parse_time_param("start", params["start"])
    end_ms = parse_time_param("end", params["end"])
    if start_ms >= end_ms:
        raise BadRequest("start must be before end (start is inclusive, end exclusive)", parameter="end")
    if end_ms - start_ms > max_range_days * MS_PER_DAY:
        raise BadRequest(f"the range is longer than the maximum of {max_range_days} days", parameter="end")
    after_raw = params.get("after")
    after = parse_after(after_raw) if after_raw else None
    return RangeRequest(start_ms, end_ms, parse_limit(params.get("limit"), max_limit), after)

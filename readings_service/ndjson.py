"""NDJSON lines of stored rows, in the POST body's field layout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from readings_service.store import StoredRow
from readings_service.timestamps import format_timestamp

_LINE = orjson.OPT_APPEND_NEWLINE


def row_object(row: StoredRow) -> dict[str, Any]:
    """One row as the API prints it: ts as RFC 3339 UTC with milliseconds, device_id lower-case."""
    ts_ms, device_id, temperature, pressure = row
    return {"device_id": device_id, "ts": format_timestamp(ts_ms), "temperature": temperature, "pressure": pressure}


def encode_rows(rows: Sequence[StoredRow]) -> bytes:
    """NDJSON bytes of rows, one line each."""
    dumps = orjson.dumps
    return b"".join([dumps(row_object(row), option=_LINE) for row in rows])


def encode_line(value: Any) -> bytes:
    """One NDJSON line of any JSON value."""
    return orjson.dumps(value, option=_LINE)

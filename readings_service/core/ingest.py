"""Turn a POST body into validated readings and per-item problems (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from readings_service.core.model import Problem, Reading, parse_reading
from readings_service.errors import BadRequest, TooLarge

JSON = "application/json"
NDJSON = "application/x-ndjson"
ACCEPTED_TYPES = (JSON, NDJSON)


@dataclass(frozen=True, slots=True)
class Batch:
    """What a body held: the valid readings and the problems of the invalid items."""

    readings: list[Reading]
    problems: list[Problem]
    items: int


def media_type(content_type: str) -> str:
    """The bare media type of a Content-Type header, lower-cased."""
    return content_type.split(";", 1)[0].strip().lower()


def decode_items(body: bytes, content_type: str) -> Iterator[tuple[int, object]]:
    """Yield (index, decoded item); index is the array position for JSON and the 1-based line for NDJSON.

    A body that is not JSON at all raises BadRequest; for NDJSON a bad line is that item's problem, so one
    corrupt line does not hide the others.
    """
    kind = media_type(content_type)
    if kind == JSON:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise BadRequest(f"body is not valid JSON: {error}") from None
        if isinstance(document, list):
            yield from enumerate(document)
        elif isinstance(document, dict):
            yield 0, document
        else:
            raise BadRequest("body must be a JSON object or an array of objects")
    elif kind == NDJSON:
        for number, line in enumerate(body.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                yield number, orjson.loads(line)
            except orjson.JSONDecodeError as error:
                yield number, _Unparseable(str(error))
    else:
        raise BadRequest(
            f"Content-Type {content_type or '(none)'} is not supported; use {JSON} or {NDJSON}",
            supported=list(ACCEPTED_TYPES),
        )


class _Unparseable:
    """Stands for an NDJSON line that is not JSON."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def parse_body(body: bytes, content_type: str, *, max_items: int, max_ts_ms: int) -> Batch:
    """Decode and validate a whole body; raises BadRequest or TooLarge for the body as a whole."""
    readings: list[Reading] = []
    problems: list[Problem] = []
    count = 0
    for index, item in decode_items(body, content_type):
        count += 1
        if count > max_items:
            raise TooLarge(f"more than {max_items} readings in one request", limit=max_items)
        if isinstance(item, _Unparseable):
            problems.append(Problem(index, None, f"line is not valid JSON: {item.reason}"))
            continue
        parsed = parse_reading(item, index, max_ts_ms=max_ts_ms)
        if isinstance(parsed, Reading):
            readings.append(parsed)
        else:
            problems.extend(parsed)
    if count == 0:
        raise BadRequest("body holds no readings")
    return Batch(readings, problems, count)

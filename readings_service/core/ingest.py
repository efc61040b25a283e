"""Turn a POST body into validated readings and per-item problems (pure: no I/O).

Memory is bounded before anything is decoded: decoding JSON creates Python objects many times the size of the
text (a 16 MiB array of `{}` becomes ~470 MiB), so a body that could hold more values than `max_items` readings
is refused unread (check_structure), and NDJSON lines are taken one at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from readings_service.core.model import Problem, Reading, parse_reading
from readings_service.core.timestamps import TimestampLimits
from readings_service.errors import BadRequest, TooLarge

JSON = "application/json"
NDJSON = "application/x-ndjson"
ACCEPTED_TYPES = (JSON, NDJSON)
# A request body as read: the buffer it was read into, not copied.
Body = bytes | bytearray

# A reading holds five of the bytes check_structure counts as JSON ({ and four commas) and four as NDJSON;
# the margin lets items with a few wrong fields still be reported one by one (422) rather than refused (413).
STRUCTURE_PER_ITEM = 16
# ASCII whitespace, what bytes.strip() removes: a line of nothing else is blank.
_BLANK = frozenset(b" \t\n\r\x0b\x0c")
_NOT_BLANK = re.compile(rb"[^ \t\n\r\x0b\x0c]")


@dataclass(frozen=True, slots=True)
class Batch:
    """What a body held: the valid readings and the problems of the invalid items."""

    readings: list[Reading]
    problems: list[Problem]
    items: int


def media_type(content_type: str) -> str:
    """The bare media type of a Content-Type header, lower-cased."""
    return content_type.split(";", 1)[0].strip().lower()


def check_structure(body: Body, max_items: int) -> None:
    """Refuse (TooLarge) a body with more commas and opening brackets than `max_items` readings have, undecoded.

    Every JSON value but the first of an array or object follows a comma, so a body decodes into at most about
    twice as many objects (values and keys) as it has `,`, `[` and `{`, and its strings into no more characters
    than it has bytes. Counting these bytes inside strings as well only errs towards refusing; the scans run in C,
    ~1-3 ms per MiB.
    """
    limit = max_items * STRUCTURE_PER_ITEM
    found = 0
    for byte in (b",", b"{", b"["):
        found += body.count(byte)
        if found > limit:
            raise TooLarge(
                f"more than {max_items} readings in one request: the body has over {limit} commas and brackets",
                limit=max_items,
            )


def ndjson_lines(body: Body) -> Iterator[tuple[int, memoryview]]:
    """Yield (1-based line number, line) for every line that is not blank, lazily and without copying.

    Equal to the non-blank lines of `enumerate(body.split(b"\\n"), start=1)`. A run of blank lines costs one
    regex search and one count, both in C, whatever its length.
    """
    view = memoryview(body)
    size = len(body)
    start = 0  # where line `number` begins
    number = 1
    while start < size:
        content = start
        if body[start] in _BLANK:
            found = _NOT_BLANK.search(body, start)
            if found is None:
                return
            content = found.start()
            skipped = body.count(b"\n", start, content)
            if skipped:
                number += skipped
                start = body.rfind(b"\n", start, content) + 1
        end = body.find(b"\n", content)
        if end == -1:
            end = size
        yield number, view[start:end]
        start = end + 1
        number += 1


def decode_items(body: Body, content_type: str) -> Iterator[tuple[int, object]]:
    """Yield (index, decoded item); index is the array position for JSON and the 1-based line for NDJSON.

    A body that is not JSON at all raises BadRequest; for NDJSON a bad line is that item's problem, so one
    corrupt line does not hide the others. NDJSON is decoded one line per item asked for.
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
        for number, line in ndjson_lines(body):
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


def parse_body(body: Body, content_type: str, *, max_items: int, limits: TimestampLimits) -> Batch:
    """Decode and validate a whole body; raises BadRequest or TooLarge for the body as a whole.

    CPU-bound: ~15 µs per reading, so callers run large bodies off the event loop.
    """
    check_structure(body, max_items)
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
        parsed = parse_reading(item, index, limits=limits)
        if isinstance(parsed, Reading):
            readings.append(parsed)
        else:
            problems.extend(parsed)
    if count == 0:
        raise BadRequest("body holds no readings")
    return Batch(readings, problems, count)

"""Input files of readings read incrementally: gzip detected by content, split into raw items by format.

Splitting (finding where each item starts and ends, and on which line) is kept apart from decoding an item, so
that resuming a load can skip millions of items without decoding them. Nothing here holds more than one chunk
plus one unfinished item in memory.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import os
import re
import stat
import sys
import zlib
from collections.abc import AsyncGenerator, Iterator
from typing import Protocol, cast

import orjson

from readings_service.core.model import FIELDS

STDIN = "-"
FORMATS = ("auto", "ndjson", "json", "csv")
CHUNK_BYTES = 1 << 20
MAX_ITEM_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"

RawItem = tuple[int, bytes]
"""One item as it appears in the input: (1-based line where it starts, its bytes)."""


class SourceError(Exception):
    """An input cannot be read as a whole (bad gzip, not a JSON array, no CSV header); names file and line."""


class UnreadableItem(ValueError):
    """One item that cannot be decoded into a JSON-like object; the message is the reason."""


def display_name(name: str) -> str:
    """How an input is named in messages: its path, or `<stdin>`."""
    return "<stdin>" if name == STDIN else name


class Splitter(Protocol):
    """Turns the chunks of one input into raw items, and decodes one raw item into what parse_reading takes."""

    def feed(self, data: bytes) -> list[RawItem]:
        """The items completed by `data` (the next bytes of the input)."""
        ...

    def end(self) -> list[RawItem]:
        """The items left when the input ends; raises SourceError if it ends inside one."""
        ...

    def decode(self, raw: bytes) -> object:
        """The item as a JSON-like value; raises UnreadableItem."""
        ...


class NdjsonSplitter:
    """One JSON value per line; blank lines are skipped but counted."""

    def __init__(self, name: str, max_item_bytes: int = MAX_ITEM_BYTES) -> None:
        self._name = name
        self._max = max_item_bytes
        self._rest = b""
        self._line = 0

    def feed(self, data: bytes) -> list[RawItem]:
        if self._rest:
            data = self._rest + data
        lines = data.split(b"\n")
        self._rest = lines.pop()
        if len(self._rest) > self._max:
            raise SourceError(f"{self._name}:{self._line + len(lines) + 1}: line is longer than {self._max} bytes")
        number = self._line
        items = []
        for line in lines:
            number += 1
            if line and not line.isspace():
                items.append((number, line[:-1] if line.endswith(b"\r") else line))
        self._line = number
        return items

    def end(self) -> list[RawItem]:
        rest, self._rest = self._rest, b""
        self._line += 1
        return [(self._line, rest.removesuffix(b"\r"))] if rest and not rest.isspace() else []

    def decode(self, raw: bytes) -> object:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise UnreadableItem(f"line is not valid JSON: {error}") from None


class CsvSplitter:
    """CSV whose first non-blank line is a header naming device_id, ts, temperature and pressure in any order.

    One record per line (readings have no field that needs a line break). `ts` made of digits becomes integer
    epoch milliseconds; anything else is passed on as an RFC 3339 string; temperature and pressure must be
    decimal numbers.
    """

    _NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
    _EPOCH_MS = re.compile(r"-?[0-9]+")

    def __init__(self, name: str, max_item_bytes: int = MAX_ITEM_BYTES) -> None:
        self._name = name
        self._lines = NdjsonSplitter(name, max_item_bytes)
        self._columns: tuple[str, ...] | None = None

    def feed(self, data: bytes) -> list[RawItem]:
        return self._rows(self._lines.feed(data))

    def end(self) -> list[RawItem]:
        rows = self._rows(self._lines.end())
        if self._columns is None:
            raise SourceError(f"{self._name}: no CSV header line ({','.join(FIELDS)})")
        return rows

    def _rows(self, lines: list[RawItem]) -> list[RawItem]:
        if self._columns is None and lines:
            number, header = lines[0]
            self._columns = self._header(number, header)
            return lines[1:]
        return lines

    def _header(self, number: int, raw: bytes) -> tuple[str, ...]:
        try:
            names = tuple(name.strip().lower() for name in self._fields(raw))
        except UnreadableItem as error:
            raise SourceError(f"{self._name}:{number}: CSV header: {error}") from None
        if sorted(names) != sorted(FIELDS):
            raise SourceError(
                f"{self._name}:{number}: the CSV header must name {', '.join(FIELDS)} once each, "
                f"not {','.join(names)!r}"
            )
        return names

    @staticmethod
    def _fields(raw: bytes) -> list[str]:
        try:
            text = raw.decode()
            return next(csv.reader((text,), strict=True))
        except (UnicodeDecodeError, csv.Error, StopIteration) as error:
            raise UnreadableItem(f"line is not valid CSV: {error}") from None

    def decode(self, raw: bytes) -> object:
        if self._columns is None:
            raise UnreadableItem("no CSV header")  # never happens: rows come after the header
        values = [value.strip() for value in self._fields(raw)]
        if len(values) != len(self._columns):
            raise UnreadableItem(f"row has {len(values)} fields, the header has {len(self._columns)}")
        item: dict[str, object] = dict(zip(self._columns, values, strict=True))
        problems = []
        ts = values[self._columns.index("ts")]
        if self._EPOCH_MS.fullmatch(ts):
            item["ts"] = int(ts)
        for name in ("temperature", "pressure"):
            text = item[name]
            assert isinstance(text, str)
            if self._NUMBER.fullmatch(text):
                item[name] = float(text)
            else:
                problems.append(f"{name} is not a number: {text!r}")
        if problems:
            raise UnreadableItem("; ".join(problems))
        return item


class JsonArraySplitter:
    """The elements of one top-level JSON array, found incrementally without decoding the whole array.

    A regular expression jumps from one structural character or complete string to the next, so the cost is per
    token, not per byte. Elements are decoded one by one, so a malformed element is that element's problem; input
    that is not an array, or that ends inside it, is an error of the input as a whole.
    """

    _TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|["\[\]{},]')
    # The common element, an object with no nested object or array, with the separator after it: one step.
    _FLAT = re.compile(rb'[ \t\r\n]*(\{[^{}\[\]"]*(?:"[^"\\]*(?:\\.[^"\\]*)*"[^{}\[\]"]*)*\})[ \t\r\n]*([,\]])')
    _BEFORE, _INSIDE, _AFTER = range(3)

    def __init__(self, name: str, max_item_bytes: int = MAX_ITEM_BYTES) -> None:
        self._name = name
        self._max = max_item_bytes
        self._state = self._BEFORE
        self._buffer = b""
        self._scan = 0  # where the next token search starts
        self._mark = 0  # inside: where the current element starts; outside: the first byte not checked blank
        self._depth = 0
        self._elements = 0
        self._line = 1  # the line number at buffer position `_counted`
        self._counted = 0

    def feed(self, data: bytes) -> list[RawItem]:
        buffer = self._buffer + data if self._buffer else data
        items: list[RawItem] = []
        position, self._scan = self._scan, len(buffer)
        while True:
            if self._depth == 1 and position == self._mark:
                flat = self._FLAT.match(buffer, position)
                if flat is not None:
                    self._elements += 1
                    items.append((self._line_at(buffer, flat.start(1)), flat[1]))
                    position = self._mark = flat.end()
                    if flat[2] == b"]":
                        self._depth, self._state = 0, self._AFTER
                    continue
            match = self._TOKEN.search(buffer, position)
            if match is None:
                break
            token, at, position = match[0], match.start(), match.end()
            if token == b'"':  # a string that is not complete yet: wait for more input
                self._scan = at
                break
            if self._state != self._INSIDE:
                self._outside_token(buffer, at, token)
                self._mark = position
            elif len(token) > 1:
                continue  # a complete string inside an element
            elif token in b"[{":
                self._depth += 1
            elif token in b"]}":
                self._depth -= 1
                if self._depth == 0:
                    self._emit(buffer, at, items, closing=True)
                    self._state = self._AFTER
                    self._mark = position
            elif self._depth == 1:  # a comma between elements
                self._emit(buffer, at, items, closing=False)
                self._mark = position
        if self._state != self._INSIDE:
            self._check_blank(buffer, self._mark, self._scan)
            self._mark = self._scan
        self._drop_before_mark(buffer)
        return items

    def end(self) -> list[RawItem]:
        if self._state == self._INSIDE:
            raise SourceError(
                f"{self._name}:{self._line_at(self._buffer, len(self._buffer))}: the input ends inside the JSON array"
            )
        self._check_blank(self._buffer, self._mark, len(self._buffer))
        return []

    def decode(self, raw: bytes) -> object:
        if not raw:
            raise UnreadableItem("empty array element")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise UnreadableItem(f"array element is not valid JSON: {error}") from None

    def _outside_token(self, buffer: bytes, at: int, token: bytes) -> None:
        self._check_blank(buffer, self._mark, at)
        if self._state == self._AFTER:
            raise SourceError(f"{self._name}:{self._line_at(buffer, at)}: data after the end of the JSON array")
        if token != b"[":
            raise SourceError(f"{self._name}:{self._line_at(buffer, at)}: the input is not a JSON array")
        self._state = self._INSIDE
        self._depth = 1

    def _check_blank(self, buffer: bytes, start: int, end: int) -> None:
        """Outside the array only whitespace may appear."""
        text = buffer[start:end]
        if text.strip(_WHITESPACE):
            where = self._line_at(buffer, start + len(text) - len(text.lstrip(_WHITESPACE)))
            what = "the input is not a JSON array" if self._state == self._BEFORE else "data after the end of it"
            raise SourceError(f"{self._name}:{where}: {what}")

    def _emit(self, buffer: bytes, end: int, items: list[RawItem], *, closing: bool) -> None:
        segment = buffer[self._mark : end]
        raw = segment.strip(_WHITESPACE)
        if not raw and closing and not self._elements:
            return  # `[]` has no elements
        self._elements += 1
        items.append((self._line_at(buffer, self._mark + len(segment) - len(segment.lstrip(_WHITESPACE))), raw))

    def _line_at(self, buffer: bytes, position: int) -> int:
        """The line number of a buffer position; positions asked about only ever increase."""
        self._line += buffer.count(b"\n", self._counted, position)
        self._counted = position
        return self._line

    def _drop_before_mark(self, buffer: bytes) -> None:
        cut = self._mark
        self._line_at(buffer, cut)
        self._buffer = buffer[cut:]
        self._counted = 0
        self._scan -= cut
        self._mark = 0
        if len(self._buffer) > self._max:
            raise SourceError(f"{self._name}:{self._line}: an array element is longer than {self._max} bytes")


def sniff_format(head: bytes) -> str:
    """The format of an input from its first bytes: `[` starts JSON, `{` NDJSON, anything else is CSV."""
    text = head.lstrip(_WHITESPACE)
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        return "ndjson"
    return "csv"


def splitter_for(fmt: str, name: str, max_item_bytes: int = MAX_ITEM_BYTES) -> Splitter:
    """A splitter of the (not `auto`) format for the input called `name`."""
    kinds: dict[str, type[NdjsonSplitter | CsvSplitter | JsonArraySplitter]] = {
        "ndjson": NdjsonSplitter,
        "csv": CsvSplitter,
        "json": JsonArraySplitter,
    }
    return kinds[fmt](name, max_item_bytes)


class _Counted(io.RawIOBase):
    """A binary stream that first returns `head` and counts every byte it hands out."""

    def __init__(self, stream: io.BufferedReader, head: bytes) -> None:
        super().__init__()
        self._stream = stream
        self._head = head
        self.count = len(head)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        head, self._head = self._head, b""
        # read1: what is there (at least a byte), rather than waiting on a pipe until the buffer is full.
        data = head + (self._stream.read1(len(buffer) - len(head)) if len(buffer) > len(head) else b"")
        buffer[: len(data)] = data
        self.count += len(data) - len(head)
        return len(data)


class InputFile:
    """One input opened for blocking chunked reads: a file path, or `-` for stdin; gzip is detected by content.

    `consumed` counts the bytes taken from the file itself (compressed, for gzip) and `size` is the file's size
    when it is a regular file, so that progress can be estimated from them.
    """

    def __init__(self, name: str, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.name = name
        self.display = display_name(name)
        self._chunk = chunk_bytes
        self._first = True
        self.size: int | None = None
        if name == STDIN:
            stream = cast(io.BufferedReader, sys.stdin.buffer)  # typed as BinaryIO, but a BufferedReader
            self._owned = False
        else:
            try:
                stream = open(name, "rb")  # noqa: SIM115 -- closed by close()
            except OSError as error:
                raise SourceError(f"{name}: cannot open: {error.strerror}") from None
            self._owned = True
            status = os.fstat(stream.fileno())
            if stat.S_ISREG(status.st_mode):
                self.size = status.st_size
        self._stream = stream
        head = b""
        while len(head) < len(GZIP_MAGIC):
            more = stream.read(len(GZIP_MAGIC) - len(head))
            if not more:
                break
            head += more
        self._counted = _Counted(stream, head)
        self._data: io.RawIOBase | gzip.GzipFile = self._counted
        if head == GZIP_MAGIC:
            self._data = gzip.GzipFile(fileobj=io.BufferedReader(self._counted, 256 * 1024), mode="rb")

    @property
    def consumed(self) -> int:
        return self._counted.count

    def read(self) -> bytes:
        """The next chunk of decompressed bytes (at most the chunk size), b"" at the end; blocking."""
        try:
            data = self._data.read(self._chunk) or b""
        except (OSError, EOFError, zlib.error) as error:
            raise SourceError(f"{self.display}: cannot decompress: {error}") from None
        if self._first:
            self._first = False
            data = data.removeprefix(_BOM)
        return data

    def close(self) -> None:
        if self._owned:
            self._stream.close()


async def read_items(
    source: InputFile, fmt: str, max_item_bytes: int = MAX_ITEM_BYTES
) -> AsyncGenerator[tuple[Splitter, list[RawItem]], None]:
    """The input's items chunk by chunk, each list with the splitter that decodes them.

    Chunks are read in a worker thread, so a slow pipe never blocks the event loop; splitting runs on the loop.
    """
    items = _Items(source, fmt, max_item_bytes)
    while (data := await asyncio.to_thread(source.read)) or not items.ended:
        found = items.take(data)
        if found:
            yield items.splitter, found


def iter_items(
    source: InputFile, fmt: str, max_item_bytes: int = MAX_ITEM_BYTES
) -> Iterator[tuple[Splitter, list[RawItem]]]:
    """Like `read_items`, with blocking reads: for a worker thread."""
    items = _Items(source, fmt, max_item_bytes)
    while (data := source.read()) or not items.ended:
        found = items.take(data)
        if found:
            yield items.splitter, found


class _Items:
    """Chooses the splitter from the first chunk (for `auto`) and feeds it; `ended` once the input is done."""

    def __init__(self, source: InputFile, fmt: str, max_item_bytes: int) -> None:
        self._source = source
        self._fmt = fmt
        self._max = max_item_bytes
        self._splitter: Splitter | None = None
        self._blank = b""  # leading whitespace, held until a character tells the format
        self.ended = False

    @property
    def splitter(self) -> Splitter:
        assert self._splitter is not None, "no chunk taken yet"
        return self._splitter

    def take(self, data: bytes) -> list[RawItem]:
        if self._splitter is None:
            if not data:
                self.ended = True
                return []
            if self._fmt == "auto" and data.isspace():
                self._blank += b"\n" * data.count(b"\n")  # only the line count matters
                return []
            data, self._blank = self._blank + data, b""
            fmt = sniff_format(data) if self._fmt == "auto" else self._fmt
            self._splitter = splitter_for(fmt, self._source.display, self._max)
        if not data:
            self.ended = True
            return self._splitter.end()
        return self._splitter.feed(data)

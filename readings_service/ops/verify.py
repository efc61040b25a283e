"""Check a fixture against the store: every reading stored with the same values, read back by range queries.

Memory stays bounded whatever the fixture's size: one pass validates the fixture (as `load` does) and spills each
reading as a 52-byte record into a temporary file per UTC day; then each day is compared in time windows of at
most `window_rows` readings (about 170 bytes each in memory), each against `range_chunks` over exactly that window.
Only readings that share one UTC minute cannot be split further.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import tempfile
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from readings_service.core.model import Problem, Reading, parse_reading, reading_to_json_dict
from readings_service.core.ranges import RangeRequest, range_chunks
from readings_service.core.store import ReadingStore
from readings_service.core.timestamps import MS_PER_DAY, TimestampRules, format_timestamp
from readings_service.ops.load import reason_of
from readings_service.ops.sources import InputFile, UnreadableItem, display_name, iter_items

# ts_ms, device_id bytes | temperature, pressure, input index, line. The first two fields are the key.
_RECORD = struct.Struct("<q16sddIQ")
_KEY = struct.Struct("<q16s")
_VALUE = struct.Struct("<ddIQ")
_MS_PER_MINUTE = 60_000
_OPEN_SPILL_FILES = 64


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A fixture reading that is not stored (`missing`) or stored with other values (`differs`)."""

    kind: str
    file: str
    line: int
    expected: Reading
    stored: tuple[float, float] | None = None

    def as_dict(self) -> dict[str, object]:
        document: dict[str, object] = {
            "kind": self.kind,
            "file": self.file,
            "line": self.line,
            "expected": reading_to_json_dict(self.expected),
        }
        if self.stored is not None:
            document["stored"] = {"temperature": self.stored[0], "pressure": self.stored[1]}
        return document

    def describe(self) -> str:
        reading = self.expected
        text = (
            f"{self.kind} {self.file}:{self.line} device {reading.device_id} at {format_timestamp(reading.ts_ms)}:"
            f" temperature {reading.temperature!r}, pressure {reading.pressure!r}"
        )
        if self.stored is not None:
            text += f"; stored {self.stored[0]!r}, {self.stored[1]!r}"
        return text


@dataclass(slots=True)
class VerifyCounts:
    """What a verification found; `ok` when no reading is missing or different."""

    items: int = 0
    invalid: int = 0
    readings: int = 0
    """Distinct (device_id, ts) among the valid items; for duplicates the later one is expected."""
    matched: int = 0
    missing: int = 0
    differing: int = 0
    other_stored: int = 0
    """Stored readings inside the fixture's windows that the fixture does not have (not an error)."""

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.differing == 0


@dataclass(slots=True)
class _Day:
    path: Path
    count: int = 0
    first_ms: int = 2**63
    last_ms: int = -(2**63)


async def verify(
    names: Sequence[str],
    store: ReadingStore,
    *,
    buckets: int,
    on_mismatch: Callable[[Mismatch], None],
    on_invalid: Callable[[str], None],
    fmt: str = "auto",
    window_rows: int = 250_000,
    timestamps: TimestampRules | None = None,
    spill_dir: Path | None = None,
) -> VerifyCounts:
    """Compare the fixture in `names` with the store; mismatches and invalid items are reported as found."""
    counts = VerifyCounts()
    displays = [display_name(name) for name in names]
    with tempfile.TemporaryDirectory(prefix="readings-verify-", dir=spill_dir) as directory:
        rules = timestamps or TimestampRules()
        days = await asyncio.to_thread(_spill, names, fmt, Path(directory), rules, counts, on_invalid)
        for day in sorted(days):
            for start_ms, end_ms in await asyncio.to_thread(_windows, day, days[day], window_rows):
                expected = await asyncio.to_thread(_expected, days[day].path, start_ms, end_ms)
                counts.readings += len(expected)
                await _compare(store, buckets, start_ms, end_ms, expected, displays, counts, on_mismatch)
    return counts


def _spill(
    names: Sequence[str],
    fmt: str,
    directory: Path,
    timestamps: TimestampRules,
    counts: VerifyCounts,
    on_invalid: Callable[[str], None],
) -> dict[int, _Day]:
    """Validate every item and append each reading's record to its UTC day's file (blocking)."""
    days: dict[int, _Day] = {}
    open_files: OrderedDict[int, BinaryIO] = OrderedDict()
    pack = _RECORD.pack
    try:
        for index, name in enumerate(names):
            source = InputFile(name)
            try:
                for splitter, items in iter_items(source, fmt):
                    limits = timestamps.limits()
                    for line, raw in items:
                        counts.items += 1
                        try:
                            parsed = parse_reading(splitter.decode(raw), line, limits=limits)
                        except UnreadableItem as error:
                            parsed = [Problem(line, None, str(error))]
                        if isinstance(parsed, Reading):
                            ts_ms = parsed.ts_ms
                            spill = _spill_file(ts_ms // MS_PER_DAY, days, open_files, directory)
                            spill.write(
                                pack(ts_ms, parsed.device_id.bytes, parsed.temperature, parsed.pressure, index, line)
                            )
                            day = days[ts_ms // MS_PER_DAY]
                            day.count += 1
                            day.first_ms, day.last_ms = min(day.first_ms, ts_ms), max(day.last_ms, ts_ms)
                        else:
                            counts.invalid += 1
                            on_invalid(f"{source.display}:{line}: {reason_of(parsed)}")
            finally:
                source.close()
    finally:
        for file in open_files.values():
            file.close()
    return days


def _spill_file(day: int, days: dict[int, _Day], open_files: OrderedDict[int, BinaryIO], directory: Path) -> BinaryIO:
    """The day's open spill file; the least recently used is closed when too many are open."""
    file = open_files.get(day)
    if file is not None:
        open_files.move_to_end(day)
        return file
    if day not in days:
        days[day] = _Day(directory / f"{day}.records")
    if len(open_files) >= _OPEN_SPILL_FILES:
        open_files.popitem(last=False)[1].close()
    file = open_files[day] = days[day].path.open("ab")
    return file


def _records(path: Path) -> Iterator[tuple[int, bytes, float, float, int, int]]:
    with path.open("rb") as file:
        while chunk := file.read(_RECORD.size * 16384):
            yield from _RECORD.iter_unpack(chunk)


def _windows(day: int, spilled: _Day, window_rows: int) -> list[tuple[int, int]]:
    """Half-open ms ranges covering the day's readings, each holding at most `window_rows` (or one minute).

    They span only from the day's first to its last reading, so that little else stored is read.
    """
    end_ms = spilled.last_ms + 1
    if spilled.count <= window_rows:
        return [(spilled.first_ms, end_ms)]
    day_start = day * MS_PER_DAY
    minutes = [0] * (MS_PER_DAY // _MS_PER_MINUTE)
    for record in _records(spilled.path):
        minutes[(record[0] - day_start) // _MS_PER_MINUTE] += 1
    windows: list[tuple[int, int]] = []
    start_ms, held = spilled.first_ms, 0
    for minute, count in enumerate(minutes):
        if held and held + count > window_rows:
            cut_ms = day_start + minute * _MS_PER_MINUTE
            windows.append((start_ms, cut_ms))
            start_ms, held = cut_ms, 0
        held += count
    windows.append((start_ms, end_ms))
    return windows


def _expected(path: Path, start_ms: int, end_ms: int) -> dict[bytes, bytes]:
    """The window's readings, key (ts, device) to value (temperature, pressure, input, line); later ones win."""
    expected: dict[bytes, bytes] = {}
    key_size = _KEY.size
    with path.open("rb") as file:
        while chunk := file.read(_RECORD.size * 16384):
            for offset in range(0, len(chunk), _RECORD.size):
                ts_ms = int.from_bytes(chunk[offset : offset + 8], "little", signed=True)
                if start_ms <= ts_ms < end_ms:
                    record = chunk[offset : offset + _RECORD.size]
                    expected[record[:key_size]] = record[key_size:]
    return expected


async def _compare(
    store: ReadingStore,
    buckets: int,
    start_ms: int,
    end_ms: int,
    expected: dict[bytes, bytes],
    displays: Sequence[str],
    counts: VerifyCounts,
    on_mismatch: Callable[[Mismatch], None],
) -> None:
    """Read the window back through the range-query path and settle every expected reading."""
    key = _KEY.pack
    request = RangeRequest(start_ms, end_ms, None, None)
    async with contextlib.aclosing(range_chunks(store, request, buckets, lookahead=0)) as chunks:
        async for chunk in chunks:
            for ts_ms, _, device_id, temperature, pressure in chunk:
                value = expected.pop(key(ts_ms, device_id.bytes), None)
                if value is None:
                    counts.other_stored += 1
                    continue
                want_t, want_p, index, line = _VALUE.unpack(value)
                if want_t == temperature and want_p == pressure:
                    counts.matched += 1
                else:
                    counts.differing += 1
                    on_mismatch(
                        Mismatch(
                            "differs",
                            displays[index],
                            line,
                            Reading(device_id, ts_ms, want_t, want_p),
                            (temperature, pressure),
                        )
                    )
    missing = []
    for key_bytes, value in expected.items():
        ts_ms, device_bytes = _KEY.unpack(key_bytes)
        want_t, want_p, index, line = _VALUE.unpack(value)
        missing.append((index, line, Reading(uuid.UUID(bytes=device_bytes), ts_ms, want_t, want_p)))
    for index, line, reading in sorted(missing, key=lambda m: (m[0], m[1])):
        counts.missing += 1
        on_mismatch(Mismatch("missing", displays[index], line, reading))

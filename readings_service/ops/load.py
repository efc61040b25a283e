"""Bulk load: read inputs incrementally, validate each item like the API does, write batches with a bound in flight.

The batches flow through one aiostream pipeline, `stream.amap(batches, write, ordered=True, task_limit=N)`: at
most N batches are being written (or wait, written, for an earlier one to be recorded), and they come out in input
order, each once acknowledged. Every write is an idempotent upsert, so resending a batch after an interruption
changes nothing; the checkpoint only ever records batches that were acknowledged, in input order, so a restart from
it loses nothing either.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson
from aiostream import stream

from readings_service.core.model import Problem, Reading, parse_reading
from readings_service.core.timestamps import TimestampLimits, TimestampRules
from readings_service.errors import StoreUnavailable
from readings_service.ops.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from readings_service.ops.progress import Counts, LoadProgress
from readings_service.ops.sources import CHUNK_BYTES, STDIN, InputFile, SourceError, UnreadableItem, read_items

# Bad lines shown as notes; the rest are only in the rejects file.
SHOWN_REJECTS = 10
# Items validated between two yields to the event loop, so that acknowledgements keep the driver busy.
_ITEMS_PER_YIELD = 256


class LoadError(Exception):
    """The load cannot go on (inputs changed since the checkpoint, unusable checkpoint); says why."""


class ReadingSink(Protocol):
    """Where a load writes: the store itself, or a running service over HTTP."""

    async def write(self, readings: Sequence[Reading]) -> None:
        """Store every reading, returning only once all are acknowledged."""
        ...


@dataclass(frozen=True, slots=True)
class LoadOptions:
    rejects: Path
    fmt: str = "auto"
    batch_rows: int = 2000
    concurrency: int = 4
    strict: bool = False
    skip: int = 0
    checkpoint: Path | None = None
    timestamps: TimestampRules = field(default_factory=TimestampRules)
    retries: int = 3
    retry_delay_s: float = 1.0
    read_bytes: int = CHUNK_BYTES


@dataclass(frozen=True, slots=True)
class Rejected:
    """One item that was not loaded, with where it was and why."""

    file: str
    line: int
    reason: str
    raw: bytes

    def ndjson(self) -> bytes:
        """The rejects-file line: {"file", "line", "reason", "raw"}."""
        raw = self.raw.decode("utf-8", errors="replace")
        document = {"file": self.file, "line": self.line, "reason": self.reason, "raw": raw}
        return orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE)

    def describe(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class LoadResult:
    counts: Counts
    rejected_in_all: int
    """Rejected by this run and, when it resumed, by the runs before it."""
    rejects_path: Path | None
    stopped_at: Rejected | None = None
    """In strict mode, the bad item that stopped the load."""
    resumed_from: Checkpoint | None = None
    already_complete: bool = False


def default_rejects_path(names: Sequence[str]) -> Path:
    """`<first input>.rejects.ndjson`, or `load.rejects.ndjson` in the working directory for stdin."""
    first = names[0] if names else STDIN
    return Path("load.rejects.ndjson") if first == STDIN else Path(f"{first}.rejects.ndjson")


def input_keys(names: Sequence[str]) -> tuple[str, ...]:
    """The inputs as a checkpoint records them: absolute paths, and `-` for stdin."""
    return tuple(STDIN if name == STDIN else os.path.abspath(name) for name in names)


def reason_of(problems: list[Problem]) -> str:
    """One line for all of an item's problems."""
    return "; ".join(p.reason if p.field is None or p.field in p.reason else f"{p.field}: {p.reason}" for p in problems)


@dataclass(slots=True)
class _Batch:
    """Readings and rejects to record together; the position is that of the batch's last item."""

    readings: list[Reading] = field(default_factory=list)
    rejects: list[Rejected] = field(default_factory=list)
    file_index: int = 0
    line: int = 0
    rows: int = 0
    keys: set[tuple[uuid.UUID, int]] = field(default_factory=set)
    """The (device_id, ts) of its readings, once it is sent."""
    after: list[asyncio.Event] = field(default_factory=list)
    """The `settled` events of earlier batches still in flight that hold one of its keys."""
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when its write is over, acknowledged or not."""


class _Stop(Exception):
    """Strict mode met a bad item: stop reading."""


async def load(names: Sequence[str], sink: ReadingSink, options: LoadOptions, progress: LoadProgress) -> LoadResult:
    """Load every input in order into `sink`; see the module docstring for the guarantees."""
    inputs = input_keys(names)
    resume = read_checkpoint(options.checkpoint) if options.checkpoint else None
    if resume is not None and resume.inputs != inputs:
        raise LoadError(
            f"checkpoint {options.checkpoint} belongs to a load of {', '.join(resume.inputs)}; "
            "give the same inputs, or another checkpoint file"
        )
    loader = _Loader(names, inputs, sink, options, progress, resume)
    already_complete = resume is not None and resume.complete
    try:
        if not already_complete:
            await loader.run()
    finally:
        loader.close()
    return loader.result(already_complete=already_complete)


class _Loader:
    def __init__(
        self,
        names: Sequence[str],
        inputs: tuple[str, ...],
        sink: ReadingSink,
        options: LoadOptions,
        progress: LoadProgress,
        resume: Checkpoint | None,
    ) -> None:
        self._names = names
        self._sink = sink
        self._options = options
        self._progress = progress
        self._resume = resume
        self._to_skip = 0 if resume is not None else options.skip
        self._acked = resume or Checkpoint(inputs)
        self._counts = Counts()
        self._batch = _Batch()
        self._sent: list[_Batch] = []  # batches sent whose write may not be over yet
        self._rejects_file: BinaryIO | None = None
        self._rejects_bytes = resume.rejects_bytes if resume else 0
        self._stopped: Rejected | None = None
        self._resume_rows = 0  # items found at or before the resume position, to check the input is the same
        self._shown = 0
        self._limits = TimestampLimits(0, 0)
        self._done_bytes = 0
        self._sent_rows = self._acked.rows
        self._source_error: SourceError | None = None

    async def run(self) -> None:
        """Write every batch, recording each acknowledged one in input order.

        Leaving early (an error, cancellation) cancels the writes in flight; the checkpoint stays at the last
        batch recorded.
        """
        self._counts.total_bytes = _total_size(self._names)
        write: Any = self._write  # aiostream types the function as also taking *args (one per extra source)
        writes = stream.amap(self._batches(), write, ordered=True, task_limit=self._options.concurrency)
        async with writes.stream() as acknowledged:
            async for batch in acknowledged:
                self._acknowledge(batch)
        if self._source_error is not None:
            raise self._source_error
        if self._stopped is None:
            self._acked = replace(self._acked, complete=True)
            self._save_checkpoint()

    async def _batches(self) -> AsyncGenerator[_Batch, None]:
        """The inputs' batches in order, without the last unfinished one at a strict stop or an unreadable input.

        An unreadable input ends the batches rather than failing them, so that the batches before it land and are
        recorded; `run` raises its error afterwards.
        """
        try:
            for index, name in enumerate(self._names):
                source = await asyncio.to_thread(InputFile, name, self._options.read_bytes)
                try:
                    async with contextlib.aclosing(self._read(index, source)) as batches:
                        async for batch in batches:
                            yield batch
                finally:
                    self._done_bytes += source.consumed
                    source.close()
            self._check_resume_position()
            if (last := self._send()) is not None:
                yield last
        except _Stop:
            return
        except SourceError as error:
            self._source_error = error

    async def _read(self, index: int, source: InputFile) -> AsyncGenerator[_Batch, None]:
        async with contextlib.aclosing(read_items(source, self._options.fmt)) as chunks:
            async for splitter, items in chunks:
                self._counts.bytes_read = self._done_bytes + source.consumed
                self._limits = self._options.timestamps.limits()
                for count, (line, raw) in enumerate(items, start=1):
                    self._counts.rows_read += 1
                    if self._skipped(index, line):
                        continue
                    try:
                        item = splitter.decode(raw)
                    except UnreadableItem as error:
                        self._reject(Rejected(source.display, line, str(error), raw))
                    else:
                        parsed = parse_reading(item, line, limits=self._limits)
                        if isinstance(parsed, Reading):
                            self._batch.readings.append(parsed)
                        else:
                            self._reject(Rejected(source.display, line, reason_of(parsed), raw))
                    self._batch.file_index, self._batch.line = index, line
                    self._batch.rows += 1
                    if len(self._batch.readings) >= self._options.batch_rows:
                        if (batch := self._send()) is not None:
                            yield batch
                    elif count % _ITEMS_PER_YIELD == 0:
                        await asyncio.sleep(0)
                self._progress.update(self._counts)

    def _skipped(self, index: int, line: int) -> bool:
        """Whether an item is passed over: before the checkpoint's position, or among the first --skip items."""
        if self._resume is not None and self._resume_rows >= 0:
            if self._resume.passed(index, line):
                self._resume_rows += 1
                self._counts.skipped += 1
                return True
            self._check_resume_position()
        if self._to_skip:
            self._to_skip -= 1
            self._counts.skipped += 1
            self._batch.file_index, self._batch.line = index, line
            self._batch.rows += 1
            return True
        return False

    def _check_resume_position(self) -> None:
        """Once past the checkpoint's position, as many items must lie before it as when it was written."""
        resume = self._resume
        if resume is None or self._resume_rows < 0:
            return
        if self._resume_rows != resume.rows:
            raise LoadError(
                f"the inputs differ from when the checkpoint was written: {self._resume_rows} rows up to "
                f"{resume.describe()} now; delete {self._options.checkpoint} to load them from the start"
            )
        self._resume_rows = -1  # checked
        self._batch.file_index, self._batch.line, self._batch.rows = resume.file_index, resume.line, resume.rows

    def _reject(self, rejected: Rejected) -> None:
        self._counts.rejected += 1
        if self._options.strict:
            self._stopped = rejected
            raise _Stop
        if self._shown < SHOWN_REJECTS:
            self._shown += 1
            self._progress.note(f"rejected {rejected.describe()}")
            if self._shown == SHOWN_REJECTS:
                self._progress.note(f"further rejects are only listed in {self._options.rejects}")
        self._batch.rejects.append(rejected)

    def _send(self) -> _Batch | None:
        """The current batch, made ready to write, and a new one begun; None if nothing was read since the last.

        A batch holding a (device_id, ts) that is also in an earlier batch still in flight will wait for that one:
        batches in flight may be written in any order, and the later reading of the input must win.
        """
        batch = self._batch
        self._batch = _Batch(file_index=batch.file_index, line=batch.line, rows=batch.rows)
        if batch.rows == self._sent_rows:
            return None
        self._sent_rows = batch.rows
        batch.keys = {(reading.device_id, reading.ts_ms) for reading in batch.readings}
        self._sent = [earlier for earlier in self._sent if not earlier.settled.is_set()]
        batch.after = [earlier.settled for earlier in self._sent if not batch.keys.isdisjoint(earlier.keys)]
        self._sent.append(batch)
        return batch

    async def _write(self, batch: _Batch) -> _Batch:
        """Write one batch once the earlier batches it waits for are over; returns it when acknowledged."""
        try:
            for earlier in batch.after:
                await earlier.wait()
            if batch.readings:  # a batch of rejected or skipped items only moves the checkpoint
                await self._write_with_retries(batch.readings)
        finally:
            batch.settled.set()
        return batch

    async def _write_with_retries(self, readings: list[Reading]) -> None:
        delay = self._options.retry_delay_s
        for attempt in range(self._options.retries + 1):
            try:
                await self._sink.write(readings)
                return
            except StoreUnavailable as error:
                if attempt == self._options.retries:
                    raise
                self._progress.note(f"write failed ({error.detail}); retrying in {delay:g} s (idempotent)")
                await asyncio.sleep(delay)
                delay *= 2

    def _acknowledge(self, batch: _Batch) -> None:
        """Record a landed batch: its rejects first, then the checkpoint that covers them."""
        if batch.rejects:
            rejects = self._open_rejects()
            rejects.write(b"".join(rejected.ndjson() for rejected in batch.rejects))
            rejects.flush()
            self._rejects_bytes = rejects.tell()
        self._counts.written += len(batch.readings)
        self._acked = replace(
            self._acked,
            file_index=batch.file_index,
            line=batch.line,
            rows=batch.rows,
            written=self._acked.written + len(batch.readings),
            rejected=self._acked.rejected + len(batch.rejects),
            rejects_bytes=self._rejects_bytes,
        )
        self._save_checkpoint()
        self._progress.update(self._counts)

    def _open_rejects(self) -> BinaryIO:
        if self._rejects_file is None:
            path = self._options.rejects
            if self._resume is not None and path.exists():
                # Keep the rejects of acknowledged batches; drop any a lost batch left behind.
                self._rejects_file = path.open("r+b")
                self._rejects_file.truncate(self._resume.rejects_bytes)
                self._rejects_file.seek(self._resume.rejects_bytes)
            else:
                self._rejects_file = path.open("wb")
        return self._rejects_file

    def _save_checkpoint(self) -> None:
        if self._options.checkpoint is not None:
            write_checkpoint(self._options.checkpoint, self._acked)

    def close(self) -> None:
        if self._rejects_file is not None:
            self._rejects_file.close()
        self._progress.close(self._counts)

    def result(self, *, already_complete: bool = False) -> LoadResult:
        rejected_in_all = self._acked.rejected + (1 if self._stopped else 0)
        wrote_rejects = self._rejects_file is not None or (self._resume is not None and self._resume.rejected > 0)
        return LoadResult(
            counts=self._counts,
            rejected_in_all=rejected_in_all,
            rejects_path=self._options.rejects if wrote_rejects else None,
            stopped_at=self._stopped,
            resumed_from=self._resume,
            already_complete=already_complete,
        )


def _total_size(names: Sequence[str]) -> int | None:
    """The inputs' total size in bytes if every one is a regular file, else None."""
    total = 0
    for name in names:
        try:
            status = os.stat(name) if name != STDIN else None
        except OSError:
            return None  # opening it will report why
        if status is None or not stat.S_ISREG(status.st_mode):
            return None
        total += status.st_size
    return total

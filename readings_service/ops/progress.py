"""Progress of a load on stderr: a live bar on a terminal, plain periodic log lines otherwise."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

log = logging.getLogger("readings_service.ops.load")


@dataclass(slots=True)
class Counts:
    """What a load has done so far; `bytes_read` is taken from the inputs (compressed bytes for gzip)."""

    rows_read: int = 0
    skipped: int = 0
    written: int = 0
    rejected: int = 0
    bytes_read: int = 0
    total_bytes: int | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def rows_per_s(self) -> float:
        """Rows read by this run (skipped ones aside) per second."""
        return (self.rows_read - self.skipped) / max(self.elapsed_s, 1e-9)

    def eta_s(self) -> float | None:
        """Seconds left, from the bytes read so far against the inputs' total size, when that is known."""
        if not self.total_bytes or not self.bytes_read:
            return None
        return self.elapsed_s * max(self.total_bytes - self.bytes_read, 0) / self.bytes_read


class LoadProgress(Protocol):
    """Shows how a load goes; `note` prints a message without garbling the display."""

    def update(self, counts: Counts) -> None: ...

    def note(self, message: str) -> None: ...

    def close(self, counts: Counts) -> None: ...


class SilentProgress:
    """Notes only, as warnings in the log."""

    def update(self, counts: Counts) -> None:
        pass

    def note(self, message: str) -> None:
        log.warning("%s", message)

    def close(self, counts: Counts) -> None:
        pass


class LogProgress(SilentProgress):
    """One log line every `interval_s` seconds (at most one per update), for output that is not a terminal."""

    def __init__(self, interval_s: float) -> None:
        self._interval = interval_s
        self._next = time.monotonic() + interval_s

    def update(self, counts: Counts) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._interval
            log.info("%s", describe(counts))


def describe(counts: Counts) -> str:
    """`1,200 rows read, 1,190 written, 10 rejected, 5,000 rows/s, 40% of 1.2 MB, ETA 0:00:03`."""
    parts = [
        f"{counts.rows_read:,} rows read",
        f"{counts.written:,} written",
        f"{counts.rejected:,} rejected",
        f"{counts.rows_per_s:,.0f} rows/s",
    ]
    if counts.total_bytes:
        parts.append(f"{100 * counts.bytes_read / counts.total_bytes:.0f}% of {_size(counts.total_bytes)}")
    eta = counts.eta_s()
    if eta is not None:
        parts.append(f"ETA {_clock(eta)}")
    return ", ".join(parts)


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1000
    return f"{value:.1f} TB"


def _clock(seconds: float) -> str:
    minutes, second = divmod(int(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02d}:{second:02d}"


class _RowsColumn(ProgressColumn):
    """Rows read and rejected, and rows per second since the start."""

    def render(self, task: Task) -> Text:
        rows, rate, rejected = task.fields["rows"], task.fields["rate"], task.fields["rejected"]
        text = f"{rows:,} rows {rate:,.0f} rows/s" + (f" {rejected:,} rejected" if rejected else "")
        return Text(text, style="progress.data.speed", no_wrap=True, overflow="ellipsis")


class BarProgress:
    """A live bar on the terminal: bytes read against the inputs' size (for the ETA), rows, rows/s, rejects.

    It appears with the first update, so nothing is drawn if the load fails before it starts.
    """

    def __init__(self, stream: TextIO) -> None:
        self._bar = Progress(
            BarColumn(bar_width=20),
            TaskProgressColumn(),
            _RowsColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=stream),
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._bar.add_task("load", total=None, rows=0, rate=0.0, rejected=0)
        self._started = False

    def update(self, counts: Counts) -> None:
        if not self._started:
            self._started = True
            self._bar.start()
        self._bar.update(
            self._task,
            total=counts.total_bytes,
            completed=counts.bytes_read,
            rows=counts.rows_read,
            rate=counts.rows_per_s,
            rejected=counts.rejected,
        )

    def note(self, message: str) -> None:
        self._bar.console.print(message, markup=False, highlight=False)

    def close(self, counts: Counts) -> None:
        if self._started:
            self.update(counts)
            self._bar.stop()


def progress_for(stream: TextIO, interval_s: float) -> LoadProgress:
    """A bar if `stream` is a terminal, else log lines every `interval_s` seconds."""
    return BarProgress(stream) if stream.isatty() else LogProgress(interval_s)

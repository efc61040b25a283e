"""The loader's own logic with sink doubles: batching in flight, retries, checkpoint files.

Storage behaviour (what ends up in Cassandra) is tested against the real node in tests/integration/test_ops.py;
bounded memory, slow under tracemalloc, in tests/integration/test_load_memory.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from readings_service.core.model import Reading
from readings_service.core.timestamps import TimestampRules
from readings_service.errors import StoreFailure, StoreUnavailable
from readings_service.ops.checkpoint import Checkpoint, CheckpointError, read_checkpoint, write_checkpoint
from readings_service.ops.generate import Plan, encode, generate
from readings_service.ops.load import LoadOptions, default_rejects_path, load
from readings_service.ops.progress import Counts, LogProgress, SilentProgress, describe, progress_for
from readings_service.ops.sources import SourceError

START_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z


class CountingSink:
    """Keeps only counts, and the most batches that were in flight at once; each write takes `delay_s`."""

    def __init__(self, delay_s: float = 0.001) -> None:
        self.delay_s = delay_s
        self.rows = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def write(self, readings: Sequence[Reading]) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(self.delay_s)
        self.rows += len(readings)
        self.in_flight -= 1


class FlakySink(CountingSink):
    """Unavailable for the first `failures` calls."""

    def __init__(self, failures: int, error: Exception) -> None:
        super().__init__()
        self.failures = failures
        self.error = error

    async def write(self, readings: Sequence[Reading]) -> None:
        if self.failures:
            self.failures -= 1
            raise self.error
        await super().write(readings)


def write_fixture(path: Path, rows: int, fmt: str) -> None:
    plan = Plan(devices=100, start_ms=START_MS, end_ms=START_MS + rows // 100 * 10_000, interval_ms=10_000)
    with path.open("wb") as file:
        file.writelines(encode(generate(plan), fmt))


def options(tmp_path: Path, **changes: object) -> LoadOptions:
    return LoadOptions(rejects=tmp_path / "rejects.ndjson", **changes)  # type: ignore[arg-type]


class TestStreaming:
    async def test_bounded_batches_in_flight(self, tmp_path: Path) -> None:
        """No more than --concurrency batches are written at once, and that many are when writes are slow."""
        path = tmp_path / "data.ndjson"
        write_fixture(path, 5000, "ndjson")
        sink = CountingSink(delay_s=0.02)  # far longer than reading a batch, as for a real store
        await load([str(path)], sink, options(tmp_path, batch_rows=100, concurrency=3), SilentProgress())
        assert 5000 == sink.rows
        assert 3 == sink.most_in_flight


class StoringSink:
    """Keeps the readings by (device_id, ts), each batch stored when its write ends; a write of a batch holding
    a reading of `slow` takes longer than the others."""

    def __init__(self, slow: Reading) -> None:
        self.slow = slow
        self.stored: dict[tuple[uuid.UUID, int], Reading] = {}
        self.finished: list[int] = []  # first line number of each batch, in the order its write ended

    async def write(self, readings: Sequence[Reading]) -> None:
        await asyncio.sleep(0.05 if self.slow in readings else 0.001)
        self.stored.update(((r.device_id, r.ts_ms), r) for r in readings)
        self.finished.append(round(readings[0].temperature))


class TestRepeatedReadings:
    async def test_later_reading_wins_over_a_batch_in_flight(self, tmp_path: Path) -> None:
        """A batch repeating a reading of a batch still in flight is written after it; batches sharing nothing
        with it do not wait."""
        device = uuid.UUID(int=1)
        first, other, repeat = (
            Reading(device, START_MS + i, temperature=t, pressure=1000.0) for i, t in ((0, 1.0), (1, 2.0), (0, 3.0))
        )
        path = tmp_path / "data.ndjson"
        path.write_bytes(b"".join(encode([first, repeat, other], "ndjson")))
        sink = StoringSink(slow=first)
        await load([str(path)], sink, options(tmp_path, batch_rows=1, concurrency=3), SilentProgress())
        assert repeat == sink.stored[(device, START_MS)]
        assert [2, 1, 3] == sink.finished


class TestTimestampRules:
    @pytest.mark.parametrize(
        ("fmt", "data"),
        [
            ("ndjson", b'{"device_id": "%s", "ts": %s, "temperature": 1, "pressure": 2}\n'),
            ("csv", b"device_id,ts,temperature,pressure\n%s,%s,1,2\n"),
        ],
    )
    async def test_too_old_rows_are_rejected_as_the_api_does(self, tmp_path: Path, fmt: str, data: bytes) -> None:
        """load applies ingest.oldest_ts through parse_reading: epoch seconds are rejected and named as such, a
        configured oldest_ts moves the limit."""
        device = b"6ba7b810-9dad-11d1-80b4-00c04fd430c8"
        path = tmp_path / f"data.{fmt}"
        path.write_bytes(data % (device, b"1772323200"))
        sink = CountingSink()
        result = await load([str(path)], sink, options(tmp_path), SilentProgress())
        assert (0, 1) == (sink.rows, result.counts.rejected)
        reject = orjson.loads((tmp_path / "rejects.ndjson").read_bytes())
        assert reject["reason"].startswith("looks like epoch seconds; ts is epoch milliseconds")

        (tmp_path / "rejects.ndjson").unlink()
        accepting = TimestampRules(oldest_ms=0)
        result = await load([str(path)], sink, options(tmp_path, timestamps=accepting), SilentProgress())
        assert (1, 0) == (sink.rows, result.counts.rejected)


class TestRetries:
    async def test_unavailable_store_is_retried(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """A write the store could not take now is sent again (it is an idempotent upsert)."""
        path = tmp_path / "data.ndjson"
        write_fixture(path, 300, "ndjson")
        sink = FlakySink(2, StoreUnavailable("Cassandra: overloaded"))
        result = await load([str(path)], sink, options(tmp_path, retry_delay_s=0.001), SilentProgress())
        assert 300 == sink.rows == result.counts.written
        assert 2 == sum("retrying" in record.message for record in caplog.records)

    async def test_lasting_failure_stops_the_load(self, tmp_path: Path) -> None:
        """After the retries, or at once for a failure retrying cannot cure, the load fails."""
        path = tmp_path / "data.ndjson"
        write_fixture(path, 300, "ndjson")
        with pytest.raises(StoreUnavailable):
            await load(
                [str(path)],
                FlakySink(5, StoreUnavailable("down")),
                options(tmp_path, retries=2, retry_delay_s=0.001),
                SilentProgress(),
            )
        with pytest.raises(StoreFailure):
            await load([str(path)], FlakySink(1, StoreFailure("bad")), options(tmp_path), SilentProgress())


class TestUnreadableInput:
    async def test_batches_before_it_land_and_are_recorded(self, tmp_path: Path) -> None:
        """An input that cannot be read stops the load with its error once the batches in flight have landed;
        the checkpoint covers them and does not say complete."""
        path, checkpoint = tmp_path / "data.ndjson", tmp_path / "cp"
        write_fixture(path, 300, "ndjson")
        sink = CountingSink(delay_s=0.02)
        with pytest.raises(SourceError, match="cannot open"):
            await load(
                [str(path), str(tmp_path / "missing.ndjson")],
                sink,
                options(tmp_path, batch_rows=100, checkpoint=checkpoint),
                SilentProgress(),
            )
        saved = read_checkpoint(checkpoint)
        assert saved is not None
        assert (300, 300, 300, False) == (sink.rows, saved.written, saved.rows, saved.complete)


class TestCheckpointFile:
    def test_round_trip(self, tmp_path: Path) -> None:
        """What is written is read back."""
        checkpoint = Checkpoint(("/a", "-"), file_index=1, line=7, rows=9, written=8, rejected=1, rejects_bytes=80)
        write_checkpoint(tmp_path / "cp", checkpoint)
        assert checkpoint == read_checkpoint(tmp_path / "cp")
        assert read_checkpoint(tmp_path / "missing") is None

    @pytest.mark.parametrize(
        "content",
        [
            b"{",
            b"[]",
            b'{"version": 1}',
            b'{"version": 2, "inputs": []}',
            b'{"version": 1, "inputs": ["a"], "line": -1}',
        ],
    )
    def test_unusable_file_is_refused(self, tmp_path: Path, content: bytes) -> None:
        """A torn or foreign file is an error naming the file, never a silent restart."""
        (tmp_path / "cp").write_bytes(content)
        with pytest.raises(CheckpointError, match=r"checkpoint .*cp"):
            read_checkpoint(tmp_path / "cp")


class TestProgressChoice:
    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    def test_bar_only_on_a_terminal(self) -> None:
        """A terminal gets the live bar, anything else plain log lines."""
        assert "BarProgress" == type(progress_for(self.Stream(True), 10)).__name__  # type: ignore[arg-type]
        assert isinstance(progress_for(self.Stream(False), 10), LogProgress)  # type: ignore[arg-type]

    def test_log_line(self) -> None:
        """A log line has rows, rates, and an ETA from bytes when the size is known."""
        counts = Counts(rows_read=1200, written=1000, rejected=3, bytes_read=250, total_bytes=1000, started=0.0)
        text = describe(counts)
        for part in ("1,200 rows read", "1,000 written", "3 rejected", "rows/s", "25% of 1.0 kB", "ETA "):
            assert part in text


def test_default_rejects_path() -> None:
    """Next to the first input, or in the working directory for stdin."""
    assert Path("data/a.csv.rejects.ndjson") == default_rejects_path(["data/a.csv", "b.csv"])
    assert Path("load.rejects.ndjson") == default_rejects_path(["-"])

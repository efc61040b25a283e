"""Ops tooling against the real Cassandra: generate → load → verify, input formats, rejects, resume, progress."""

from __future__ import annotations

import dataclasses
import gzip
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from readings_service.api.app import create_app
from readings_service.config import Settings
from readings_service.core.model import Reading, parse_reading
from readings_service.core.timestamps import MIN_TS_MS, TimestampLimits
from readings_service.errors import StoreFailure
from readings_service.ops.checkpoint import read_checkpoint
from readings_service.ops.generate import encode
from readings_service.ops.http_sink import open_http_sink
from readings_service.ops.load import LoadError, LoadOptions, load
from readings_service.ops.progress import SilentProgress
from readings_service.ops.verify import Mismatch, VerifyCounts, verify
from readings_service.store.cassandra import CassandraStore
from tests.conftest import ROOT, env_without_readings, fresh_keyspace, opener_of, run_keyspace, settings_for
from tests.conftest import run_cli as shared_run_cli

KEYSPACE = run_keyspace("readings_test_ops")
FIXTURES = ROOT / "tests" / "fixtures"
FIXTURE = FIXTURES / "readings.ndjson"
TABLES = ("readings", "readings_by_device", "device_latest_day")
Key = tuple[uuid.UUID, int]


@pytest.fixture(scope="module")
def ops_settings(cassandra_session: Any) -> Settings:
    settings = settings_for(KEYSPACE)
    fresh_keyspace(cassandra_session, settings)
    return settings


@pytest.fixture
def ops_store(cassandra_session: Any, ops_settings: Settings) -> CassandraStore:
    """A store on the emptied ops keyspace."""
    for table in TABLES:
        cassandra_session.execute(f"TRUNCATE {KEYSPACE}.{table}", timeout=120)
    return CassandraStore(cassandra_session, ops_settings.cassandra, ops_settings.ingest, ops_settings.storage.buckets)


def fixture_readings(path: Path = FIXTURE) -> list[Reading]:
    limits = TimestampLimits(MIN_TS_MS, 2**62)
    readings = [parse_reading(orjson.loads(line), 0, limits=limits) for line in path.read_bytes().splitlines()]
    assert all(isinstance(r, Reading) for r in readings)
    return readings  # type: ignore[return-value]


def expected_rows(readings: Sequence[Reading]) -> dict[Key, tuple[float, float]]:
    """What the store must hold: the later reading wins for a repeated (device_id, ts)."""
    return {(r.device_id, r.ts_ms): (r.temperature, r.pressure) for r in readings}


def stored_rows(session: Any) -> dict[Key, tuple[float, float]]:
    rows = list(
        session.execute(
            f"SELECT device_id, toUnixTimestamp(ts), temperature, pressure FROM {KEYSPACE}.readings", timeout=60
        )
    )
    by_device = list(session.execute(f"SELECT device_id, ts FROM {KEYSPACE}.readings_by_device", timeout=60))
    assert len(rows) == len(by_device)
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def options(tmp_path: Path, **changes: Any) -> LoadOptions:
    return LoadOptions(rejects=tmp_path / "rejects.ndjson", **changes)


def run_cli(*args: str, cwd: Path = ROOT, **options: Any) -> subprocess.CompletedProcess[bytes]:
    env = {"READINGS_CASSANDRA_KEYSPACE": KEYSPACE, "READINGS_CONFIG": str(ROOT / "config.toml")}
    return shared_run_cli(*args, env=env, cwd=cwd, text=False, **options)


async def verify_counts(
    paths: Sequence[Path], store: CassandraStore, settings: Settings, **changes: Any
) -> tuple[VerifyCounts, list[Mismatch]]:
    mismatches: list[Mismatch] = []
    counts = await verify(
        [str(p) for p in paths],
        store,
        buckets=settings.storage.buckets,
        on_mismatch=mismatches.append,
        on_invalid=lambda _: None,
        **changes,
    )
    return counts, mismatches


class RecordingSink:
    """The real store, noting every key written; fails with StoreFailure after `fail_after` batches if set."""

    def __init__(self, store: CassandraStore, fail_after: int | None = None) -> None:
        self.store = store
        self.fail_after = fail_after
        self.written: list[Key] = []

    async def write(self, readings: Sequence[Reading]) -> None:
        if self.fail_after is not None:
            if self.fail_after == 0:
                raise StoreFailure("simulated crash")
            self.fail_after -= 1
        await self.store.write(readings)
        self.written.extend((r.device_id, r.ts_ms) for r in readings)


class TestRoundTrip:
    def test_generate_load_verify_with_the_cli(
        self, ops_store: CassandraStore, cassandra_session: Any, tmp_path: Path
    ) -> None:
        """What `generate` writes, `load` stores and `verify` finds, value for value."""
        path = tmp_path / "generated.ndjson"
        generated = run_cli(
            "generate",
            "--devices",
            "20",
            "--start",
            "2026-02-01T22:00:00Z",
            "--end",
            "2026-02-02T10:00:00Z",
            "--interval",
            "10m",
            "--seed",
            "5",
            "--jitter",
            "20s",
            "--shared-timestamps",
            "0.3",
            "-o",
            str(path),
        )
        assert 0 == generated.returncode, generated.stderr
        loaded = run_cli("load", str(path))
        assert 0 == loaded.returncode, loaded.stderr
        assert b"read 1,440 rows (0 skipped), wrote 1,440, rejected 0" in loaded.stdout
        verified = run_cli("verify", str(path))
        assert 0 == verified.returncode, verified.stderr
        assert b"verified 1,440 readings" in verified.stdout
        assert b"1,440 match, 0 missing, 0 differ" in verified.stdout
        assert expected_rows(fixture_readings(path)) == stored_rows(cassandra_session)

    async def test_verify_reports_missing_and_differing(
        self, ops_store: CassandraStore, ops_settings: Settings, cassandra_session: Any, tmp_path: Path
    ) -> None:
        """A deleted and a changed reading are named with their fixture line; the exit status says so."""
        readings = fixture_readings()
        await ops_store.write(readings)
        gone, changed = readings[100], readings[2000]
        cassandra_session.execute(
            f"DELETE FROM {KEYSPACE}.readings WHERE day = %s AND bucket = %s AND ts = %s AND device_id = %s",
            (*_partition(gone, ops_settings), gone.ts_ms, gone.device_id),
        )
        cassandra_session.execute(
            f"UPDATE {KEYSPACE}.readings SET temperature = 99.5 WHERE day = %s AND bucket = %s AND ts = %s "
            "AND device_id = %s",
            (*_partition(changed, ops_settings), changed.ts_ms, changed.device_id),
        )
        report = tmp_path / "mismatches.ndjson"
        result = run_cli("verify", str(FIXTURE), "--mismatches", str(report))
        assert 1 == result.returncode
        assert b"2,878 match, 1 missing, 1 differ" in result.stdout
        assert f"missing {FIXTURE}:101 device {gone.device_id}".encode() in result.stdout
        assert f"differs {FIXTURE}:2001 device {changed.device_id}".encode() in result.stdout
        lines = [orjson.loads(line) for line in report.read_bytes().splitlines()]
        assert {("missing", 101), ("differs", 2001)} == {(m["kind"], m["line"]) for m in lines}
        assert {"temperature": 99.5, "pressure": changed.pressure} == next(m for m in lines if m["line"] == 2001)[
            "stored"
        ]

        # The same comparison in windows far smaller than a day finds the same, and only that.
        counts, mismatches = await verify_counts([FIXTURE], ops_store, ops_settings, window_rows=50)
        assert (2880, 2878, 1, 1) == (counts.readings, counts.matched, counts.missing, counts.differing)
        assert {101, 2001} == {m.line for m in mismatches}

    async def test_other_stored_readings_are_no_mismatch(
        self, ops_store: CassandraStore, ops_settings: Settings, tmp_path: Path
    ) -> None:
        """Verifying part of what is stored matches; the rest of the window is only counted."""
        await ops_store.write(fixture_readings())
        part = tmp_path / "part.ndjson"
        part.write_bytes(b"".join(FIXTURE.read_bytes().splitlines(keepends=True)[:200:2]))
        counts, mismatches = await verify_counts([part], ops_store, ops_settings)
        assert (100, 100, True, []) == (counts.readings, counts.matched, counts.ok, mismatches)
        assert 0 < counts.other_stored

    async def test_repeated_reading_later_one_wins(
        self, ops_store: CassandraStore, ops_settings: Settings, cassandra_session: Any, tmp_path: Path
    ) -> None:
        """A (device_id, ts) given twice is stored with the later values, also across batches in flight, and
        verify expects exactly that."""
        readings = fixture_readings()[:500]
        repeats = [dataclasses.replace(r, temperature=-r.temperature) for r in readings[::7]]
        path = tmp_path / "repeats.ndjson"
        path.write_bytes(b"".join(encode([*readings, *repeats], "ndjson")))
        await load([str(path)], ops_store, options(tmp_path, batch_rows=60, concurrency=8), SilentProgress())
        assert expected_rows([*readings, *repeats]) == stored_rows(cassandra_session)
        counts, _ = await verify_counts([path], ops_store, ops_settings)
        assert (500, 500, True) == (counts.readings, counts.matched, counts.ok)


def _partition(reading: Reading, settings: Settings) -> tuple[str, int]:
    from readings_service.core.bucketing import bucket_of, day_of

    return str(day_of(reading.ts_ms)), bucket_of(reading.device_id, settings.storage.buckets)


class TestFixtureQueries:
    async def test_expected_answers(
        self, ops_store: CassandraStore, ops_settings: Settings, aiohttp_client: Callable[..., Any], tmp_path: Path
    ) -> None:
        """After loading the committed fixture, the API answers the committed queries exactly."""
        result = await load([str(FIXTURE)], ops_store, options(tmp_path), SilentProgress())
        assert 2880 == result.counts.written
        client = await aiohttp_client(create_app(ops_settings, opener_of(ops_store)))
        queries = orjson.loads((FIXTURES / "expected" / "queries.json").read_bytes())
        for name, path in queries.items():
            response = await client.get(path)
            assert 200 == response.status, name
            answer = [orjson.loads(line) for line in (await response.read()).splitlines()]
            expected = [
                orjson.loads(line) for line in (FIXTURES / "expected" / f"{name}.ndjson").read_bytes().splitlines()
            ]
            assert expected == answer, name


class TestFormats:
    @pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
    @pytest.mark.parametrize("fmt", ["ndjson", "json", "csv"])
    async def test_every_format_loads_and_verifies(
        self,
        ops_store: CassandraStore,
        ops_settings: Settings,
        cassandra_session: Any,
        tmp_path: Path,
        fmt: str,
        compressed: bool,
    ) -> None:
        """NDJSON, a JSON array and CSV, plain or gzip (told apart by content), store the same readings."""
        readings = fixture_readings()
        data = b"".join(encode(readings, fmt))
        path = tmp_path / "fixture.data"  # no telling extension: format and compression come from the content
        path.write_bytes(gzip.compress(data) if compressed else data)
        result = await load([str(path)], ops_store, options(tmp_path, batch_rows=700), SilentProgress())
        assert (2880, 2880, 0) == (result.counts.rows_read, result.counts.written, result.counts.rejected)
        assert expected_rows(readings) == stored_rows(cassandra_session)
        counts, _ = await verify_counts([path], ops_store, ops_settings)
        assert (2880, 2880, True) == (counts.readings, counts.matched, counts.ok)

    def test_stdin_gzip_and_several_files(
        self, ops_store: CassandraStore, cassandra_session: Any, tmp_path: Path
    ) -> None:
        """`-` reads stdin (gzip detected there too), in order with other files of other formats."""
        readings = fixture_readings()
        csv_path = tmp_path / "second.csv"
        csv_path.write_bytes(b"".join(encode(readings[2000:], "csv")))
        stdin = gzip.compress(b"".join(encode(readings[:2000], "ndjson")))
        result = run_cli("load", "-", str(csv_path), input=stdin, cwd=tmp_path)
        assert 0 == result.returncode, result.stderr
        assert b"wrote 2,880" in result.stdout
        assert expected_rows(readings) == stored_rows(cassandra_session)


BAD_LINES = [
    (b"not json", "line is not valid JSON"),
    (
        b'{"device_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "ts": 1772323200000, "temperature": 1}',
        "pressure: missing field",
    ),
    (
        b'{"device_id": "nope", "ts": 1772323200000, "temperature": 1, "pressure": 2}',
        'device_id is not a hyphenated UUID: \\"nope\\"',
    ),
    (
        b'{"device_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "ts": "2026-03-01T00:00:00", "temperature": 1, '
        b'"pressure": 2}',
        "timestamp has no UTC offset",
    ),
    (
        b'{"device_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "ts": 99999999999999, "temperature": 1, "pressure": 2}',
        "more than the allowed skew in the future",
    ),
]


def with_bad_lines(tmp_path: Path, readings: list[Reading], every: int) -> tuple[Path, list[int]]:
    """The readings as NDJSON with a bad line after every `every` readings; returns the bad lines' numbers."""
    lines = [
        orjson.dumps(item)
        for item in (orjson.loads(line) for line in b"".join(encode(readings, "ndjson")).splitlines())
    ]
    bad_numbers = []
    for n, (bad, _) in enumerate(BAD_LINES):
        position = (n + 1) * every + n
        lines.insert(position, bad)
        bad_numbers.append(position + 1)
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, bad_numbers


class TestRejects:
    async def test_bad_lines_are_skipped_and_listed(
        self, ops_store: CassandraStore, cassandra_session: Any, tmp_path: Path
    ) -> None:
        """Without --strict every valid reading is stored and each bad line is listed with file, line, reason
        and the raw text."""
        readings = fixture_readings()[:600]
        path, bad_numbers = with_bad_lines(tmp_path, readings, 100)
        result = await load([str(path)], ops_store, options(tmp_path, batch_rows=150), SilentProgress())
        assert (605, 600, 5) == (result.counts.rows_read, result.counts.written, result.counts.rejected)
        assert tmp_path / "rejects.ndjson" == result.rejects_path
        rejects = [orjson.loads(line) for line in (tmp_path / "rejects.ndjson").read_bytes().splitlines()]
        assert [(str(path), n, bad.decode()) for n, (bad, _) in zip(bad_numbers, BAD_LINES, strict=True)] == [
            (r["file"], r["line"], r["raw"]) for r in rejects
        ]
        for reject, (_, reason) in zip(rejects, BAD_LINES, strict=True):
            assert reason.replace('\\"', '"') in reject["reason"]
        assert expected_rows(readings) == stored_rows(cassandra_session)

    async def test_strict_stops_with_nothing_of_that_batch(
        self, ops_store: CassandraStore, cassandra_session: Any, tmp_path: Path
    ) -> None:
        """--strict stops at the first bad line; batches before it are stored, nothing of its own batch."""
        readings = fixture_readings()[:600]
        path, _ = with_bad_lines(tmp_path, readings, 250)  # the first bad line is line 251
        result = await load([str(path)], ops_store, options(tmp_path, batch_rows=100, strict=True), SilentProgress())
        assert result.stopped_at is not None
        assert (str(path), 251) == (result.stopped_at.file, result.stopped_at.line)
        assert (200, 1) == (result.counts.written, result.rejected_in_all)
        assert expected_rows(readings[:200]) == stored_rows(cassandra_session)
        assert not (tmp_path / "rejects.ndjson").exists()

    def test_exit_status_and_default_rejects_file(self, ops_store: CassandraStore, tmp_path: Path) -> None:
        """Exit 3 when rows were rejected (listed next to the input), 1 when --strict stopped, 0 when clean."""
        path, _ = with_bad_lines(tmp_path, fixture_readings()[:300], 50)
        skipped = run_cli("load", str(path))
        assert 3 == skipped.returncode, skipped.stderr
        assert f"rejected rows are listed in {path}.rejects.ndjson".encode() in skipped.stdout
        assert 5 == len(Path(f"{path}.rejects.ndjson").read_bytes().splitlines())
        assert f"rejected {path}:51: line is not valid JSON".encode() in skipped.stderr
        strict = run_cli("load", "--strict", str(path))
        assert 1 == strict.returncode
        assert f"stopped at {path}:51: line is not valid JSON".encode() in strict.stderr
        assert 0 == run_cli("load", str(FIXTURE)).returncode


class TestResume:
    async def test_interrupted_load_loses_and_repeats_nothing(
        self, ops_store: CassandraStore, cassandra_session: Any, tmp_path: Path
    ) -> None:
        """After a crash, a restart with the same checkpoint writes exactly the readings not acknowledged,
        and the rejects file holds each bad line once."""
        readings = fixture_readings()
        path, _ = with_bad_lines(tmp_path, readings, 400)
        checkpoint = tmp_path / "load.checkpoint"
        crashing = RecordingSink(ops_store, fail_after=6)
        with pytest.raises(StoreFailure, match="simulated crash"):
            await load(
                [str(path)],
                crashing,
                options(tmp_path, batch_rows=300, concurrency=1, checkpoint=checkpoint),
                SilentProgress(),
            )
        saved = read_checkpoint(checkpoint)
        assert saved is not None
        assert (1800, 1804, 1804, 4) == (saved.written, saved.rows, saved.line, saved.rejected)

        resumed = RecordingSink(ops_store)
        result = await load(
            [str(path)],
            resumed,
            options(tmp_path, batch_rows=300, concurrency=4, checkpoint=checkpoint),
            SilentProgress(),
        )
        assert result.resumed_from == saved
        assert 1080 == result.counts.written
        assert set(crashing.written).isdisjoint(resumed.written)
        assert len(readings) == len(crashing.written) + len(resumed.written)
        assert expected_rows(readings) == stored_rows(cassandra_session)
        assert 5 == len((tmp_path / "rejects.ndjson").read_bytes().splitlines())
        assert 5 == result.rejected_in_all

        again = await load([str(path)], resumed, options(tmp_path, checkpoint=checkpoint), SilentProgress())
        assert again.already_complete
        assert 0 == again.counts.written

    def test_killed_load_resumes_from_its_checkpoint(
        self, ops_store: CassandraStore, cassandra_session: Any, tmp_path: Path
    ) -> None:
        """A load killed with SIGKILL while reading stdin continues, on the same command, after the last
        acknowledged batch."""
        data = FIXTURE.read_bytes()
        lines = data.splitlines(keepends=True)
        checkpoint = tmp_path / "cp.json"
        environment = env_without_readings() | {"READINGS_CASSANDRA_KEYSPACE": KEYSPACE}
        command = [
            sys.executable,
            "-m",
            "readings_service",
            "load",
            "-",
            "--checkpoint",
            str(checkpoint),
            "--batch-rows",
            "100",
            "--concurrency",
            "3",
        ]
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert process.stdin is not None
            process.stdin.write(b"".join(lines[:1000]))
            process.stdin.flush()
            wait_for(lambda: (read_checkpoint(checkpoint) or _NONE).rows == 1000, "the first 1000 rows to land")
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
            assert process.stdin is not None
            process.stdin.close()
        assert 1000 == len(stored_rows(cassandra_session))

        result = subprocess.run(
            command, cwd=ROOT, env=environment, input=data, capture_output=True, timeout=120, check=False
        )
        assert 0 == result.returncode, result.stderr
        assert b"resumed after <stdin>:1000 (1000 rows)" in result.stdout
        assert b"read 2,880 rows (1,000 skipped), wrote 1,880" in result.stdout
        assert expected_rows(fixture_readings()) == stored_rows(cassandra_session)

    async def test_skip_and_changed_inputs(
        self, ops_store: CassandraStore, cassandra_session: Any, tmp_path: Path
    ) -> None:
        """--skip N passes over N rows; a checkpoint is refused for other inputs or for changed ones."""
        readings = fixture_readings()
        checkpoint = tmp_path / "cp"
        result = await load(
            [str(FIXTURE)], ops_store, options(tmp_path, skip=2500, checkpoint=checkpoint), SilentProgress()
        )
        assert (2880, 2500, 380) == (result.counts.rows_read, result.counts.skipped, result.counts.written)
        assert expected_rows(readings[2500:]) == stored_rows(cassandra_session)

        with pytest.raises(LoadError, match="belongs to a load of"):
            await load(
                [str(FIXTURE), str(FIXTURE)], ops_store, options(tmp_path, checkpoint=checkpoint), SilentProgress()
            )
        shorter = tmp_path / "shorter.ndjson"
        shorter.write_bytes(b"".join(FIXTURE.read_bytes().splitlines(keepends=True)[:2000]))
        partial = tmp_path / "partial"
        await load([str(shorter)], ops_store, options(tmp_path, checkpoint=partial, batch_rows=500), SilentProgress())
        shorter.write_bytes(b"\n".join(FIXTURE.read_bytes().splitlines()[:1000:2]))
        partial.write_bytes(partial.read_bytes().replace(b'"complete": true', b'"complete": false'))
        with pytest.raises(LoadError, match="the inputs differ from when the checkpoint was written"):
            await load([str(shorter)], ops_store, options(tmp_path, checkpoint=partial), SilentProgress())


_NONE = dataclasses.make_dataclass("_NoCheckpoint", [("rows", int, dataclasses.field(default=-1))])()


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


class TestProgressOutput:
    def test_bar_on_a_terminal(self, ops_store: CassandraStore, tmp_path: Path) -> None:
        """With stderr on a pseudo-terminal, a live bar shows rows/s and the ETA; no log lines."""
        controller, terminal = os.openpty()
        environment = env_without_readings() | {
            "READINGS_CASSANDRA_KEYSPACE": KEYSPACE,
            "TERM": "xterm",
            "COLUMNS": "100",
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "readings_service",
                "load",
                str(FIXTURE),
                "--batch-rows",
                "100",
                "--concurrency",
                "1",
            ],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=terminal,
        )
        os.close(terminal)
        shown = read_terminal(controller, process)
        summary, _ = process.communicate(timeout=30)
        assert 0 == process.returncode
        for part in (b"rows/s", b"ETA", b"100%", b"2,880 rows"):
            assert part in shown
        assert b"\x1b[" in shown  # drawn with terminal control sequences
        assert b"INFO" not in shown
        assert b"wrote 2,880" in summary

    def test_log_lines_in_a_pipe(self, ops_store: CassandraStore) -> None:
        """With stderr in a pipe, progress is plain log lines with the same figures, no control characters."""
        result = run_cli("load", str(FIXTURE), "--batch-rows", "500", "--log-every", "0")
        assert 0 == result.returncode
        lines = [line for line in result.stderr.splitlines() if b"readings_service.ops.load" in line]
        assert lines
        assert b"2,880 rows read, 2,880 written, 0 rejected" in lines[-1]
        assert b"rows/s, 100% of 355.5 kB, ETA 0:00:00" in lines[-1]
        assert b"\x1b" not in result.stderr
        assert b"\r" not in result.stderr


def read_terminal(controller: int, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> bytes:
    """Everything written to the pseudo-terminal until the process closes it."""
    output = b""
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: the other side is closed
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
    finally:
        os.close(controller)
    return output


class TestThroughTheService:
    async def test_load_with_url_posts_to_the_service(
        self,
        ops_store: CassandraStore,
        ops_settings: Settings,
        cassandra_session: Any,
        aiohttp_server: Any,
        tmp_path: Path,
    ) -> None:
        """With --url the same validated readings go through POST /readings of a running service."""
        server = await aiohttp_server(create_app(ops_settings, opener_of(ops_store)))
        async with open_http_sink(str(server.make_url("/")), 30.0) as sink:
            result = await load([str(FIXTURE)], sink, options(tmp_path, batch_rows=1000), SilentProgress())
        assert 2880 == result.counts.written
        assert expected_rows(fixture_readings()) == stored_rows(cassandra_session)

    async def test_service_refusal_stops_the_load(self, aiohttp_server: Any, tmp_path: Path) -> None:
        """An answer retrying cannot cure is reported with the service's detail."""

        async def refuse(request: web.Request) -> web.Response:
            return web.json_response({"detail": "no thanks"}, status=422)

        app = web.Application()
        app.router.add_post("/readings", refuse)
        server = await aiohttp_server(app)
        async with open_http_sink(str(server.make_url("/")), 30.0) as sink:
            with pytest.raises(StoreFailure, match="answered 422: no thanks"):
                await load([str(FIXTURE)], sink, options(tmp_path), SilentProgress())

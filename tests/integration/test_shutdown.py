"""SIGTERM during a stream, and a port already in use, on a real `serve` process and the real node."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from tests.conftest import run_keyspace, settings_for
from tests.faults.harness import FAULT_DAY_MS, MS_PER_DAY, ReadingSource, Service, ndjson

TIMEOUT_S = 2.0


def service(tmp_path: Path, keyspace: str, **settings: str) -> Service:
    contact = ",".join(settings_for().cassandra.contact_points)
    return Service(
        tmp_path,
        cassandra_keyspace=keyspace,
        cassandra_contact_points=contact,
        http_shutdown_timeout_s=str(TIMEOUT_S),
        **settings,
    )


async def seed(url: str, rows: int) -> None:
    source = ReadingSource()
    async with aiohttp.ClientSession() as http:
        for _ in range(rows // 5_000):
            async with http.post(
                url + "/readings", data=ndjson(source.batch(5_000)), headers={"Content-Type": "application/x-ndjson"}
            ) as response:
                assert 200 == response.status


def dechunk(raw: bytes) -> tuple[bytes, bool]:
    """The payload of an HTTP/1.1 chunked body and whether its terminating chunk arrived."""
    payload, rest = b"", raw
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            return payload, False
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return payload, True
        payload, rest = payload + rest[:size], rest[size + 2 :]
    return payload, False


async def stream_through_sigterm(running: Service) -> tuple[bytes, bool, float]:
    """Read a long stream slowly, SIGTERM the service meanwhile; returns (payload, complete?, seconds to exit).

    The client's receive buffer is kept small so the server cannot park the whole answer in the kernel.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32_768)
    sock.connect(("127.0.0.1", running.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    target = f"/readings?start={FAULT_DAY_MS}&end={FAULT_DAY_MS + MS_PER_DAY}"
    writer.write(f"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"chunked" in head.lower()
    raw = await reader.read(16_384)
    assert running.process is not None
    sent = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    exited = asyncio.create_task(asyncio.to_thread(_wait_exit, running.process))
    while chunk := await reader.read(16_384):  # a slow reader: the stream is still open at the deadline
        raw += chunk
        await asyncio.sleep(0.02)
    writer.close()
    exit_time = await exited
    payload, complete = dechunk(raw)
    return payload, complete, exit_time - sent


def _wait_exit(process: subprocess.Popen[bytes]) -> float:
    process.wait(30)
    return time.monotonic()


class TestShutdown:
    def test_sigterm_cuts_an_open_stream_visibly_after_the_timeout(self, tmp_path: Path) -> None:
        """The stream ends with the error line and no final chunk; the process exits 0 after ~the timeout."""
        keyspace = run_keyspace("readings_test_shutdown")
        running = service(tmp_path, keyspace)
        running.cli("schema", "apply")
        with running:
            asyncio.run(seed(running.url, 100_000))
            body, complete, seconds = asyncio.run(stream_through_sigterm(running))
        assert running.process is not None
        log = running.log()
        lines = body.rstrip(b"\n").split(b"\n")
        last = orjson.loads(lines[-1])
        print(
            f"\nSIGTERM during a stream: exit {running.process.returncode} after {seconds:.2f} s "
            f"(shutdown_timeout_s={TIMEOUT_S}), {len(lines) - 1} rows then {last}"
        )
        assert not complete
        assert {"error": {"status": 503, "detail": "the service is shutting down; the stream was cut"}} == last
        assert 0 == running.process.returncode
        assert TIMEOUT_S - 0.2 <= seconds <= TIMEOUT_S + 1.5
        assert "shutting down" in log
        assert "cutting 1 open stream(s)" in log
        assert "shut down cleanly" in log
        assert "Traceback" not in log

    def test_port_in_use_is_one_line_and_exit_1(self, tmp_path: Path) -> None:
        """A second service on a taken port says so in one line and exits 1, without a traceback."""
        keyspace = run_keyspace("readings_test_port")
        first = service(tmp_path, keyspace)
        first.cli("schema", "apply")
        with first:
            second = service(tmp_path, keyspace, http_port=str(first.port))
            done = subprocess.run(
                [sys.executable, "-m", "readings_service", "serve"],
                env=second.env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert 1 == done.returncode
        errors = [line for line in done.stderr.splitlines() if line.startswith("readings-service:")]
        assert [f"readings-service: cannot listen on 127.0.0.1:{first.port}: the address is already in use"] == errors
        assert "Traceback" not in done.stderr

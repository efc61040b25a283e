"""`scripts/cassandra answers`: a real CQL request tells whether a Cassandra runs there, whoever started it."""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT, env_without_readings, settings_for


def cassandra_script(action: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cassandra"), action, "--timeout", "0.5", *args],
        cwd=ROOT,
        env=env_without_readings() | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def answers(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return cassandra_script("answers", *args, env=env)


@pytest.fixture
def listener(request: pytest.FixtureRequest) -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that is not Cassandra: it accepts one client, sends it `request.param` (None:
    nothing) and keeps the connection open until the test ends; yields its port."""
    reply: bytes | None = request.param
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(60)
    clients: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            client, _ = server.accept()
            clients.append(client)
            if reply is not None:
                client.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        thread.join(60)
        server.close()
        for client in clients:
            client.close()


class TestAnswers:
    def test_running_node_answers(self, cassandra_session: Any) -> None:
        """The node the tests use answers, on the configured contact points or named explicitly."""
        cassandra = settings_for().cassandra
        configured = answers()
        assert 0 == configured.returncode, configured.stdout + configured.stderr
        named = answers("--address", f"127.0.0.99,{cassandra.contact_points[0]}", "--port", str(cassandra.port))
        assert 0 == named.returncode, named.stdout + named.stderr

    def test_contact_points_from_the_environment(self, cassandra_session: Any) -> None:
        """READINGS_CASSANDRA_CONTACT_POINTS and _PORT are the addresses asked; any one answering suffices."""
        cassandra = settings_for().cassandra
        port = str(cassandra.port)
        points = f"127.0.0.99,{cassandra.contact_points[0]}"
        assert (
            0 == answers(env={"READINGS_CASSANDRA_CONTACT_POINTS": points, "READINGS_CASSANDRA_PORT": port}).returncode
        )
        assert (
            1
            == answers(
                env={"READINGS_CASSANDRA_CONTACT_POINTS": "127.0.0.99", "READINGS_CASSANDRA_PORT": port}
            ).returncode
        )

    @pytest.mark.parametrize(("address", "port"), [("127.0.0.1", "1"), ("127.0.0.99", "9042")])
    def test_nothing_listening_does_not_answer(self, address: str, port: str) -> None:
        """A closed port, or an address where nothing listens, is no Cassandra."""
        result = answers("--address", address, "--port", port)
        assert 1 == result.returncode
        assert f"no CQL answers on {address} port {port}" in result.stdout

    @pytest.mark.parametrize(
        "listener",
        [
            None,
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            struct.pack(">BBhBI", 0x84, 0, 1, 0x06, 40) + b"\x00\x01\x00\x05hello",  # SUPPORTED, body cut short
        ],
        ids=["silent", "http", "truncated-supported"],
        indirect=True,
    )
    def test_listener_that_does_not_speak_cql_is_no_cassandra(self, listener: int) -> None:
        """Accepting TCP connections is not enough: the reply must be a SUPPORTED frame."""
        result = answers("--address", "127.0.0.1", "--port", str(listener))
        assert 1 == result.returncode, result.stdout


class TestEnsure:
    def test_uses_the_cassandra_that_answers(self, cassandra_session: Any) -> None:
        """What answers on the configured contact points is used as it is (scripts/test and scripts/serve)."""
        result = cassandra_script("ensure")
        assert 0 == result.returncode, result.stdout + result.stderr
        assert "using the Cassandra that answers CQL on" in result.stdout

    def test_starts_nothing_for_contact_points_it_cannot_serve(self) -> None:
        """When nothing answers on addresses the local node would not listen on, starting it would not help."""
        result = cassandra_script("ensure", "--address", "127.0.0.99", "--base", "1")
        assert 1 == result.returncode
        assert "nothing answers CQL on 127.0.0.99 port 9042" in result.stderr

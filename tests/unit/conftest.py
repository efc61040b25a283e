"""Unit tests run without a database: asking for the Cassandra session, or connecting to a CQL port, fails."""

from __future__ import annotations

import os
import socket
from typing import Any, NoReturn

import pytest

# The CQL port of the configuration and of the cluster variables the tests honour.
CQL_PORTS = frozenset({9042, int(os.environ.get("READINGS_CASSANDRA_PORT", "9042"))})


class CassandraRefused(ConnectionRefusedError):
    """A unit test tried to reach Cassandra (an OSError, so callers close the socket as for any refusal)."""


@pytest.fixture(scope="session")
def cassandra_session() -> NoReturn:
    """Unit tests never reach Cassandra; a test that needs it belongs in tests/integration."""
    pytest.fail("a unit test asked for Cassandra; storage tests belong in tests/integration")


@pytest.fixture(autouse=True)
def no_cql_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection to a CQL port, from the test or from a driver thread it started, is refused.

    Per test, not per session: the patch must never outlive the unit tests when one run holds both suites.
    """
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def refuse(address: Any) -> None:
        if isinstance(address, tuple) and len(address) >= 2 and address[1] in CQL_PORTS:
            raise CassandraRefused(f"a unit test connected to Cassandra at {address[0]}:{address[1]}")

    def connect(self: socket.socket, address: Any) -> None:
        refuse(address)
        original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        refuse(address)
        return original_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)

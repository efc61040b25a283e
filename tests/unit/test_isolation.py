"""The unit suite cannot reach Cassandra, so what passes here passes without one."""

from __future__ import annotations

import socket

import pytest

from tests.unit.conftest import CQL_PORTS, CassandraRefused


class TestNoCassandra:
    @pytest.mark.parametrize("port", sorted(CQL_PORTS))
    def test_connecting_to_a_cql_port_fails(self, port: int) -> None:
        """Any connection to the CQL port raises before a packet leaves, whatever the address."""
        for host in ("127.0.0.1", "127.0.0.250"):
            with pytest.raises(CassandraRefused, match=f"connected to Cassandra at {host}:{port}"):
                socket.create_connection((host, port), timeout=1)

    def test_other_ports_are_left_alone(self) -> None:
        """The HTTP tests' own connections still work."""
        with (
            socket.create_server(("127.0.0.1", 0)) as server,
            socket.create_connection(server.getsockname()[:2], timeout=1),
        ):
            pass

"""Protocol v5 by default, v4 when the cluster refuses v5."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from cassandra import DriverException
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ProtocolVersionUnsupported

from readings_service.config import CassandraSettings
from readings_service.errors import StoreUnavailable
from readings_service.store import cassandra as store


def unavailable(*causes: Exception) -> StoreUnavailable:
    error = StoreUnavailable("Cassandra: NoHostAvailable")
    error.__cause__ = NoHostAvailable("Unable to connect to any servers", {f"h{i}": c for i, c in enumerate(causes)})
    return error


REFUSED_V5 = DriverException("ProtocolError returned from server while using explicitly set client protocol_version 5")


class TestConnect:
    @pytest.fixture
    def attempts(self, monkeypatch: pytest.MonkeyPatch) -> list[int]:
        """Protocol versions tried; v5 is refused by every node, v4 connects."""
        tried: list[int] = []

        def connect(settings: CassandraSettings, version: int) -> tuple[Any, Any]:
            tried.append(version)
            if version == 5:
                raise unavailable(REFUSED_V5, ProtocolVersionUnsupported("h1", 5))
            return "cluster", "session"

        monkeypatch.setattr(store, "_connect", connect)
        return tried

    def test_v5_refused_falls_back_to_v4_with_a_log_line(
        self, attempts: list[int], caplog: pytest.LogCaptureFixture
    ) -> None:
        """v5 configured, refused by the cluster: connected with v4, logged once."""
        with caplog.at_level(logging.WARNING, "readings_service"):
            assert ("cluster", "session") == store.connect(CassandraSettings(protocol_version=5))
        assert [5, 4] == attempts
        assert ["Cassandra does not support protocol v5; using v4"] == [r.getMessage() for r in caplog.records]

    def test_v4_configured_is_tried_alone(self, attempts: list[int]) -> None:
        """v4 configured: v4 only."""
        store.connect(CassandraSettings(protocol_version=4))
        assert [4] == attempts

    def test_other_failures_do_not_fall_back(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A cluster that is down is reported as such, not retried with v4."""
        tried: list[int] = []

        def connect(settings: CassandraSettings, version: int) -> tuple[Any, Any]:
            tried.append(version)
            raise unavailable(OSError("connection refused"))

        monkeypatch.setattr(store, "_connect", connect)
        with pytest.raises(StoreUnavailable):
            store.connect(CassandraSettings())
        assert [5] == tried

    def test_default_is_v5(self) -> None:
        """Protocol v5 is the default."""
        assert 5 == CassandraSettings().protocol_version

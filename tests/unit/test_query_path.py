"""Choosing the range-query path: query.native, the compiled module's presence and the store's abilities."""

from __future__ import annotations

import importlib
import logging
import uuid
from datetime import date
from types import ModuleType
from typing import Any

import pytest

from readings_service.api.app import create_app
from readings_service.config import AuthSettings, ConfigError, QuerySettings, Settings
from readings_service.core.store import After
from readings_service.metrics import QUERY_PATH, REGISTRY
from readings_service.query_path import select_query_path, wants_raw_pages
from tests.conftest import opener_of


class ParsedStore:
    """A store with parsed pages only (no data)."""

    async def write(self, readings: Any) -> None:
        pass

    async def scan_bucket(self, day: date, bucket: int, start_ms: int, end_ms: int, after: After | None) -> Any:
        return
        yield []

    async def scan_device(self, device_id: uuid.UUID, day: date, start_ms: int, end_ms: int) -> Any:
        return
        yield []

    async def latest(self, device_id: uuid.UUID) -> Any:
        return None

    async def ping(self) -> None:
        pass


class RawStore(ParsedStore):
    """A store that also hands over raw pages (no data)."""

    async def scan_bucket_raw(self, day: date, bucket: int, start_ms: int, end_ms: int, after: After | None) -> Any:
        return
        yield b""

    async def scan_device_raw(self, device_id: uuid.UUID, day: date, start_ms: int, end_ms: int) -> Any:
        return
        yield b""


@pytest.fixture
def without_native(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled module cannot be imported, as on a machine without cargo."""
    real = importlib.import_module

    def import_module(name: str, package: str | None = None) -> ModuleType:
        if name == "readings_native":
            raise ImportError("No module named 'readings_native'")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", import_module)


def gauge(path: str) -> float | None:
    return REGISTRY.get_sample_value("readings_query_path", {"path": path})


class TestWithoutTheModule:
    def test_auto_falls_back_and_says_so_once(self, without_native: None, caplog: pytest.LogCaptureFixture) -> None:
        """auto serves on the pure path, logs one warning naming the reason, and the metric says python."""
        with caplog.at_level(logging.INFO, "readings_service"):
            path = select_query_path(QuerySettings(native="auto"), RawStore())
        assert "python" == path.name
        assert [
            (
                "WARNING",
                "range queries: python path (the compiled module is not installed (No module named "
                "'readings_native'); scripts/bootstrap builds it when cargo is installed)",
            )
        ] == [(r.levelname, r.getMessage()) for r in caplog.records]
        assert (1.0, 0.0) == (gauge("python"), gauge("native"))

    def test_on_refuses_to_start(self, without_native: None) -> None:
        """on without the module is a configuration error naming the setting."""
        with pytest.raises(ConfigError, match=r"query\.native = 'on'"):
            select_query_path(QuerySettings(native="on"), RawStore())

    def test_store_opens_no_raw_session(self, without_native: None) -> None:
        """Without the module the store is not asked for raw pages."""
        assert not wants_raw_pages(QuerySettings(native="auto"))

    async def test_health_names_the_path(self, without_native: None, aiohttp_client: Any) -> None:
        """/health says which path serves."""
        client = await aiohttp_client(create_app(Settings(auth=AuthSettings(required=False)), opener_of(RawStore())))
        assert {"status": "ok", "query_path": "python"} == await (await client.get("/health")).json()


class TestWithTheModule:
    @pytest.fixture(autouse=True)
    def _module(self) -> None:
        pytest.importorskip("readings_native")

    def test_auto_chooses_native_on_a_raw_store(self) -> None:
        """auto with the module and a store with raw pages: the compiled path, and the metric says so."""
        assert "native" == select_query_path(QuerySettings(native="auto"), RawStore()).name
        assert (0.0, 1.0) == (gauge("python"), gauge("native"))
        assert wants_raw_pages(QuerySettings(native="auto"))

    def test_off_chooses_python(self) -> None:
        """off always serves on the pure path, and the store is not asked for raw pages."""
        assert "python" == select_query_path(QuerySettings(native="off"), RawStore()).name
        assert not wants_raw_pages(QuerySettings(native="off"))

    def test_a_store_without_raw_pages(self) -> None:
        """auto falls back on a store without raw pages; on refuses it."""
        assert "python" == select_query_path(QuerySettings(native="auto"), ParsedStore()).name
        with pytest.raises(ConfigError, match="has no raw pages"):
            select_query_path(QuerySettings(native="on"), ParsedStore())

    async def test_health_names_the_path(self, aiohttp_client: Any) -> None:
        """/health says which path serves."""
        client = await aiohttp_client(create_app(Settings(auth=AuthSettings(required=False)), opener_of(RawStore())))
        assert {"status": "ok", "query_path": "native"} == await (await client.get("/health")).json()


def test_metric_is_registered() -> None:
    """readings_query_path exists with both labels."""
    assert QUERY_PATH is not None
    assert gauge("python") is not None

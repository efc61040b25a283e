"""The real aiohttp app on the in-memory store, for tests of HTTP behaviour that needs no storage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from readings_service.api.app import create_app
from readings_service.config import Settings
from readings_service.core.memory_store import MemoryStore
from tests.conftest import opener_of, settings_for


@pytest.fixture
def settings() -> Settings:
    """The project's configuration with authentication off (tests/unit/api/test_auth.py turns it on)."""
    return settings_for()


@pytest.fixture
def store(settings: Settings) -> MemoryStore:
    return MemoryStore(buckets=settings.storage.buckets)


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Any], store: MemoryStore, settings: Settings
) -> TestClient[web.Request, web.Application]:
    """An HTTP client of the app on the in-memory store."""
    return await aiohttp_client(create_app(settings, opener_of(store)))  # type: ignore[no-any-return]

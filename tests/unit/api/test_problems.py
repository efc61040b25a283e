"""Every error a handler raises becomes problem+json; an unexpected one a logged 500 that hides its message."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any

import pytest

from readings_service.api.app import create_app
from readings_service.config import AuthSettings, Settings
from readings_service.core.model import Reading
from readings_service.core.store import After, Pages, StoredRow
from readings_service.errors import StoreUnavailable
from tests.conftest import opener_of

SECRET = "cassandra at 10.9.8.7 said: table ks.readings is corrupt"
DEVICE = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"


class BrokenStore:
    """A ReadingStore whose every call fails with an error the service does not expect."""

    async def write(self, readings: Sequence[Reading]) -> None:
        raise RuntimeError(SECRET)

    async def scan_bucket(self, day: date, bucket: int, start_ms: int, end_ms: int, after: After | None) -> Pages:
        raise RuntimeError(SECRET)
        yield []

    async def scan_device(self, device_id: uuid.UUID, day: date, start_ms: int, end_ms: int) -> Pages:
        raise RuntimeError(SECRET)
        yield []

    async def latest(self, device_id: uuid.UUID) -> StoredRow | None:
        raise RuntimeError(SECRET)

    async def ping(self) -> None:
        raise StoreUnavailable("Cassandra: NoHostAvailable")


@pytest.fixture
async def client(aiohttp_client: Any) -> Any:
    return await aiohttp_client(create_app(Settings(auth=AuthSettings(required=False)), opener_of(BrokenStore())))


RANGE = "start=2026-06-01T00:00:00Z&end=2026-06-02T00:00:00Z"
READING = {"device_id": DEVICE, "ts": 1_780_000_000_000, "temperature": 1.0, "pressure": 2.0}


class TestUnexpectedErrors:
    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("GET", f"/devices/{DEVICE}/latest", None),
            ("POST", "/readings", READING),
            ("GET", f"/readings?{RANGE}", None),
            ("GET", f"/devices/{DEVICE}/readings?{RANGE}", None),
        ],
    )
    async def test_become_a_500_problem(
        self, client: Any, caplog: pytest.LogCaptureFixture, method: str, path: str, body: Any
    ) -> None:
        """The client gets a problem naming only the exception type; the log gets the traceback, once."""
        caplog.set_level(logging.ERROR, logger="readings_service")
        response = await client.request(method, path, json=body)
        assert 500 == response.status
        assert "application/problem+json" == response.content_type
        expected = {
            "type": "about:blank",
            "title": "Internal error",
            "status": 500,
            "detail": "unexpected RuntimeError; the service logged the details",
        }
        assert expected == await response.json(content_type=None)
        errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
        assert 1 == len(errors)
        assert errors[0].exc_info is not None
        assert SECRET == str(errors[0].exc_info[1])
        assert path.split("?")[0] in errors[0].getMessage()


class TestKnownErrors:
    async def test_service_errors_keep_their_status(self, client: Any) -> None:
        """A ServiceError keeps its own status, title and headers."""
        response = await client.get("/ready")
        assert 503 == response.status
        assert "1" == response.headers["Retry-After"]
        assert "Storage unavailable" == (await response.json(content_type=None))["title"]

    @pytest.mark.parametrize(("method", "path", "status"), [("GET", "/nowhere", 404), ("PUT", "/readings", 405)])
    async def test_aiohttp_errors_keep_their_status(self, client: Any, method: str, path: str, status: int) -> None:
        """aiohttp's own HTTP errors still become problem+json with their own status."""
        response = await client.request(method, path)
        assert status == response.status
        assert "application/problem+json" == response.content_type


class TestRangeParameterEdges:
    """Parameter values that were answered with a 500."""

    @pytest.mark.parametrize(
        ("query", "parameter"),
        [
            ("start=0&end=9999999999999999", "end"),
            ("start=-9999999999999999&end=0", "start"),
            ("start=0&end=1&limit=%C2%B2", "limit"),
            ("start=0&end=1&after=9999999999999999,6ba7b810-9dad-11d1-80b4-00c04fd430c8", "after"),
        ],
    )
    async def test_bad_range_parameters_are_400(self, client: Any, query: str, parameter: str) -> None:
        """Epoch ms beyond the year 9999 and a non-ASCII digit as limit are a 400 naming the parameter."""
        for path in ("/readings", f"/devices/{DEVICE}/readings"):
            response = await client.get(f"{path}?{query}")
            assert 400 == response.status, path
            assert parameter == (await response.json(content_type=None))["parameter"]

"""A load's sink that posts readings to a running service (`POST /readings`, NDJSON batches)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import aiohttp
import orjson

from readings_service.core.model import Reading
from readings_service.errors import StoreFailure, StoreUnavailable

NDJSON = "application/x-ndjson"
# Answers that a later retry may cure; the loader retries them (every write is an idempotent upsert).
_TRANSIENT = frozenset({429, 502, 503, 504})


class HttpSink:
    """Writes a batch as one NDJSON request; 200 means the service's store acknowledged every reading."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None = None) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + "/readings"
        self._headers = {"Content-Type": NDJSON}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"

    async def write(self, readings: Sequence[Reading]) -> None:
        if not readings:
            return
        dumps, line = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        body = b"".join(
            [
                dumps(
                    {
                        "device_id": str(r.device_id),
                        "ts": r.ts_ms,
                        "temperature": r.temperature,
                        "pressure": r.pressure,
                    },
                    option=line,
                )
                for r in readings
            ]
        )
        try:
            async with self._session.post(self._url, data=body, headers=self._headers) as response:
                if response.status == 200:
                    return
                detail = _detail(await response.read())
        except (aiohttp.ClientError, TimeoutError) as error:
            raise StoreUnavailable(f"{self._url}: {type(error).__name__}: {error}") from error
        kind = StoreUnavailable if response.status in _TRANSIENT else StoreFailure
        raise kind(f"{self._url} answered {response.status}: {detail}")


def _detail(body: bytes) -> str:
    """The problem+json `detail` of an error answer, or the start of the body."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", errors="replace")
    detail = document.get("detail") if isinstance(document, dict) else None
    return detail if isinstance(detail, str) else body[:200].decode("utf-8", errors="replace")


@contextlib.asynccontextmanager
async def open_http_sink(base_url: str, timeout_s: float, token: str | None = None) -> AsyncIterator[HttpSink]:
    """A sink on one client session (connections are reused across batches); `timeout_s` per request; `token`
    is sent as `Authorization: Bearer`."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        yield HttpSink(session, base_url, token)

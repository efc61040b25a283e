"""Admission control: at most N requests of a kind at once; the rest wait briefly, then are shed with 503."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from readings_service.errors import Overloaded
from readings_service.metrics import REQUESTS_SHED


class Admission:
    """A bounded number of slots; a request that finds none within `queue_timeout_s` raises Overloaded."""

    def __init__(self, kind: str, limit: int, queue_timeout_s: float) -> None:
        self._kind = kind
        self._limit = limit
        self._queue_timeout_s = queue_timeout_s
        self._slots = asyncio.Semaphore(limit)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the body of the `async with`."""
        try:
            async with asyncio.timeout(self._queue_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            REQUESTS_SHED.labels(self._kind).inc()
            raise Overloaded(
                f"this instance already serves {self._limit} {self._kind} requests; retry shortly"
            ) from None
        try:
            yield
        finally:
            self._slots.release()

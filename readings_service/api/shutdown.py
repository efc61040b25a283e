"""Clean shutdown: stop accepting, let requests finish for at most the timeout, then cut open streams visibly.

aiohttp's own graceful shutdown waits up to the timeout for handlers and then again as long for cancelled ones,
and the loop's teardown finally cuts a stream mid-record without its error line. Here the streams are cut at
the deadline by cancelling their handlers, each of which then writes the stream's error line, so a client can
always tell the cut stream from a complete one, and the process exits after about the timeout, not twice it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from aiohttp import web

log = logging.getLogger("readings_service")


class Shutdown:
    """Tracks open streams and cuts them when the shutdown deadline passes."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.draining = False
        self._streams: set[asyncio.Task[Any]] = set()
        self._deadline: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def stream(self) -> Iterator[None]:
        """Register the current handler as an open stream for the duration of the `with`."""
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._streams.discard(task)

    async def on_shutdown(self, app: web.Application) -> None:
        self.draining = True
        log.info(
            "shutting down: no new connections; %d open stream(s) get up to %.1f s to finish",
            len(self._streams),
            self.timeout_s,
        )
        self._deadline = asyncio.create_task(self._cut_at_deadline())

    async def _cut_at_deadline(self) -> None:
        await asyncio.sleep(self.timeout_s)
        if self._streams:
            log.warning("shutdown deadline reached: cutting %d open stream(s) with the error line", len(self._streams))
        for task in list(self._streams):
            task.cancel()

    async def on_cleanup(self, app: web.Application) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deadline
        log.info("shut down cleanly")

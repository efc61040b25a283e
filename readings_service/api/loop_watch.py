"""How long work holds the event loop: a periodic timer's lateness, as a histogram."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from readings_service.metrics import EVENT_LOOP_STALL

INTERVAL_S = 0.01


async def watch_loop(interval_s: float = INTERVAL_S) -> None:
    """Sleep `interval_s` again and again, recording how much later than asked each wake-up came.

    A wake-up is late by as long as some callback held the loop (plus the scheduler's jitter, well under the
    histogram's first bucket), so the histogram's tail is the loop's worst stalls.
    """
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval_s)
        EVENT_LOOP_STALL.observe(max(0.0, loop.time() - started - interval_s))


async def loop_watch_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run watch_loop while the app runs (a cleanup_ctx)."""
    task = asyncio.ensure_future(watch_loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

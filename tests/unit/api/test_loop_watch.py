"""The event-loop stall histogram sees work that holds the loop."""

from __future__ import annotations

import asyncio
import contextlib
import time

from readings_service.api.loop_watch import watch_loop
from readings_service.metrics import REGISTRY


def late_over(seconds: float) -> float:
    """Wake-ups recorded later than `seconds` so far."""
    total = REGISTRY.get_sample_value("readings_event_loop_stall_seconds_count") or 0.0
    within = REGISTRY.get_sample_value("readings_event_loop_stall_seconds_bucket", {"le": str(seconds)}) or 0.0
    return total - within


class TestWatchLoop:
    async def test_a_blocking_callback_is_recorded(self) -> None:
        """A callback that holds the loop for 60 ms shows up as a wake-up over 50 ms late."""
        before = late_over(0.05)
        watcher = asyncio.ensure_future(watch_loop(0.005))
        try:
            await asyncio.sleep(0.02)
            time.sleep(0.06)  # noqa: ASYNC251 - holds the loop, as a CPU-bound handler would
            async with asyncio.timeout(5):
                while late_over(0.05) == before:  # noqa: ASYNC110 - the watcher records on its own schedule
                    await asyncio.sleep(0.005)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        assert late_over(0.05) >= before + 1

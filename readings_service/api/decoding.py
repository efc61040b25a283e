"""Decoding and validating POST bodies: small ones on the event loop, large ones on a few dedicated threads."""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

from readings_service.core.ingest import Batch, Body, parse_body
from readings_service.core.timestamps import TimestampLimits

# A reading takes ~15 µs to decode and validate, so 64 KiB (~600 readings) holds the loop for ~10 ms; above it
# the thread hop (~0.1-0.2 ms) is cheap next to the stall it saves.
INLINE_BYTES = 64 * 1024
# Decoding holds the GIL, so more threads add no throughput, only memory: each can hold one large body's
# decoded objects. Two keep a mid-sized body from waiting behind a 16 MiB one.
THREADS = 2


class BodyDecoder:
    """parse_body for request handlers, off the loop above `inline_bytes`; close() when the app stops."""

    def __init__(self, threads: int = THREADS, inline_bytes: int = INLINE_BYTES) -> None:
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="readings-decode")
        self._inline_bytes = inline_bytes

    async def parse(self, body: Body, content_type: str, *, max_items: int, limits: TimestampLimits) -> Batch:
        """The body's readings and problems; raises what parse_body raises.

        A cancelled caller does not stop a decode already running: its thread finishes and the result is dropped.
        """
        parse = functools.partial(parse_body, body, content_type, max_items=max_items, limits=limits)
        if len(body) <= self._inline_bytes:
            return parse()
        return await asyncio.get_running_loop().run_in_executor(self._executor, parse)

    def close(self) -> None:
        """Stop the threads once their current decode ends; queued decodes are dropped."""
        self._executor.shutdown(wait=False, cancel_futures=True)

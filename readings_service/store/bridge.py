"""Await the driver's ResponseFuture on an asyncio loop without blocking it.

The driver calls back on its own I/O thread (or in the caller's thread when a result is already there); every
callback here only hands the page over with `call_soon_threadsafe`, so it can never raise and strand a waiter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from cassandra import (
    CoordinationFailure,
    OperationTimedOut,
    Timeout,
    Unavailable,
)
from cassandra.cluster import NoHostAvailable, Session
from cassandra.connection import ConnectionException
from cassandra.protocol import IsBootstrappingErrorMessage, OverloadedErrorMessage

from readings_service.errors import StoreFailure, StoreUnavailable
from readings_service.metrics import CASSANDRA_DURATION, CASSANDRA_ERRORS, CASSANDRA_REQUESTS, PAGES_REQUESTED

# Errors a retry later can cure. NoHostAvailable is not a DriverException, so it is listed on its own.
_TRANSIENT: tuple[type[BaseException], ...] = (
    NoHostAvailable,
    OperationTimedOut,
    Timeout,
    Unavailable,
    CoordinationFailure,
    ConnectionException,
    OverloadedErrorMessage,
    IsBootstrappingErrorMessage,
    TimeoutError,
    ConnectionError,
)


def translate(error: BaseException) -> Exception:
    """Map a driver error to the service's store errors, keeping the cause."""
    if isinstance(error, StoreUnavailable | StoreFailure):
        return error
    kind = StoreUnavailable if isinstance(error, _TRANSIENT) else StoreFailure
    reason = str(error) or "no answer in time"
    translated = kind(f"Cassandra: {type(error).__name__}: {reason}")
    translated.__cause__ = error
    return translated


class _PageSlot:
    """Receives one page at a time from the driver thread into an asyncio future."""

    __slots__ = ("future", "has_more", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.has_more = False

    def renew(self) -> None:
        self.future = self.loop.create_future()

    def close(self) -> None:
        """Drop a page still in flight: an error landing in a future nobody awaits would be logged."""
        self.future.cancel()

    def on_page(self, rows: Any, has_more: bool) -> None:
        if not self.future.done():
            self.has_more = has_more
            self.future.set_result(rows)

    def on_error(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(translate(error))


def _register(response: Any, slot: _PageSlot) -> None:
    loop = slot.loop

    def page(rows: Any) -> None:
        loop.call_soon_threadsafe(slot.on_page, rows, response.has_more_pages)

    def error(exc: BaseException) -> None:
        loop.call_soon_threadsafe(slot.on_error, exc)

    response.add_callbacks(page, error)


def _send(session: Session, statement: Any, params: Any, timeout_s: float, kind: str) -> Any:
    """Start one request; counted by kind, errors raised synchronously (NoHostAvailable) translated."""
    CASSANDRA_REQUESTS.labels(kind).inc()
    try:
        return session.execute_async(statement, params, timeout=timeout_s)
    except Exception as error:
        CASSANDRA_ERRORS.labels(kind, type(error).__name__).inc()
        raise translate(error) from error


async def _await_page(slot: _PageSlot, timeout_s: float, kind: str) -> Any:
    """The slot's next page, timed; the driver arms its own timer per page, this one also covers the hand-over."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s * 2):
            rows = await slot.future
    except TimeoutError as error:
        CASSANDRA_ERRORS.labels(kind, "TimeoutError").inc()
        raise translate(error) from error
    except (StoreUnavailable, StoreFailure) as error:
        CASSANDRA_ERRORS.labels(kind, type(error.__cause__ or error).__name__).inc()
        raise
    CASSANDRA_DURATION.labels(kind).observe(time.perf_counter() - started)
    return rows


async def execute(session: Session, statement: Any, params: Any, timeout_s: float, kind: str = "write") -> list[Any]:
    """Run one statement and return its first (only) page of rows."""
    slot = _PageSlot(asyncio.get_running_loop())
    response = _send(session, statement, params, timeout_s, kind)
    _register(response, slot)
    try:
        rows: list[Any] = await _await_page(slot, timeout_s, kind)
        return rows
    finally:
        response.clear_callbacks()


async def pages(
    session: Session,
    statement: Any,
    params: Any,
    timeout_s: float,
    first_page_rows: int | None = None,
    kind: str = "scan",
) -> AsyncGenerator[Any, None]:
    """Yield the result's pages (row lists; bytes on a raw-page session), each next one requested on hand-over.

    At most two pages exist per query: the one the caller holds and the one in flight. `first_page_rows`
    makes the first page smaller than the statement's fetch size (a fast first byte); later pages use the
    statement's. Closing the generator stops the paging (the in-flight page, or its error, is dropped).
    """
    slot = _PageSlot(asyncio.get_running_loop())
    later_fetch_size = statement.fetch_size
    if first_page_rows is not None and params is not None:
        statement = statement.bind(params)
        statement.fetch_size = min(first_page_rows, later_fetch_size)
        params = None
    response = _send(session, statement, params, timeout_s, kind)
    PAGES_REQUESTED.inc()
    _register(response, slot)
    try:
        while True:
            rows = await _await_page(slot, timeout_s, kind)
            more = slot.has_more
            if more:
                slot.renew()
                response.message.fetch_size = later_fetch_size  # the request re-sent for every page
                response.start_fetching_next_page()
                CASSANDRA_REQUESTS.labels(kind).inc()
                PAGES_REQUESTED.inc()
            if rows:
                yield rows
            if not more:
                return
    finally:
        response.clear_callbacks()
        slot.close()


async def gather_bounded(calls: list[Callable[[], Any]], limit: int) -> None:
    """Await every call's coroutine with at most `limit` running at once; the first failure cancels the rest."""
    if not calls:
        return
    iterator = iter(calls)

    async def worker() -> None:
        for call in iterator:
            await call()

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(limit, len(calls))):
                group.create_task(worker())
    except BaseExceptionGroup as group_error:
        # Report the first failure as itself: callers map single errors to responses.
        raise group_error.exceptions[0] from None

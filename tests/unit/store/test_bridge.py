"""The driver bridge on a fake ResponseFuture that calls back from another thread, as the driver's I/O thread does.

The event loop runs in debug mode, where asyncio refuses (RuntimeError) any loop or future operation from a
thread other than the loop's: a page handed over without `call_soon_threadsafe` would fail the test.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cassandra import InvalidRequest, OperationTimedOut
from cassandra.cluster import NoHostAvailable

from readings_service.errors import StoreFailure, StoreUnavailable
from readings_service.store.bridge import _PageSlot, execute, gather_bounded, pages

DEADLINE_S = 5.0
# A page is rows, or an exception the driver hands to the errback instead.
Outcome = list[Any] | BaseException


class FakeResponseFuture:
    """The part of cassandra.cluster.ResponseFuture the bridge uses.

    Every page is delivered on a new thread; the pages whose index is in `held` wait until `gate` is set.
    `inline=True` calls back in the registering thread instead, as the driver does when the result is already
    there. `late=True` keeps calling the callbacks after `clear_callbacks`, as the driver's thread may when it
    was already on its way; `forget` then drops them, as the driver drops a finished request.
    """

    def __init__(
        self,
        outcomes: list[Outcome],
        *,
        held: frozenset[int] = frozenset(),
        inline: bool = False,
        late: bool = False,
        answer: bool = True,
    ) -> None:
        self.outcomes = outcomes
        self.held = held
        self.gate = threading.Event()
        self.inline = inline
        self.late = late
        self.answer = answer
        self.has_more_pages = False
        self.message = type("QueryMessage", (), {"fetch_size": None})()
        self.page_fetch_sizes: list[int | None] = []
        self.fetches = 0
        self.delivered = 0
        self.cleared = False
        self.callback_threads: list[int] = []
        self.threads: list[threading.Thread] = []
        self._index = 0
        self._callbacks: tuple[Callable[[Any], None], Callable[[BaseException], None]] | None = None

    def add_callbacks(self, callback: Callable[[Any], None], errback: Callable[[BaseException], None]) -> None:
        self._callbacks = (callback, errback)
        self._deliver(self._index)

    def start_fetching_next_page(self) -> None:
        self.fetches += 1
        self.page_fetch_sizes.append(self.message.fetch_size)
        self._index += 1
        self._deliver(self._index)

    def clear_callbacks(self) -> None:
        self.cleared = True
        if not self.late:
            self._callbacks = None

    def forget(self) -> None:
        self._callbacks = None

    def _deliver(self, index: int) -> None:
        if not self.answer:
            return
        if self.inline:
            self._fire(index)
            return
        thread = threading.Thread(target=self._fire, args=(index,), name=f"fake-driver-{index}")
        self.threads.append(thread)
        thread.start()

    def _fire(self, index: int) -> None:
        if index in self.held and not self.gate.wait(DEADLINE_S):
            return
        outcome = self.outcomes[index]
        self.has_more_pages = index + 1 < len(self.outcomes)
        callbacks = self._callbacks
        if callbacks is None:
            return
        self.callback_threads.append(threading.get_ident())
        self.delivered += 1
        if isinstance(outcome, BaseException):
            callbacks[1](outcome)
        else:
            callbacks[0](outcome)


class FakeStatement:
    def __init__(self, fetch_size: int = 50) -> None:
        self.fetch_size = fetch_size
        self.bound: Any = None

    def bind(self, params: Any) -> FakeStatement:
        bound = FakeStatement(self.fetch_size)
        bound.bound = params
        return bound


class FakeSession:
    """Hands out the given future for every request, recording the statements sent."""

    def __init__(self, future: FakeResponseFuture | BaseException) -> None:
        self.future = future
        self.sent: list[tuple[Any, Any, float]] = []

    def execute_async(self, statement: Any, params: Any, timeout: float) -> FakeResponseFuture:
        self.sent.append((statement, params, timeout))
        if isinstance(self.future, BaseException):
            raise self.future
        return self.future


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What the running loop's exception handler received; debug mode on, so wrong-thread calls raise."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_debug(True)
    loop.set_exception_handler(lambda _, context: errors.append(context))
    yield errors
    loop.set_exception_handler(None)
    loop.set_debug(False)


async def settle(future: FakeResponseFuture) -> None:
    """Wait for the fake's threads, then let the loop run what they scheduled."""
    for thread in future.threads:
        await asyncio.to_thread(thread.join, DEADLINE_S)
        assert not thread.is_alive()
    for _ in range(3):
        await asyncio.sleep(0)


async def bounded(awaitable: Any) -> Any:
    async with asyncio.timeout(DEADLINE_S):
        return await awaitable


async def drain(source: AsyncIterator[list[Any]]) -> list[list[Any]]:
    return [page async for page in source]


class TestExecute:
    async def test_result_from_the_driver_thread_arrives_on_the_loop(self, loop_errors: list[Any]) -> None:
        """A result called back on another thread is returned to the awaiting coroutine."""
        future = FakeResponseFuture([[("a", 1)]])
        rows = await bounded(execute(FakeSession(future), FakeStatement(), (1,), 1.0, "write"))
        await settle(future)
        assert [("a", 1)] == rows
        assert threading.get_ident() not in future.callback_threads
        assert future.cleared
        assert [] == loop_errors

    async def test_result_already_there_is_called_back_inline(self, loop_errors: list[Any]) -> None:
        """The driver calls back in the caller's thread when the result is in; that works too."""
        future = FakeResponseFuture([[("a", 1)]], inline=True)
        assert [("a", 1)] == await bounded(execute(FakeSession(future), FakeStatement(), None, 1.0))
        assert [threading.get_ident()] == future.callback_threads
        assert [] == loop_errors

    @pytest.mark.parametrize(
        ("error", "kind", "message"),
        [
            (OperationTimedOut("no reply"), StoreUnavailable, "Cassandra: OperationTimedOut: errors=no reply"),
            (InvalidRequest("bad column"), StoreFailure, "Cassandra: InvalidRequest: bad column"),
        ],
    )
    async def test_errors_arrive_translated(
        self, loop_errors: list[Any], error: Exception, kind: type[Exception], message: str
    ) -> None:
        """An error called back from the driver thread is raised on the loop as the store's error, caused by it."""
        future = FakeResponseFuture([error])
        with pytest.raises(kind, match=message) as raised:
            await bounded(execute(FakeSession(future), FakeStatement(), None, 1.0))
        await settle(future)
        assert error is raised.value.__cause__
        assert kind is type(raised.value)
        assert future.cleared
        assert [] == loop_errors

    async def test_no_host_raised_when_sending_is_unavailable(self) -> None:
        """NoHostAvailable, raised by execute_async itself and not a DriverException, means unavailable."""
        session = FakeSession(NoHostAvailable("Unable to connect to any servers", {}))
        with pytest.raises(StoreUnavailable, match="NoHostAvailable") as raised:
            await execute(session, FakeStatement(), None, 1.0)
        assert isinstance(raised.value.__cause__, NoHostAvailable)

    async def test_no_answer_times_out(self, loop_errors: list[Any]) -> None:
        """A driver that never calls back ends in StoreUnavailable after twice the request timeout."""
        future = FakeResponseFuture([[1]], answer=False)
        with pytest.raises(StoreUnavailable, match="no answer in time"):
            await bounded(execute(FakeSession(future), FakeStatement(), None, 0.01))
        assert future.cleared
        assert [] == loop_errors


class TestPages:
    async def test_paging_continues_to_the_last_page(self, loop_errors: list[Any]) -> None:
        """Every page arrives in order from driver threads; empty pages are skipped; the first page is smaller and
        later pages are asked for at the statement's fetch size."""
        future = FakeResponseFuture([[1, 2], [], [3, 4, 5], [6]])
        session = FakeSession(future)
        statement = FakeStatement(fetch_size=50)
        scan = pages(session, statement, (7,), 1.0, first_page_rows=2)
        assert [[1, 2], [3, 4, 5], [6]] == await bounded(drain(scan))
        await settle(future)
        sent, params, _ = session.sent[0]
        assert (2, (7,), None) == (sent.fetch_size, sent.bound, params)
        assert 50 == statement.fetch_size
        assert [50, 50, 50] == future.page_fetch_sizes
        assert 3 == future.fetches
        assert threading.get_ident() not in future.callback_threads
        assert future.cleared
        assert [] == loop_errors

    async def test_next_page_is_requested_while_the_caller_holds_one(self, loop_errors: list[Any]) -> None:
        """The next page is fetched as soon as a page is handed over, and no further: two pages at most."""
        future = FakeResponseFuture([[1], [2], [3]])
        scan = pages(FakeSession(future), FakeStatement(), None, 1.0)
        first = await bounded(anext(scan))
        assert ([1], 1) == (first, future.fetches)
        assert [[2], [3]] == await bounded(drain(scan))
        await settle(future)
        assert 2 == future.fetches
        assert [] == loop_errors

    async def test_error_on_a_later_page(self, loop_errors: list[Any]) -> None:
        """A page that fails after others were handed over raises the store's error from the generator."""
        error = OperationTimedOut("page 2")
        future = FakeResponseFuture([[1], error])
        scan = pages(FakeSession(future), FakeStatement(), None, 1.0)
        assert [1] == await bounded(anext(scan))
        with pytest.raises(StoreUnavailable, match="page 2"):
            await bounded(anext(scan))
        await settle(future)
        assert future.cleared
        assert [] == loop_errors


class TestCancellation:
    async def test_cancelled_execute_ignores_a_late_result(self, loop_errors: list[Any]) -> None:
        """Cancelling the awaiting task is safe even when the driver calls back afterwards."""
        future = FakeResponseFuture([[1]], held=frozenset({0}), late=True)
        task = asyncio.create_task(execute(FakeSession(future), FakeStatement(), None, 1.0))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await bounded(task)
        assert future.cleared
        future.gate.set()
        await settle(future)
        assert 1 == future.delivered
        assert [] == loop_errors

    @pytest.mark.parametrize("how", ["aclose", "cancel"])
    @pytest.mark.parametrize("late_page", [[2], OperationTimedOut("late")], ids=["rows", "error"])
    async def test_stopping_a_scan_stops_the_paging(self, loop_errors: list[Any], how: str, late_page: Outcome) -> None:
        """Closing the page generator, or cancelling its consumer, while a page is in flight asks for no more
        pages, and the page (or error) that lands afterwards is dropped: nothing is logged, even once the
        driver forgets the request."""
        future = FakeResponseFuture([[1], late_page, [3]], held=frozenset({1}), late=True)
        scan = pages(FakeSession(future), FakeStatement(), None, 1.0)
        assert [1] == await bounded(anext(scan))
        if how == "aclose":
            await scan.aclose()
        else:
            task = asyncio.create_task(anext(scan))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await bounded(task)
        assert future.cleared
        future.gate.set()
        await settle(future)
        assert (1, 2) == (future.fetches, future.delivered)
        future.forget()
        del scan
        gc.collect()
        assert [] == loop_errors

    async def test_a_hand_over_on_the_wrong_thread_is_caught(self, loop_errors: list[Any]) -> None:
        """The harness's check: resolving the slot directly on another thread raises there in debug mode."""
        slot = _PageSlot(asyncio.get_running_loop())
        slot.future.add_done_callback(lambda _: None)  # as an awaiting task would
        raised: list[BaseException] = []

        def wrong() -> None:
            try:
                slot.on_page([1], False)
            except RuntimeError as error:
                raised.append(error)

        thread = threading.Thread(target=wrong)
        thread.start()
        await asyncio.to_thread(thread.join, DEADLINE_S)
        assert [True] == [str(error).startswith("Non-thread-safe operation") for error in raised]


class TestGatherBounded:
    async def test_at_most_limit_at_once_and_the_first_failure_is_raised(self) -> None:
        """No more than `limit` calls run together; the first failure is raised as itself and cancels the rest."""
        running = 0
        peak = 0
        started: list[int] = []

        def call(index: int) -> Callable[[], Any]:
            async def run() -> None:
                nonlocal running, peak
                started.append(index)
                running += 1
                peak = max(peak, running)
                try:
                    await asyncio.sleep(0)
                    if index == 4:
                        raise StoreUnavailable("Cassandra: injected")
                    await asyncio.sleep(0)
                finally:
                    running -= 1

            return run

        await bounded(gather_bounded([call(i) for i in range(4)], 2))
        assert (2, [0, 1, 2, 3]) == (peak, sorted(started))
        started.clear()
        with pytest.raises(StoreUnavailable, match="injected"):
            await bounded(gather_bounded([call(i) for i in range(4, 20)], 3))
        assert len(started) < 16

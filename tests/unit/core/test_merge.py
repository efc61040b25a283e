"""Tests for the page-batched k-way merge."""

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from itertools import chain, pairwise
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from readings_service.core.merge import merge_sorted_pages
from tests.conftest import examples

T = TypeVar("T")

# A row is (key, source index, position in source): unique, with ties on the key.
Row = tuple[int, int, int]
DEADLINE = 5.0


def row_key(row: Row) -> int:
    """Order rows by their key alone, so rows from different sources tie."""
    return row[0]


def run(awaitable: Callable[[], Awaitable[T]]) -> T:
    """Run a test body on a fresh event loop, failing it if it hangs."""

    async def bounded() -> T:
        async with asyncio.timeout(DEADLINE):
            return await awaitable()

    return asyncio.run(bounded())


async def collect(merged: AsyncGenerator[list[T], None]) -> list[list[T]]:
    """Drain the merge into a list of its chunks."""
    async with contextlib.aclosing(merged):
        return [chunk async for chunk in merged]


class RecordingSource:
    """An async generator over fixed pages that records what happened to it."""

    def __init__(self, pages: Sequence[Sequence[Row]], *, yield_to_loop: bool = False) -> None:
        self.pages = pages
        self.yield_to_loop = yield_to_loop
        self.pages_requested = 0
        self.closed = False

    async def __call__(self) -> AsyncIterator[Sequence[Row]]:
        """Start a fresh iteration over the pages."""
        try:
            for page in self.pages:
                self.pages_requested += 1
                if self.yield_to_loop:
                    await asyncio.sleep(0)
                yield page
        finally:
            self.closed = True


def sorted_pages(index: int, keys: list[int], cuts: list[int]) -> list[list[Row]]:
    """Split the sorted ``keys`` of source ``index`` into pages at ``cuts`` (may repeat)."""
    rows = [(key, index, position) for position, key in enumerate(sorted(keys))]
    bounds = [0, *sorted(cut % (len(rows) + 1) for cut in cuts), len(rows)]
    return [rows[start:end] for start, end in pairwise(bounds)]


@st.composite
def paged_sources(draw: st.DrawFn) -> list[list[list[Row]]]:
    """Up to 20 sources of sorted pages, with empty pages, empty sources and many ties."""
    count = draw(st.integers(0, 20))
    high = draw(st.sampled_from([0, 3, 1000]))
    return [
        sorted_pages(
            index,
            draw(st.lists(st.integers(0, high), max_size=30)),
            draw(st.lists(st.integers(0, 31), max_size=6)),
        )
        for index in range(count)
    ]


class TestOrder:
    """The chunks concatenate to every row of every source, sorted by key."""

    @settings(deadline=None, max_examples=examples(200))
    @given(paged_sources(), st.booleans())
    def test_concatenation_equals_sorting_everything(self, pages: list[list[list[Row]]], yield_to_loop: bool) -> None:
        """Same rows, key order; ties may come in any order but none is lost."""
        sources = [RecordingSource(p, yield_to_loop=yield_to_loop) for p in pages]
        everything = list(chain.from_iterable(chain.from_iterable(pages)))

        chunks = run(lambda: collect(merge_sorted_pages([s() for s in sources], row_key)))
        merged = list(chain.from_iterable(chunks))

        assert sorted(row_key(row) for row in merged) == [row_key(row) for row in merged]
        assert sorted(everything) == sorted(merged)
        assert [False] * len(chunks) == [not chunk for chunk in chunks]

    def test_tuple_keys(self) -> None:
        """Any orderable key works, here a tuple."""
        left = [[(1, "b"), (2, "a")], [(2, "c")]]
        right = [[(1, "a")], [], [(2, "b"), (3, "a")]]

        async def pages(fixed: list[list[tuple[int, str]]]) -> AsyncIterator[list[tuple[int, str]]]:
            for page in fixed:
                yield page

        chunks = run(lambda: collect(merge_sorted_pages([pages(left), pages(right)], lambda r: r)))

        expected = [(1, "a"), (1, "b"), (2, "a"), (2, "b"), (2, "c"), (3, "a")]
        assert expected == list(chain.from_iterable(chunks))

    def test_no_sources(self) -> None:
        """Nothing to merge gives no chunks."""
        no_sources: list[AsyncIterator[list[Row]]] = []
        expected: list[list[Row]] = []

        assert expected == run(lambda: collect(merge_sorted_pages(no_sources, row_key)))

    def test_only_empty_pages(self) -> None:
        """Empty pages and empty sources give no chunks, not empty ones."""
        sources = [RecordingSource([[], []]), RecordingSource([]), RecordingSource([[]])]
        expected: list[list[Row]] = []

        assert expected == run(lambda: collect(merge_sorted_pages([s() for s in sources], row_key)))

    def test_plain_async_iterators_are_accepted(self) -> None:
        """A source without ``aclose`` is merged and simply not closed."""

        class Pages:
            def __init__(self, pages: list[list[Row]]) -> None:
                self.pages = iter(pages)

            def __aiter__(self) -> "Pages":
                return self

            async def __anext__(self) -> list[Row]:
                try:
                    return next(self.pages)
                except StopIteration:
                    raise StopAsyncIteration from None

        sources = [Pages([[(1, 0, 0)], [(3, 0, 1)]]), Pages([[(2, 1, 0)]])]

        chunks = run(lambda: collect(merge_sorted_pages(sources, row_key)))

        expected = [(1, 0, 0), (2, 1, 0), (3, 0, 1)]
        assert expected == list(chain.from_iterable(chunks))


class TestPaging:
    """Pages are awaited all at once at first, then only when a buffer runs dry."""

    def test_first_pages_are_requested_concurrently(self) -> None:
        """Each source's first page waits for all the others to be requested."""
        count = 5
        requested: list[int] = []
        everyone_requested = asyncio.Event()

        async def source(index: int) -> AsyncIterator[list[Row]]:
            requested.append(index)
            if len(requested) == count:
                everyone_requested.set()
            # A merge awaiting the sources one by one would never get past this.
            await everyone_requested.wait()
            yield [(index, index, 0)]

        chunks = run(lambda: collect(merge_sorted_pages([source(i) for i in range(count)], row_key)))

        assert [(i, i, 0) for i in range(count)] == list(chain.from_iterable(chunks))

    def test_a_source_is_not_asked_for_more_while_its_rows_are_buffered(self) -> None:
        """Rows up to the smallest buffered last key go out before any page is requested."""
        wide = RecordingSource([[(0, 0, 0), (100, 0, 1)], [(200, 0, 2)]])
        narrow = RecordingSource([[(1, 1, 0)], [(2, 1, 1)], [(300, 1, 2)]])

        async def body() -> list[tuple[list[Row], int, int]]:
            merged = merge_sorted_pages([wide(), narrow()], row_key)
            async with contextlib.aclosing(merged):
                return [(chunk, wide.pages_requested, narrow.pages_requested) async for chunk in merged]

        expected = [
            ([(0, 0, 0), (1, 1, 0)], 1, 1),
            ([(2, 1, 1)], 1, 2),
            ([(100, 0, 1)], 1, 3),
            ([(200, 0, 2)], 2, 3),
            ([(300, 1, 2)], 2, 3),
        ]
        assert expected == run(body)


class TestClosing:
    """Every source is closed by the time the merge has ended, however it ends.

    Each test holds its own references to the sources and checks them before the
    event loop shuts down, so asyncio's finalization of unreferenced async
    generators cannot close them on the merge's behalf.
    """

    def test_sources_are_closed_when_the_consumer_stops_early(self) -> None:
        """Closing the merge after one chunk closes every source."""
        sources = [RecordingSource([[(i, i, 0)], [(i + 10, i, 1)]]) for i in range(4)]

        async def body() -> tuple[list[Row], list[bool]]:
            generators = [s() for s in sources]
            merged = merge_sorted_pages(generators, row_key)
            async with contextlib.aclosing(merged):
                first = await anext(merged)
            return first, [source.closed for source in sources]

        expected = ([(0, 0, 0)], [True] * len(sources))
        assert expected == run(body)

    def test_source_error_propagates_and_closes_the_others(self) -> None:
        """The source's own exception comes out, and the other sources are closed."""
        healthy = [RecordingSource([[(i, i, 0)], [(i + 10, i, 1)]]) for i in range(3)]

        async def failing() -> AsyncIterator[list[Row]]:
            yield [(1, 9, 0)]
            raise LookupError("page 2")

        async def body() -> list[bool]:
            generators = [*(s() for s in healthy), failing()]
            with pytest.raises(LookupError, match="page 2"):
                await collect(merge_sorted_pages(generators, row_key))
            return [source.closed for source in healthy]

        assert [True] * len(healthy) == run(body)

    def test_error_in_a_first_page_stops_the_other_first_fetches(self) -> None:
        """Fetches still running when one fails are cancelled, and their sources closed."""
        closed: list[int] = []
        never = asyncio.Event()

        async def stalled(index: int) -> AsyncIterator[list[Row]]:
            try:
                await never.wait()
                yield [(index, index, 0)]
            finally:
                closed.append(index)

        async def failing() -> AsyncIterator[list[Row]]:
            raise LookupError("page 1")
            yield []

        async def body() -> list[int]:
            generators = [stalled(0), failing(), stalled(2)]
            with pytest.raises(LookupError, match="page 1"):
                await collect(merge_sorted_pages(generators, row_key))
            return sorted(closed)

        stalled_sources = [0, 2]
        assert stalled_sources == run(body)

    def test_sources_are_closed_when_the_merge_is_cancelled(self) -> None:
        """Cancelling the consumer while one source is awaited closes every source."""
        closed: list[int] = []
        waiting = asyncio.Event()
        never = asyncio.Event()

        async def source(index: int) -> AsyncIterator[list[Row]]:
            try:
                yield [(index, index, 0)]
                if index == 0:
                    waiting.set()
                    await never.wait()
                yield [(index + 10, index, 1)]
            finally:
                closed.append(index)

        async def body() -> tuple[bool, list[int]]:
            generators = [source(0), source(1)]
            consumer = asyncio.create_task(collect(merge_sorted_pages(generators, row_key)))
            await waiting.wait()
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            return consumer.cancelled(), sorted(closed)

        cancelled_and_closed = (True, [0, 1])
        assert cancelled_and_closed == run(body)

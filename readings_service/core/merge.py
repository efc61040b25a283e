"""A k-way merge of sorted, paged async sources that awaits per page, never per row."""

import asyncio
import contextlib
from bisect import bisect_right
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparison

__all__ = ["merge_sorted_pages", "next_of_each"]

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K", bound="SupportsRichComparison")


@runtime_checkable
class _SupportsAclose(Protocol):
    def aclose(self) -> Awaitable[object]: ...


async def merge_sorted_pages(
    sources: Sequence[AsyncIterator[Sequence[T]]],
    key: Callable[[T], K],
) -> AsyncGenerator[list[T], None]:
    """Merge sources of pages sorted by ``key`` into non-empty chunks sorted by ``key``.

    The chunks concatenate to every row of every source in ``key`` order; rows with
    equal keys come out in no particular order. The first pages of all sources are
    awaited concurrently; after that, a source is awaited only when every row it has
    delivered has been emitted. Once iteration starts, every source that has an
    ``aclose`` is closed when the merge ends, fails, or is closed or cancelled, and
    an exception from any source propagates.
    """
    async with contextlib.AsyncExitStack() as stack:
        for source in sources:
            if isinstance(source, _SupportsAclose):
                stack.push_async_callback(source.aclose)

        # Per live source: its buffered page and how much of it has been emitted.
        # A page stays in the buffer until it is used up, and is only sliced when
        # emitted, so a partial cut never copies the rest of the page.
        live = list(sources)
        buffers = await _next_nonempty_pages(live)
        offsets = [0] * len(buffers)
        _drop_exhausted(live, buffers, offsets)

        while len(live) > 1:
            chunk, dry = _cut_to_watermark(buffers, offsets, key)
            yield chunk
            pages = await _next_nonempty_pages([live[index] for index in dry])
            for index, page in zip(dry, pages, strict=True):
                buffers[index] = page
                offsets[index] = 0
            _drop_exhausted(live, buffers, offsets)

        if live:
            # A lone source needs no merging: pass its pages straight through.
            rest = buffers[0][offsets[0] :]
            yield list(rest)
            async for page in live[0]:
                if page:
                    yield list(page)


def _cut_to_watermark(
    buffers: list[Sequence[T]],
    offsets: list[int],
    key: Callable[[T], K],
) -> tuple[list[T], list[int]]:
    """Take every buffered row that no source can still undercut, in ``key`` order.

    Advances ``offsets`` past the rows taken and returns them with the indexes of the
    buffers now used up, of which there is at least one.
    """
    # No live source can deliver a key below the last key it has buffered, so
    # everything up to the smallest of those is final.
    watermark = min([key(buffer[-1]) for buffer in buffers])
    chunk: list[T] = []
    runs = 0
    dry: list[int] = []
    for index, buffer in enumerate(buffers):
        start = offsets[index]
        end = bisect_right(buffer, watermark, start, key=key)
        if end > start:
            chunk.extend(buffer[start:end])
            runs += 1
        offsets[index] = end
        if end == len(buffer):
            dry.append(index)
    if runs > 1:
        # Timsort finds the concatenated runs and merges them with galloping,
        # which beats heapq.merge's per-row Python-level heap operations.
        chunk.sort(key=key)
    return chunk, dry


def _drop_exhausted(
    live: list[AsyncIterator[Sequence[T]]],
    buffers: list[Sequence[T]],
    offsets: list[int],
) -> None:
    """Remove, in place, the sources whose buffer is empty because they are exhausted."""
    for index in reversed(range(len(buffers))):
        if not buffers[index]:
            del live[index], buffers[index], offsets[index]


async def _next_nonempty_pages(
    sources: Sequence[AsyncIterator[Sequence[T]]],
) -> list[Sequence[T]]:
    """The next non-empty page of each source (an empty one if it is exhausted), see `_each`."""
    return await _each(sources, _next_nonempty_page)


async def next_of_each(sources: Sequence[AsyncIterator[T]]) -> list[T | None]:
    """The next item of each source, None for an exhausted one; concurrently, failing as `_each` says."""
    return await _each(sources, _next_or_none)


async def _next_or_none(source: AsyncIterator[T]) -> T | None:
    return await anext(source, None)


async def _each(sources: Sequence[AsyncIterator[T]], fetch: Callable[[AsyncIterator[T]], Awaitable[R]]) -> list[R]:
    """`fetch` of each source, concurrently if there are several.

    On failure or cancellation, the fetches still running are cancelled and awaited, so no source is
    mid-iteration when the caller closes it; the first failure (in source order) propagates.
    """
    if len(sources) <= 1:
        # The usual case after the first pages: a task would only add overhead.
        return [await fetch(source) for source in sources]
    tasks = [asyncio.ensure_future(fetch(source)) for source in sources]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        # Retrieving every exception, even when cancelled ourselves, keeps asyncio
        # from logging the ones we do not raise as never retrieved.
        errors = [task.exception() for task in tasks if not task.cancelled()]
    for error in errors:
        if error is not None:
            raise error
    return [task.result() for task in tasks]


async def _next_nonempty_page(source: AsyncIterator[Sequence[T]]) -> Sequence[T]:
    """Return the next non-empty page of ``source``, or an empty one if it is exhausted."""
    async for page in source:
        if page:
            return page
    return ()

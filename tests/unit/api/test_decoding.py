"""BodyDecoder: the same batch whether a body is decoded on the event loop or on a decoding thread."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import orjson
import pytest

from readings_service.api import decoding
from readings_service.api.decoding import BodyDecoder
from readings_service.core.ingest import JSON, NDJSON, Batch, parse_body
from readings_service.core.timestamps import MIN_TS_MS, TimestampLimits
from readings_service.errors import TooLarge

LIMITS = TimestampLimits(MIN_TS_MS, 2**62)


def body_of(content_type: str, count: int) -> bytes:
    """`count` readings, every tenth of them invalid, in `content_type`."""
    items = [
        {"device_id": str(uuid.UUID(int=i % 7)), "ts": i, "temperature": "warm" if i % 10 == 9 else 20.5,
         "pressure": 1000}
        for i in range(count)
    ]  # fmt: skip
    if content_type == JSON:
        return orjson.dumps(items)
    return b"\n".join(orjson.dumps(item) for item in items)


@pytest.fixture
def decoding_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ident of the thread of every parse_body call BodyDecoder makes."""
    threads: list[int] = []

    def recording(*args: Any, **kwargs: Any) -> Batch:
        threads.append(threading.get_ident())
        return parse_body(*args, **kwargs)

    monkeypatch.setattr(decoding, "parse_body", recording)
    return threads


class TestBodyDecoder:
    @pytest.mark.parametrize("content_type", [JSON, NDJSON])
    async def test_large_bodies_decode_on_a_thread_to_the_same_batch(
        self, decoding_threads: list[int], content_type: str
    ) -> None:
        """Above inline_bytes the body is decoded on another thread, into what parse_body returns inline."""
        body = body_of(content_type, 5000)
        decoder = BodyDecoder(inline_bytes=64 * 1024)
        try:
            batch = await decoder.parse(body, content_type, max_items=10_000, limits=LIMITS)
        finally:
            decoder.close()
        assert parse_body(body, content_type, max_items=10_000, limits=LIMITS) == batch
        assert (4500, 500, 5000) == (len(batch.readings), len(batch.problems), batch.items)
        assert threading.get_ident() not in decoding_threads
        assert 1 == len(decoding_threads)

    async def test_small_bodies_decode_inline(self, decoding_threads: list[int]) -> None:
        """Up to inline_bytes the body is decoded on the event loop's thread: no thread hop."""
        body = body_of(JSON, 10)
        decoder = BodyDecoder(inline_bytes=len(body))
        try:
            batch = await decoder.parse(body, JSON, max_items=10, limits=LIMITS)
        finally:
            decoder.close()
        assert 9 == len(batch.readings)
        assert [threading.get_ident()] == decoding_threads

    async def test_errors_come_back_from_the_thread(self) -> None:
        """What parse_body raises on a decoding thread is raised to the caller."""
        decoder = BodyDecoder(inline_bytes=0)
        try:
            with pytest.raises(TooLarge, match="more than 3 readings"):
                await decoder.parse(body_of(NDJSON, 4), NDJSON, max_items=3, limits=LIMITS)
        finally:
            decoder.close()

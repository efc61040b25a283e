"""The loader's memory stays bounded whatever the input's size, measured with tracemalloc.

It needs no Cassandra (a counting sink stands in for the store), but tracing every allocation of a few thousand
rows takes seconds, so it runs with the integration tests rather than in the unit suite.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from pathlib import Path

import pytest

from readings_service.ops.load import load
from readings_service.ops.progress import SilentProgress
from tests.unit.ops.test_load import CountingSink, options, write_fixture


class TestStreaming:
    @pytest.mark.parametrize("fmt", ["ndjson", "json"])
    def test_memory_does_not_grow_with_the_input(self, tmp_path: Path, fmt: str) -> None:
        """Peak memory for 4x the rows stays about the same: inputs are read and written incrementally."""

        def peak(rows: int) -> int:
            path = tmp_path / f"{rows}.{fmt}"
            write_fixture(path, rows, fmt)
            sink = CountingSink()
            gc.collect()
            tracemalloc.start()
            try:
                asyncio.run(
                    load([str(path)], sink, options(tmp_path, batch_rows=200, read_bytes=65536), SilentProgress())
                )
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
                assert rows == sink.rows

        # About 0.25 MB and 1 MB of input, read 64 KiB at a time.
        small, large = peak(2_000), peak(8_000)
        assert large < small * 1.5, (small, large)
        assert large < 2**20, (small, large)

"""Decoding POST bodies: NDJSON line splitting, and the limits that bound memory before anything is decoded."""

from __future__ import annotations

import uuid

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from readings_service.core.ingest import (
    JSON,
    NDJSON,
    STRUCTURE_PER_ITEM,
    Batch,
    check_structure,
    ndjson_lines,
    parse_body,
)
from readings_service.core.model import Problem, Reading
from readings_service.core.timestamps import MIN_TS_MS, TimestampLimits
from readings_service.errors import BadRequest, TooLarge
from tests.conftest import PeakAllocation

DEVICE = uuid.UUID("7d444840-9dc0-11d1-b245-5ffdce74fad2")
LIMITS = TimestampLimits(MIN_TS_MS, 2**62)


def reading_json(ts: int, **fields: object) -> bytes:
    return orjson.dumps({"device_id": str(DEVICE), "ts": ts, "temperature": 21.5, "pressure": 1013.25} | fields)


def parse(body: bytes, content_type: str, max_items: int = 10_000) -> Batch:
    return parse_body(body, content_type, max_items=max_items, limits=LIMITS)


class TestNdjsonLines:
    @given(st.lists(st.sampled_from([b"1", b"{}", b" ", b"\t", b"\r", b"\x0b", b"\x0c", b"\n", b"x"]), max_size=40))
    def test_equals_the_non_blank_lines_of_a_split(self, pieces: list[bytes]) -> None:
        """Lines and their 1-based numbers are those of body.split(b"\\n") without the blank ones."""
        body = b"".join(pieces)
        expected = [(number, line) for number, line in enumerate(body.split(b"\n"), start=1) if line.strip()]
        assert expected == [(number, bytes(line)) for number, line in ndjson_lines(body)]


class TestCheckStructure:
    def test_readings_within_the_limit_pass(self) -> None:
        """A body of max_items readings, even with a few unknown fields each, is not refused unread."""
        body = b"[" + b",".join(reading_json(i, a=1, b=2, c=3) for i in range(50)) + b"]"
        check_structure(body, 50)

    def test_over_the_limit_is_refused(self) -> None:
        """One comma or bracket more than max_items * STRUCTURE_PER_ITEM is 413, naming max_items."""
        check_structure(b"," * (3 * STRUCTURE_PER_ITEM), 3)
        with pytest.raises(TooLarge) as raised:
            check_structure(b"," * (3 * STRUCTURE_PER_ITEM - 1) + b"[{", 3)
        assert "more than 3 readings" in raised.value.detail
        assert {"limit": 3} == raised.value.extra

    def test_counts_inside_strings_too(self) -> None:
        """Without decoding it cannot tell, so it errs towards refusing."""
        with pytest.raises(TooLarge):
            check_structure(b'["' + b"," * 100 + b'"]', 3)


class TestBoundedMemory:
    """Bodies that would decode into far more objects than max_items readings are refused using little memory.

    Before the limits, each of these allocated 4-30 times the body's size before answering.
    """

    @pytest.mark.parametrize(
        ("body", "content_type", "error"),
        [
            (b"[" + b"{}," * 350_000 + b"{}]", JSON, TooLarge),
            (b"[[" + b"{}," * 350_000 + b"{}]]", JSON, TooLarge),
            (b"[" + b"{}," * 350_000 + b"{}]\n", NDJSON, TooLarge),
            (b"1\n" * 500_000, NDJSON, TooLarge),
            (b"\n" * 1_000_000, NDJSON, BadRequest),
            (b" \r\n" * 350_000, NDJSON, BadRequest),
        ],
        ids=["json-objects", "json-nested", "ndjson-one-line", "ndjson-many-lines", "ndjson-blank", "ndjson-spaces"],
    )
    def test_refused_with_less_memory_than_the_body(
        self, body: bytes, content_type: str, error: type[Exception]
    ) -> None:
        """413 (or 400 for no readings at all), allocating less than the body's own size on the way."""
        with PeakAllocation() as peak, pytest.raises(error):
            parse(body, content_type, max_items=100)
        assert peak.allocated < len(body), f"{peak.allocated} bytes allocated for a body of {len(body)}"


class TestNdjson:
    def test_line_numbers_count_blank_lines(self) -> None:
        """Problems name 1-based lines; blank and whitespace-only lines are skipped but counted."""
        body = b"\n" + reading_json(1) + b"\r\n \t\n{not json\n\n" + reading_json(2, temperature=None) + b"\n"
        batch = parse(body, NDJSON)
        assert [Reading(DEVICE, 1, 21.5, 1013.25)] == batch.readings
        assert [4, 6] == [problem.index for problem in batch.problems]
        assert batch.problems[0].reason.startswith("line is not valid JSON")
        assert Problem(6, "temperature", "temperature must be a number, not null") == batch.problems[1]
        assert 3 == batch.items

    def test_stops_at_the_first_item_over_max_items(self) -> None:
        """max_items lines pass; one more is 413 whatever follows it."""
        body = b"".join(reading_json(i) + b"\n" for i in range(3))
        assert 3 == len(parse(body, NDJSON, max_items=3).readings)
        with pytest.raises(TooLarge, match="more than 3 readings"):
            parse(body + b"{not json" + b"\n" * 1000, NDJSON, max_items=3)

    def test_only_blank_lines_hold_no_readings(self) -> None:
        with pytest.raises(BadRequest, match="no readings"):
            parse(b"\n \n\r\n", NDJSON)

"""Input readers: gzip by content, and NDJSON, JSON-array and CSV splitting that does not depend on chunk borders."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path
from typing import ClassVar

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from readings_service.ops.sources import (
    CsvSplitter,
    InputFile,
    JsonArraySplitter,
    NdjsonSplitter,
    RawItem,
    SourceError,
    Splitter,
    UnreadableItem,
    iter_items,
    sniff_format,
)

DEVICE = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"


def split(splitter: Splitter, data: bytes, cuts: list[int] | None = None) -> list[RawItem]:
    """Feed `data` cut at the given offsets, then end it."""
    borders = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts or [])})
    items: list[RawItem] = []
    for start, end in itertools.pairwise(borders):
        items += splitter.feed(data[start:end])
    return items + splitter.end()


def decoded(splitter: Splitter, items: list[RawItem]) -> list[tuple[int, object]]:
    return [(line, splitter.decode(raw)) for line, raw in items]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(alphabet=st.sampled_from('ab"\\,[]{}\n é')),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


class TestJsonArray:
    @given(
        elements=st.lists(json_values, max_size=8),
        cuts=st.lists(st.integers(0, 10_000), max_size=12),
        pretty=st.booleans(),
    )
    def test_elements_whatever_the_chunks(self, elements: list[object], cuts: list[int], pretty: bool) -> None:
        """The elements come out decoded as a whole-document parse gives them, for any chunking, with the line
        each starts on."""
        option = orjson.OPT_INDENT_2 if pretty else 0
        data = b"  \n" + orjson.dumps(elements, option=option) + b"\n"
        splitter = JsonArraySplitter("f")
        items = split(splitter, data, cuts)
        assert elements == [value for _, value in decoded(splitter, items)]
        for line, raw in items:
            assert raw.split(b"\n")[0] in data.split(b"\n")[line - 1]

    def test_strings_with_structural_characters_and_escapes(self) -> None:
        """Brackets, braces, commas and escaped quotes inside strings do not split elements."""
        data = rb'[{"a": "x,]}\"{", "b": [1, {"c": "\\"}]}, "[,]", 3]'
        splitter = JsonArraySplitter("f")
        assert [{"a": 'x,]}"{', "b": [1, {"c": "\\"}]}, "[,]", 3] == [
            v for _, v in decoded(splitter, split(splitter, data, list(range(0, len(data), 3))))
        ]

    def test_empty_array_and_empty_input(self) -> None:
        """`[]` and whitespace alone hold no items."""
        assert [] == split(JsonArraySplitter("f"), b" [ ] \n")
        assert [] == split(JsonArraySplitter("f"), b" \n")

    def test_empty_elements_are_problems_of_their_own(self) -> None:
        """A doubled or trailing comma gives an empty element that cannot be decoded, not a failed input."""
        splitter = JsonArraySplitter("f")
        items = split(splitter, b"[1,,\n2,]")
        assert [(1, b"1"), (1, b""), (2, b"2"), (2, b"")] == items
        with pytest.raises(UnreadableItem, match="empty array element"):
            splitter.decode(b"")

    def test_bad_element_is_its_own_problem(self) -> None:
        """An element that is not JSON is reported alone; the next one still decodes."""
        splitter = JsonArraySplitter("f")
        items = split(splitter, b'[{"a": tru}, {"a": true}]')
        with pytest.raises(UnreadableItem, match="array element is not valid JSON"):
            splitter.decode(items[0][1])
        assert {"a": True} == splitter.decode(items[1][1])

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b'{"a": 1}', "f:1: the input is not a JSON array"),
            (b"x [1]", "f:1: the input is not a JSON array"),
            (b"[1]\n\n[2]", "f:3: data after the end of the JSON array"),
            (b"[1] x", "f:1: data after the end of it"),
            (b'[1,\n{"a": 2', "f:2: the input ends inside the JSON array"),
        ],
    )
    def test_input_that_is_no_array_fails_as_a_whole(self, data: bytes, message: str) -> None:
        """Input that is not one array is an error of the input, naming the line."""
        with pytest.raises(SourceError, match=message):
            split(JsonArraySplitter("f"), data)

    def test_an_element_too_long_fails(self) -> None:
        """Memory is bounded: an element over the limit stops the input."""
        with pytest.raises(SourceError, match="longer than 100 bytes"):
            split(JsonArraySplitter("f", max_item_bytes=100), b'[{"a": "' + b"x" * 200 + b'"}]', [50, 150])


class TestNdjson:
    @given(
        values=st.lists(json_values, max_size=8),
        blanks=st.lists(st.integers(0, 8), max_size=4),
        cuts=st.lists(st.integers(0, 10_000), max_size=12),
        crlf=st.booleans(),
    )
    def test_lines_whatever_the_chunks(
        self, values: list[object], blanks: list[int], cuts: list[int], crlf: bool
    ) -> None:
        """One item per non-blank line, numbered by physical line, for any chunking and line ending."""
        lines = [orjson.dumps(v) for v in values]
        for position in blanks:
            lines.insert(min(position, len(lines)), b"  ")
        data = (b"\r\n" if crlf else b"\n").join(lines)
        splitter = NdjsonSplitter("f")
        items = split(splitter, data, cuts)
        expected = [(number, orjson.loads(line)) for number, line in enumerate(lines, 1) if line.strip()]
        assert expected == decoded(splitter, items)

    def test_bad_line_is_its_own_problem(self) -> None:
        """A line that is not JSON is reported with the decoder's reason."""
        with pytest.raises(UnreadableItem, match="line is not valid JSON"):
            NdjsonSplitter("f").decode(b"{nope")

    def test_a_line_too_long_fails(self) -> None:
        """Memory is bounded: a line over the limit stops the input."""
        with pytest.raises(SourceError, match="f:2: line is longer than 10 bytes"):
            split(NdjsonSplitter("f", max_item_bytes=10), b"{}\n" + b"x" * 50, [20, 40])


class TestCsv:
    def test_header_in_any_order_values_converted(self) -> None:
        """Columns follow the header; digits in ts become epoch ms, numbers become floats, quotes are CSV's."""
        data = (
            b"\r\nTS, device_id ,pressure,temperature\r\n"
            b"1772323200000," + DEVICE.encode() + b',1013.25,"-4.5"\r\n'
            b'"2026-03-01T00:00:00+01:00",' + DEVICE.encode() + b",1e3,7\r\n"
        )
        splitter = CsvSplitter("f")
        items = split(splitter, data, [5, 40, 77])
        assert [
            (3, {"ts": 1772323200000, "device_id": DEVICE, "pressure": 1013.25, "temperature": -4.5}),
            (4, {"ts": "2026-03-01T00:00:00+01:00", "device_id": DEVICE, "pressure": 1000.0, "temperature": 7.0}),
        ] == decoded(splitter, items)

    @pytest.mark.parametrize(
        ("row", "message"),
        [
            (f"{DEVICE},1,warm,nan", "temperature is not a number: 'warm'; pressure is not a number: 'nan'"),
            (f"{DEVICE},1,2", "row has 3 fields, the header has 4"),
            (f'{DEVICE},1,"2,3', "line is not valid CSV"),
            (f"{DEVICE},1,,3", "temperature is not a number: ''"),
        ],
    )
    def test_bad_rows_are_problems_of_their_own(self, row: str, message: str) -> None:
        """A row that cannot become a reading object says why."""
        splitter = CsvSplitter("f")
        split(splitter, b"device_id,ts,temperature,pressure\n")
        with pytest.raises(UnreadableItem, match=message):
            splitter.decode(row.encode())

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b"device_id,ts,temperature\n", "f:1: the CSV header must name"),
            (b"device_id,ts,temperature,pressure,extra\n", "f:1: the CSV header must name"),
            (b"\n\n", "f: no CSV header line"),
        ],
    )
    def test_bad_header_fails_the_input(self, data: bytes, message: str) -> None:
        """Without the four columns nothing can be read."""
        with pytest.raises(SourceError, match=message):
            split(CsvSplitter("f"), data)


class TestInputFile:
    lines: ClassVar[list[bytes]] = [orjson.dumps({"n": n}) + b"\n" for n in range(5000)]

    def items(self, path: Path, fmt: str = "auto") -> list[object]:
        source = InputFile(str(path), chunk_bytes=1000)
        try:
            return [splitter.decode(raw) for splitter, items in iter_items(source, fmt) for _, raw in items]
        finally:
            source.close()

    def test_gzip_detected_by_content_with_several_members(self, tmp_path: Path) -> None:
        """gzip is recognised by its magic bytes whatever the name; concatenated members are read in turn."""
        path = tmp_path / "data.txt"
        path.write_bytes(gzip.compress(b"".join(self.lines[:2500])) + gzip.compress(b"".join(self.lines[2500:])))
        assert [{"n": n} for n in range(5000)] == self.items(path)
        source = InputFile(str(path))
        assert path.stat().st_size == source.size
        list(iter_items(source, "ndjson"))
        assert path.stat().st_size == source.consumed
        source.close()

    def test_plain_file_with_byte_order_mark(self, tmp_path: Path) -> None:
        """A UTF-8 byte order mark at the start is dropped (spreadsheets write one)."""
        path = tmp_path / "data.csv"
        path.write_bytes(b"\xef\xbb\xbfdevice_id,ts,temperature,pressure\n" + f"{DEVICE},5,1,2\n".encode())
        assert [{"device_id": DEVICE, "ts": 5, "temperature": 1.0, "pressure": 2.0}] == self.items(path)

    def test_truncated_gzip_fails_naming_the_file(self, tmp_path: Path) -> None:
        """A cut-off gzip stream is an error of that input."""
        path = tmp_path / "cut.gz"
        path.write_bytes(gzip.compress(b"".join(self.lines))[:-30])
        with pytest.raises(SourceError, match=r"cut\.gz: cannot decompress"):
            self.items(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A file that cannot be opened is named with the reason."""
        with pytest.raises(SourceError, match=r"nothing\.ndjson: cannot open: No such file"):
            InputFile(str(tmp_path / "nothing.ndjson"))

    @pytest.mark.parametrize(("head", "fmt"), [(b" \n[{", "json"), (b'{"a"', "ndjson"), (b"device_id,", "csv")])
    def test_sniffing(self, head: bytes, fmt: str) -> None:
        """`auto` decides by the first non-blank character."""
        assert fmt == sniff_format(head)


class TestPipes:
    def test_format_is_told_after_blank_chunks(self, tmp_path: Path) -> None:
        """A pipe may deliver blank lines alone first; the format is decided by the first real character and
        line numbers still count the blank lines."""
        path = tmp_path / "data"
        path.write_bytes(b"\n\n\n" + orjson.dumps([{"a": 1}]))
        source = InputFile(str(path), chunk_bytes=2)
        try:
            found = [(splitter, items) for splitter, items in iter_items(source, "auto")]
        finally:
            source.close()
        assert [[(4, b'{"a":1}')]] == [items for _, items in found]
        assert isinstance(found[0][0], JsonArraySplitter)

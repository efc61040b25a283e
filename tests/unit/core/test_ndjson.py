"""NDJSON encoding of stored rows."""

from __future__ import annotations

import uuid

import orjson
from hypothesis import given
from hypothesis import strategies as st

from readings_service.core.ndjson import encode_rows
from readings_service.core.timestamps import format_timestamp

rows = st.lists(
    st.tuples(
        st.integers(-62_135_596_800_000, 253_402_300_799_999),
        st.integers(0, 2**132),
        st.uuids(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    max_size=30,
)


class TestEncodeRows:
    @given(rows)
    def test_equals_one_object_per_line(self, batch: list[tuple[int, int, uuid.UUID, float, float]]) -> None:
        """The chunked encoding equals encoding each row on its own line, in the POST body's field order."""
        expected = b"".join(
            orjson.dumps(
                {"device_id": str(d), "ts": format_timestamp(ts), "temperature": t, "pressure": p},
                option=orjson.OPT_APPEND_NEWLINE,
            )
            for ts, _, d, t, p in batch
        )
        assert expected == encode_rows(batch)

    def test_shape(self) -> None:
        """ts has milliseconds and Z; device_id is lower-case."""
        device = uuid.UUID("7D444840-9DC0-11D1-B245-5FFDCE74FAD2")
        line = encode_rows([(1_700_000_000_123, 0, device, 1.5, -2.0)])
        expected = (
            b'{"device_id":"7d444840-9dc0-11d1-b245-5ffdce74fad2","ts":"2023-11-14T22:13:20.123Z",'
            b'"temperature":1.5,"pressure":-2.0}\n'
        )
        assert expected == line

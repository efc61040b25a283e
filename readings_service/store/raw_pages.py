"""Scan results as raw pages: a session whose ROWS results keep their rows body as bytes.

The driver decodes every cell into Python objects on its I/O thread, under the GIL; the compiled merge parses
the protocol's rows body itself, so that decoding is skipped. The hook replaces the RESULT message class of
one session's protocol handler (`Session.client_protocol_handler`): only the scans sent through that session
are affected; every other result kind (prepared, void, schema change) is decoded as usual. Paging is
untouched, since the paging state sits in the metadata, which is still parsed.

This uses driver internals (`ResultMessage.recv_results_rows` and `recv_results_metadata`, the protocol
handler's `message_types_by_opcode` and `decode_message`): pyproject.toml pins the driver's minor version and
`check_hook` proves the hook works at start-up, on the installed driver, before any query relies on it.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from typing import Any, ClassVar

import cassandra
from cassandra.cluster import Cluster, Session
from cassandra.cqltypes import LongType
from cassandra.protocol import ResultMessage, _ProtocolHandler
from cassandra.query import PreparedStatement, tuple_factory

from readings_service.errors import StoreFailure

# The driver minor version whose internals this module was written and tested against (pyproject.toml pins it).
DRIVER_MINOR = (3, 30)
RANGE_COLUMNS = ("bigint", "blob", "double", "double")
DEVICE_COLUMNS = ("bigint", "double", "double")
_ROWS_KIND = 2
_NO_METADATA = 0x0004


class RawRowsMessage(ResultMessage):  # type: ignore[misc]
    """A RESULT message whose rows stay as the bytes Cassandra sent: `[int rows]` then `[int length][bytes]`
    per cell."""

    def recv_results_rows(
        self,
        f: io.BytesIO,
        protocol_version: int,
        user_type_map: Any,
        result_metadata: Any,
        column_encryption_policy: Any,
    ) -> None:
        self.recv_results_metadata(f, user_type_map)
        column_metadata = self.column_metadata or result_metadata
        self.column_names = [column[2] for column in column_metadata]
        self.column_types = [column[3] for column in column_metadata]
        self.parsed_rows = f.read()


class RawPagesHandler(_ProtocolHandler):  # type: ignore[misc]
    """The driver's protocol handler with RESULT messages decoded by RawRowsMessage."""

    message_types_by_opcode: ClassVar[dict[int, type]] = {
        **_ProtocolHandler.message_types_by_opcode,
        ResultMessage.opcode: RawRowsMessage,
    }


def check_hook(protocol_version: int) -> None:
    """Fail fast unless the installed driver is the pinned minor version and hands a rows body over unparsed.

    Decodes a small ROWS message through the handler exactly as a connection does, and checks what the row
    factory (tuple_factory, which returns its rows argument) would pass on.
    """
    version = tuple(int(part) for part in cassandra.__version__.split(".")[:2])
    if version != DRIVER_MINOR:
        raise StoreFailure(
            f"the raw-page reader needs cassandra-driver {DRIVER_MINOR[0]}.{DRIVER_MINOR[1]}.x, "
            f"found {cassandra.__version__}; set query.native = off or install the pinned version"
        )
    rows = struct.pack(">iiq", 1, 8, 1_700_000_000_000)
    body = struct.pack(">iii", _ROWS_KIND, _NO_METADATA, 1) + rows
    metadata = [("ks", "t", "ts", LongType)]
    message = RawPagesHandler.decode_message(protocol_version, {}, 0, 0, ResultMessage.opcode, body, None, metadata)
    passed_on = tuple_factory(message.column_names, message.parsed_rows)
    if passed_on != rows or message.column_names != ["ts"]:
        raise StoreFailure(f"the raw-page reader does not work with cassandra-driver {cassandra.__version__}")


def open_raw_session(cluster: Cluster) -> Session:
    """A new session on `cluster` whose scans return raw pages (blocking: call it off the event loop).

    Its execution profile is the cluster's default, whose tuple_factory passes the rows body on unchanged.
    """
    check_hook(cluster.protocol_version)
    session = cluster.connect()
    session.client_protocol_handler = RawPagesHandler
    return session


def check_columns(statement: PreparedStatement, expected: Sequence[str]) -> None:
    """Fail fast unless the prepared statement's result columns have exactly the CQL types `expected`."""
    found = tuple(column[3].typename for column in statement.result_metadata or ())
    if found != tuple(expected):
        raise StoreFailure(
            f"the raw-page reader expects result columns of types {', '.join(expected)}, but "
            f"{statement.query_string!r} returns {', '.join(found) or 'none'}"
        )


__all__ = [
    "DEVICE_COLUMNS",
    "RANGE_COLUMNS",
    "RawPagesHandler",
    "RawRowsMessage",
    "check_columns",
    "check_hook",
    "open_raw_session",
]

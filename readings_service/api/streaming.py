"""NDJSON streaming responses that can always be told apart from a truncated one."""

from __future__ import annotations

import contextlib
import logging

from aiohttp import web

from readings_service.api.access_log import BYTES_SENT, PREPARED_STATUS, ROWS
from readings_service.core.ndjson import encode_line, encode_rows
from readings_service.core.store import Pages, StoredRow
from readings_service.errors import ServiceError
from readings_service.metrics import BYTES_STREAMED, ROWS_STREAMED, STREAMS_OPEN

log = logging.getLogger("readings_service")

NDJSON_TYPE = "application/x-ndjson"


async def stream_ndjson(
    request: web.Request, chunks: Pages, chunk_bytes: int
) -> web.StreamResponse:
    """Send chunks as NDJSON while they are read; the first chunk is awaited before headers go out.

    Errors before the first byte become a status code; after it, the stream ends with one
    `{"error": ...}` line and the connection is cut without the final chunk, so a truncated result
    can never pass for a complete one.
    """
    STREAMS_OPEN.inc()
    try:
        return await _stream(request, chunks, chunk_bytes)
    finally:
        STREAMS_OPEN.dec()


class _Sender:
    """Writes NDJSON chunks to the response, counting rows and bytes for the metrics and the access log."""

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self.request = request
        self.response = response
        self.pending = b""
        self.pending_rows = 0
        request[ROWS] = 0
        request[BYTES_SENT] = 0

    def add(self, rows: list[StoredRow]) -> None:
        self.pending += encode_rows(rows)
        self.pending_rows += len(rows)

    async def flush(self) -> None:
        if not self.pending:
            return
        data, rows = self.pending, self.pending_rows
        self.pending, self.pending_rows = b"", 0
        await self.response.write(data)
        self.request[ROWS] += rows
        self.request[BYTES_SENT] += len(data)
        ROWS_STREAMED.inc(rows)
        BYTES_STREAMED.inc(len(data))


async def _stream(request: web.Request, chunks: Pages, chunk_bytes: int) -> web.StreamResponse:
    async with contextlib.aclosing(chunks):
        first = await anext(chunks, None)
        response = web.StreamResponse(headers={"Content-Type": NDJSON_TYPE, "Cache-Control": "no-store"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        request[PREPARED_STATUS] = response.status
        sender = _Sender(request, response)
        try:
            if first:
                sender.add(first)
                await sender.flush()  # first byte out as soon as possible
            async for chunk in chunks:
                sender.add(chunk)
                if len(sender.pending) >= chunk_bytes:
                    await sender.flush()
            await sender.flush()
        except ServiceError as error:
            log.warning("query failed after streaming began: %s", error.detail)
            await _cut_with_error(request, response, error.status, error.detail)
            return response
        except ConnectionResetError:
            raise  # the client went away: closing `chunks` stops the paging
        except Exception as error:
            log.exception("query failed after streaming began")
            await _cut_with_error(request, response, 500, f"{type(error).__name__}: {error}")
            return response
        await response.write_eof()
        return response


async def _cut_with_error(request: web.Request, response: web.StreamResponse, status: int, detail: str) -> None:
    with contextlib.suppress(ConnectionError):
        await response.write(encode_line({"error": {"status": status, "detail": detail}}))
    transport = request.transport
    if transport is not None:
        transport.close()  # flushes the error line, never sends the terminating chunk

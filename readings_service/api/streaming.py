"""NDJSON streaming responses that can always be told apart from a truncated one."""

from __future__ import annotations

import contextlib
import logging

from aiohttp import web

from readings_service.api.problems import internal_detail
from readings_service.core.ndjson import encode_line, encode_rows
from readings_service.core.store import Pages
from readings_service.errors import ServiceError
from readings_service.metrics import STREAMS_OPEN

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


async def _stream(request: web.Request, chunks: Pages, chunk_bytes: int) -> web.StreamResponse:
    async with contextlib.aclosing(chunks):
        first = await anext(chunks, None)
        response = web.StreamResponse(headers={"Content-Type": NDJSON_TYPE, "Cache-Control": "no-store"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            pending = encode_rows(first) if first else b""
            if pending:
                await response.write(pending)  # first byte out as soon as possible
                pending = b""
            async for chunk in chunks:
                pending += encode_rows(chunk)
                if len(pending) >= chunk_bytes:
                    await response.write(pending)
                    pending = b""
            if pending:
                await response.write(pending)
        except ServiceError as error:
            log.warning("query failed after streaming began: %s", error.detail)
            await _cut_with_error(request, response, error.status, error.detail)
            return response
        except ConnectionResetError:
            raise  # the client went away: closing `chunks` stops the paging
        except Exception as error:
            log.exception("query failed after streaming began")
            await _cut_with_error(request, response, 500, internal_detail(error))
            return response
        await response.write_eof()
        return response


async def _cut_with_error(request: web.Request, response: web.StreamResponse, status: int, detail: str) -> None:
    with contextlib.suppress(ConnectionError):
        await response.write(encode_line({"error": {"status": status, "detail": detail}}))
    transport = request.transport
    if transport is not None:
        transport.close()  # flushes the error line, never sends the terminating chunk

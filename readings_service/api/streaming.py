"""NDJSON streaming responses that can always be told apart from a truncated one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from aiohttp import HttpVersion11, web

from readings_service.api.access_log import BYTES_SENT, PREPARED_STATUS, ROWS
from readings_service.api.problems import internal_detail, log_store_failure, store_failure_detail
from readings_service.api.shutdown import Shutdown
from readings_service.core.ndjson import LineChunks, Lines, encode_line
from readings_service.errors import ServiceError, StoreFailure, StreamNeedsHttp11
from readings_service.metrics import BYTES_STREAMED, ROWS_STREAMED, STREAMS_OPEN

log = logging.getLogger("readings_service")

NDJSON_TYPE = "application/x-ndjson"
# The kernel's send buffer of a streaming connection. Left to autotuning it grows to megabytes per slow client;
# bounded, memory stays bounded and a cut stream's error line reaches a reading client within CUT_FLUSH_S.
STREAM_SEND_BUFFER = 256 * 1024
CUT_FLUSH_S = 1.0


async def stream_ndjson(
    request: web.Request, chunks: LineChunks, chunk_bytes: int, shutdown: Shutdown
) -> web.StreamResponse:
    """Send chunks as NDJSON while they are read; the first chunk is awaited before headers go out.

    Errors before the first byte become a status code; after it, the stream ends with one
    `{"error": ...}` line and the connection is cut without the final chunk, so a truncated result
    can never pass for a complete one.
    """
    if request.version < HttpVersion11:
        async with contextlib.aclosing(chunks):
            raise StreamNeedsHttp11(
                f"streams need HTTP/1.1 (chunked framing tells a cut stream from a complete one); "
                f"the request was HTTP/{request.version.major}.{request.version.minor}"
            )
    STREAMS_OPEN.inc()
    try:
        with shutdown.stream():
            return await _stream(request, chunks, chunk_bytes, shutdown)
    finally:
        STREAMS_OPEN.dec()


def _bound_send_buffer(request: web.Request) -> None:
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SEND_BUFFER)


class _Sender:
    """Writes NDJSON chunks to the response, counting rows and bytes for the metrics and the access log."""

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self.request = request
        self.response = response
        self.pending = b""
        self.pending_rows = 0
        request[ROWS] = 0
        request[BYTES_SENT] = 0

    def add(self, lines: Lines) -> None:
        self.pending += lines.encode()
        self.pending_rows += lines.rows

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


async def _stream(request: web.Request, chunks: LineChunks, chunk_bytes: int, shutdown: Shutdown) -> web.StreamResponse:
    async with contextlib.aclosing(chunks):
        first = await anext(chunks, None)
        response = web.StreamResponse(headers={"Content-Type": NDJSON_TYPE, "Cache-Control": "no-store"})
        response.enable_chunked_encoding()
        _bound_send_buffer(request)
        await response.prepare(request)
        request[PREPARED_STATUS] = response.status
        sender = _Sender(request, response)
        try:
            if first is not None:
                sender.add(first)
                await sender.flush()  # first byte out as soon as possible
            async for chunk in chunks:
                sender.add(chunk)
                if len(sender.pending) >= chunk_bytes:
                    await sender.flush()
            await sender.flush()
        except StoreFailure as error:
            log_store_failure(request, error)
            await _cut_with_error(request, response, error.status, store_failure_detail(error))
            return response
        except ServiceError as error:
            log.warning("query failed after streaming began: %s", error.detail)
            await _cut_with_error(request, response, error.status, error.detail)
            return response
        except ConnectionResetError:
            raise  # the client went away: closing `chunks` stops the paging
        except asyncio.CancelledError:
            if shutdown.draining:  # cut at the shutdown deadline, not by the client: say so in the stream
                await _cut_with_error(request, response, 503, "the service is shutting down; the stream was cut")
            raise
        except Exception as error:
            log.exception("query failed after streaming began")
            await _cut_with_error(request, response, 500, internal_detail(error))
            return response
        await response.write_eof()
        return response


async def _cut_with_error(request: web.Request, response: web.StreamResponse, status: int, detail: str) -> None:
    """Write the error line, give it up to CUT_FLUSH_S to leave, then close without the terminating chunk."""
    transport = request.transport
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(CUT_FLUSH_S):  # a client that reads nothing must not hold the cut up
            await response.write(encode_line({"error": {"status": status, "detail": detail}}))
            for _ in range(int(CUT_FLUSH_S / 0.01)):
                if transport is None or transport.get_write_buffer_size() == 0:
                    break
                await asyncio.sleep(0.01)
    if transport is not None:
        transport.close()  # flushes what is left, never sends the terminating chunk

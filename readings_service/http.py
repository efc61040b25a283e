"""The HTTP API: app factory, routes, and one middleware that turns errors into problem+json."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from readings_service.admission import Admission
from readings_service.config import Settings
from readings_service.errors import (
    BadRequest,
    InvalidReadings,
    NotFound,
    ServiceError,
    TooLarge,
    Unavailable,
)
from readings_service.ingest import ACCEPTED_TYPES, media_type, parse_body
from readings_service.metrics import REGISTRY, STREAMS_OPEN
from readings_service.ndjson import encode_line, encode_rows, row_object
from readings_service.query import device_chunks, parse_range, range_chunks, take
from readings_service.store import Pages, ReadingStore

log = logging.getLogger("readings_service")

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", ReadingStore)
INGEST_SLOTS = web.AppKey("ingest_slots", Admission)
STREAM_SLOTS = web.AppKey("stream_slots", Admission)
PROBLEM_JSON = "application/problem+json"
NDJSON_TYPE = "application/x-ndjson"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    """An RFC 9457 problem response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return web.Response(status=status, body=orjson.dumps(body), content_type=PROBLEM_JSON)


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map ServiceError and aiohttp's own HTTP errors to problem+json; never once a stream has started."""
    try:
        return await handler(request)
    except ServiceError as error:
        response = problem(error.status, error.title, error.detail, **error.extra)
        if isinstance(error, Unavailable):
            response.headers["Retry-After"] = str(error.retry_after_s)
        return response
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return problem(error.status, error.reason, error.text or error.reason)


async def health(request: web.Request) -> web.Response:
    """The process is alive."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """The store answers; load balancers send traffic only then."""
    await request.app[STORE].ping()
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this process's metrics."""
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body after any gzip decoding, refusing more than `limit` bytes."""
    if request.content_length is not None and request.content_length > limit and not request.headers.get(
        "Content-Encoding"
    ):
        raise TooLarge(f"body of {request.content_length} bytes is over the limit of {limit}", limit=limit)
    parts: list[bytes] = []
    size = 0
    try:
        async for part in request.content.iter_chunked(65536):
            size += len(part)
            if size > limit:
                raise TooLarge(f"body is over the limit of {limit} bytes (after decompression)", limit=limit)
            parts.append(part)
    except (ContentEncodingError, RequestPayloadError) as error:
        reason = getattr(error, "message", str(error)).strip()
        raise BadRequest(f"body cannot be decoded: {reason}") from None
    return b"".join(parts)


def parse_flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise BadRequest(f"parameter {name}={raw!r} must be true or false", parameter=name)
    return raw in ("true", "1")


async def post_readings(request: web.Request) -> web.Response:
    """Validate a body of readings and write them; all-or-nothing unless ?partial=true."""
    partial = parse_flag(request, "partial")
    kind = media_type(request.content_type)
    if kind not in ACCEPTED_TYPES:
        raise BadRequest(
            f"Content-Type {request.headers.get('Content-Type', '(none)')} is not supported; "
            f"use {' or '.join(ACCEPTED_TYPES)}",
            supported=list(ACCEPTED_TYPES),
        )
    async with request.app[INGEST_SLOTS].slot():  # waiting requests stay unread: memory stays bounded
        return await _ingest(request, partial, kind)


async def _ingest(request: web.Request, partial: bool, kind: str) -> web.Response:
    settings = request.app[SETTINGS].ingest
    body = await read_body(request, settings.max_body_bytes)
    max_ts_ms = int(time.time() * 1000) + settings.max_future_skew_s * 1000
    batch = parse_body(body, kind, max_items=settings.max_items, max_ts_ms=max_ts_ms)
    problems = [p.as_dict() for p in batch.problems]
    if problems and not partial:
        raise InvalidReadings(
            f"{len(problems)} problem(s) in {batch.items} item(s); nothing was written", problems
        )
    if batch.readings:
        # A client that disconnects must not leave half of an accepted batch behind.
        await asyncio.shield(request.app[STORE].write(batch.readings))
    if problems:
        body_out = {"accepted": len(batch.readings), "rejected": batch.items - len(batch.readings),
                    "problems": problems}
        return web.json_response(body_out, status=207, dumps=lambda v: orjson.dumps(v).decode())
    return web.json_response({"accepted": len(batch.readings)})


async def get_readings(request: web.Request) -> web.StreamResponse:
    """Stream the readings of a time range across all devices, sorted, as NDJSON."""
    settings = request.app[SETTINGS]
    query = parse_range(request.query, max_range_days=settings.query.max_range_days,
                        max_limit=settings.query.max_limit)
    async with request.app[STREAM_SLOTS].slot():
        chunks = range_chunks(request.app[STORE], query, settings.storage.buckets, settings.query.day_lookahead)
        return await stream_ndjson(request, take(chunks, query.limit), settings.query.chunk_bytes)


def device_id_of(request: web.Request) -> uuid.UUID:
    raw = request.match_info["device_id"]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise BadRequest(f"device id {raw!r} is not a UUID", parameter="device_id") from None


async def get_device_readings(request: web.Request) -> web.StreamResponse:
    """Stream one device's readings of a time range as NDJSON."""
    settings = request.app[SETTINGS]
    device_id = device_id_of(request)
    query = parse_range(request.query, max_range_days=settings.query.max_range_days,
                        max_limit=settings.query.max_limit)
    async with request.app[STREAM_SLOTS].slot():
        chunks = device_chunks(request.app[STORE], device_id, query)
        return await stream_ndjson(request, take(chunks, query.limit), settings.query.chunk_bytes)


async def get_latest(request: web.Request) -> web.Response:
    """The device's newest reading, or 404."""
    device_id = device_id_of(request)
    row = await request.app[STORE].latest(device_id)
    if row is None:
        raise NotFound(f"no readings for device {device_id}")
    return web.Response(body=orjson.dumps(row_object(row)), content_type="application/json")


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


StoreOpener = Callable[[Settings], contextlib.AbstractAsyncContextManager[ReadingStore]]


def create_app(settings: Settings, open_store: StoreOpener) -> web.Application:
    """The application; `open_store` is entered at start-up and left at shutdown."""
    app = web.Application(middlewares=[problems_middleware], client_max_size=settings.ingest.max_body_bytes)
    app[SETTINGS] = settings
    app[INGEST_SLOTS] = Admission("ingest", settings.ingest.max_concurrent_requests, settings.http.queue_timeout_s)
    app[STREAM_SLOTS] = Admission("stream", settings.query.max_concurrent_streams, settings.http.queue_timeout_s)

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_store(settings) as store:
            app[STORE] = store
            yield

    app.cleanup_ctx.append(store_ctx)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/readings", post_readings)
    app.router.add_get("/readings", get_readings)
    app.router.add_get("/devices/{device_id}/readings", get_device_readings)
    app.router.add_get("/devices/{device_id}/latest", get_latest)
    return app

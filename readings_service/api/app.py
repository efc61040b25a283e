"""The HTTP API: app factory and the route handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from readings_service.api.access_log import access_log_middleware
from readings_service.api.admission import Admission
from readings_service.api.auth import TokenOpener, setup_auth
from readings_service.api.bodies import parse_flag, read_body
from readings_service.api.cors import setup_cors
from readings_service.api.decoding import BodyDecoder
from readings_service.api.loop_watch import loop_watch_ctx
from readings_service.api.openapi import openapi_json
from readings_service.api.params import parse_range
from readings_service.api.problems import problems_middleware
from readings_service.api.query_string import strict_query_middleware
from readings_service.api.shutdown import Shutdown
from readings_service.api.streaming import stream_ndjson
from readings_service.config import Settings
from readings_service.core.ingest import ACCEPTED_TYPES, media_type
from readings_service.core.ndjson import LineChunks, row_object
from readings_service.core.store import ReadingStore
from readings_service.errors import (
    BadRequest,
    InvalidReadings,
    NotFound,
)
from readings_service.metrics import READINGS_INGESTED, REGISTRY
from readings_service.query_path import QueryPath, select_query_path

log = logging.getLogger("readings_service")

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", ReadingStore)
QUERY_PATH = web.AppKey("query_path", QueryPath)
INGEST_SLOTS = web.AppKey("ingest_slots", Admission)
STREAM_SLOTS = web.AppKey("stream_slots", Admission)
SHUTDOWN = web.AppKey("shutdown", Shutdown)
BODY_DECODER = web.AppKey("body_decoder", BodyDecoder)


async def health(request: web.Request) -> web.Response:
    """The process is alive; says which range-query path serves (`native` or `python`)."""
    return web.json_response({"status": "ok", "query_path": request.app[QUERY_PATH].name})


async def ready(request: web.Request) -> web.Response:
    """The store answers; load balancers send traffic only then."""
    await request.app[STORE].ping()
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this process's metrics."""
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


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
    limits = request.app[SETTINGS].timestamp_rules().limits()
    batch = await request.app[BODY_DECODER].parse(body, kind, max_items=settings.max_items, limits=limits)
    problems = [p.as_dict() for p in batch.problems]
    READINGS_INGESTED.labels("rejected").inc(batch.items - len(batch.readings))
    if problems and not partial:
        raise InvalidReadings(f"{len(problems)} problem(s) in {batch.items} item(s); nothing was written", problems)
    if batch.readings:
        # A client that disconnects must not leave half of an accepted batch behind.
        await asyncio.shield(request.app[STORE].write(batch.readings))
        READINGS_INGESTED.labels("accepted").inc(len(batch.readings))
    if problems:
        body_out = {
            "accepted": len(batch.readings),
            "rejected": batch.items - len(batch.readings),
            "problems": problems,
        }
        return web.json_response(body_out, status=207, dumps=lambda v: orjson.dumps(v).decode())
    return web.json_response({"accepted": len(batch.readings)})


async def get_readings(request: web.Request) -> web.StreamResponse:
    """Stream the readings of a time range across all devices, sorted, as NDJSON."""
    settings = request.app[SETTINGS]
    query = parse_range(request.query, max_range_days=settings.query.max_range_days, max_limit=settings.query.max_limit)
    async with request.app[STREAM_SLOTS].slot():
        lines = request.app[QUERY_PATH].range_lines(
            request.app[STORE], query, settings.storage.buckets, settings.query.day_lookahead
        )
        return await _send_chunks(request, lines)


async def _send_chunks(request: web.Request, chunks: LineChunks) -> web.StreamResponse:
    return await stream_ndjson(request, chunks, request.app[SETTINGS].query.chunk_bytes, request.app[SHUTDOWN])


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
    query = parse_range(request.query, max_range_days=settings.query.max_range_days, max_limit=settings.query.max_limit)
    async with request.app[STREAM_SLOTS].slot():
        lines = request.app[QUERY_PATH].device_lines(request.app[STORE], device_id, query)
        return await _send_chunks(request, lines)


async def get_latest(request: web.Request) -> web.Response:
    """The device's newest reading, or 404."""
    device_id = device_id_of(request)
    row = await request.app[STORE].latest(device_id)
    if row is None:
        raise NotFound(f"no readings for device {device_id}")
    return web.Response(body=orjson.dumps(row_object(row)), content_type="application/json")


StoreOpener = Callable[[Settings], contextlib.AbstractAsyncContextManager[ReadingStore]]


def create_app(settings: Settings, open_store: StoreOpener, open_tokens: TokenOpener | None = None) -> web.Application:
    """The application; `open_store` (and `open_tokens`, needed when auth.required) is entered at start-up and
    left at shutdown."""
    middlewares = [access_log_middleware(settings.http.access_log), problems_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=settings.ingest.max_body_bytes)
    app[SETTINGS] = settings
    app[INGEST_SLOTS] = Admission("ingest", settings.ingest.max_concurrent_requests, settings.http.queue_timeout_s)
    app[STREAM_SLOTS] = Admission("stream", settings.query.max_concurrent_streams, settings.http.queue_timeout_s)

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_store(settings) as store:
            app[STORE] = store
            app[QUERY_PATH] = select_query_path(settings.query, store)
            yield

    async def decoder_ctx(app: web.Application) -> AsyncIterator[None]:
        app[BODY_DECODER] = decoder = BodyDecoder()
        yield
        decoder.close()

    app.cleanup_ctx.append(loop_watch_ctx)
    app.cleanup_ctx.append(store_ctx)
    app.cleanup_ctx.append(decoder_ctx)
    app[SHUTDOWN] = shutdown = Shutdown(settings.http.shutdown_timeout_s)
    app.on_shutdown.append(shutdown.on_shutdown)
    app.on_cleanup.append(shutdown.on_cleanup)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/readings", post_readings)
    app.router.add_get("/readings", get_readings)
    app.router.add_get("/devices/{device_id}/readings", get_device_readings)
    app.router.add_get("/devices/{device_id}/latest", get_latest)
    app.router.add_get("/openapi.json", openapi_json)
    setup_auth(app, settings, open_tokens)
    app.middlewares.append(strict_query_middleware)  # after authentication: a client without a token learns nothing
    setup_cors(app, settings.http.cors_origins)
    return app

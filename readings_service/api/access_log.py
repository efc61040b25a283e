"""One access-log line per request, and the request metrics: the outermost middleware.

The line carries method, route template, status, bytes, duration, rows for streams and the token's name — never
the token. A client that disconnects is logged as such (status of what was sent, `disconnected`), not as an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from readings_service.metrics import HTTP_DURATION, HTTP_REQUESTS

access_log = logging.getLogger("readings_service.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Request-scoped facts other layers add to the line.
ROWS = web.RequestKey("rows", int)
BYTES_SENT = web.RequestKey("bytes_sent", int)
PREPARED_STATUS = web.RequestKey("prepared_status", int)
TOKEN_NAME = web.RequestKey("token_name", str)


def route_of(request: web.Request) -> str:
    """The matched route's template (a bounded label), or "unmatched"."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def format_line(fields: dict[str, Any], style: str) -> str:
    """The access-log line: `key=value` pairs, or one JSON object."""
    if style == "json":
        return orjson.dumps(fields).decode()
    return " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)


def access_log_middleware(style: str) -> Middleware:
    """The middleware for a log style: "text", "json" or "off" (metrics are kept in every case)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response: web.StreamResponse | None = None
        outcome = "complete"
        try:
            response = await handler(request)
            return response
        except asyncio.CancelledError:
            outcome = "disconnected"
            raise
        except web.HTTPException as error:
            response = error
            raise
        finally:
            duration = time.perf_counter() - started
            route = route_of(request)
            status = _status(request, response, outcome)
            sent = request.get(BYTES_SENT)
            HTTP_REQUESTS.labels(route, request.method, str(status)).inc()
            HTTP_DURATION.labels(route, request.method).observe(duration)
            if style != "off":
                fields = {
                    "remote": request.remote,
                    "method": request.method,
                    "path": request.path,
                    "route": route,
                    "status": status,
                    "bytes": sent if sent is not None else _bytes(response),
                    "duration_ms": round(duration * 1000, 1),
                    "rows": request.get(ROWS),
                    "token": request.get(TOKEN_NAME),
                    "outcome": outcome if outcome != "complete" else None,
                }
                access_log.info("%s", format_line(fields, style))

    return middleware


def _status(request: web.Request, response: web.StreamResponse | None, outcome: str) -> int:
    if response is not None:
        return response.status
    prepared: int | None = request.get(PREPARED_STATUS)
    if prepared is not None:
        return prepared
    return 499 if outcome == "disconnected" else 500


def _bytes(response: web.StreamResponse | None) -> int | None:
    if response is None:
        return None
    if isinstance(response, web.Response) and response.body is not None:
        return len(response.body) if isinstance(response.body, bytes | bytearray) else None
    return response.body_length

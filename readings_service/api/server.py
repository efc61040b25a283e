"""The HTTP server: errors aiohttp's parser raises before any middleware answered as problem+json, and `serve`.

A request line or header that is too long, a malformed request and a body in an encoding aiohttp cannot decode
are refused by the connection's parser, before the application and its middlewares see a request. aiohttp
answers those with `RequestHandler.handle_error` (plain text, a traceback in the log); the handler here answers
with problem+json, the status that names the problem (414, 431, 415, 400) and one log line without a traceback.
aiohttp has no public setting for the handler class, so the runner builds its server with this one.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, ContentEncodingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from readings_service.api.bodies import SUPPORTED_ENCODINGS
from readings_service.api.problems import error_response
from readings_service.errors import BadRequest, HeadersTooLarge, ServiceError, UnsupportedEncoding, UriTooLong

log = logging.getLogger("readings_service")

# The longest request target (path and query) and the longest header line, in bytes. They differ on purpose:
# the parser's error carries only the limit it hit, and that tells a long request line (414) from a long
# header (431).
MAX_REQUEST_LINE = 8192
MAX_HEADER_FIELD = 8190
MAX_HEADERS = 128
# aiohttp's words for a body it cannot decode: "Can not decode content-encoding: brotli (br). Please install ..."
_ENCODING_NAME = re.compile(r"content-encoding: (?:[a-z]+ \()?([a-z0-9._-]+)")


def parser_error(exc: BaseException | None) -> ServiceError | None:
    """The client error a request the parser refused stands for; None if it is none of them."""
    if isinstance(exc, LineTooLong):
        if exc.args[1:2] == (MAX_HEADER_FIELD,):
            return HeadersTooLarge(f"a header line is longer than {MAX_HEADER_FIELD} bytes")
        return UriTooLong(f"the request target is longer than {MAX_REQUEST_LINE} bytes")
    if not isinstance(exc, BadHttpMessage):
        return None
    message = exc.message.lower()
    if "too many headers" in message:
        return HeadersTooLarge(f"more than {MAX_HEADERS} header lines")
    if isinstance(exc, ContentEncodingError) and "can not decode content-encoding" in message:
        match = _ENCODING_NAME.search(message)
        return UnsupportedEncoding(match[1] if match else "(unknown)", SUPPORTED_ENCODINGS)
    first_line = exc.message.strip().splitlines()[0] if exc.message.strip() else "unparseable"
    return BadRequest(f"malformed HTTP request: {first_line.rstrip(':')}")


class ProblemRequestHandler(RequestHandler):
    """A connection whose parser errors are answered with problem+json; each is one log line, not a traceback."""

    __slots__ = ()

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        error = parser_error(exc) if status < 500 else None
        if error is None or request.writer.output_size > 0:  # ours, or a response has begun: aiohttp's way
            return super().handle_error(request, status, exc, message)
        log.info("refused a request from %s: %d %s", request.remote, error.status, error.detail)
        response = error_response(error)
        response.force_close()  # after a broken request the parser cannot find the next one
        return response


class ProblemServer(web.Server):
    """web.Server whose connections are ProblemRequestHandlers."""

    def __call__(self) -> RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ProblemAppRunner(web.AppRunner):
    """An AppRunner serving through ProblemServer, with this module's parser limits."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        limits = {"max_line_size": MAX_REQUEST_LINE, "max_field_size": MAX_HEADER_FIELD, "max_headers": MAX_HEADERS}
        super().__init__(app, **(limits | kwargs))

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return ProblemServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


async def serve(app: web.Application, host: str, port: int, shutdown_timeout_s: float) -> None:
    """Serve `app` until SIGINT or SIGTERM, then shut down gracefully (stop accepting, drain, clean up)."""
    runner = ProblemAppRunner(app, handler_cancellation=True, shutdown_timeout=shutdown_timeout_s, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("serving on %s", site.name)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("signal received: shutting down")
    finally:
        await runner.cleanup()

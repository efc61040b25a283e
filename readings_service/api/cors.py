"""Cross-origin requests (CORS) from the configured origins only: pre-flights answered, responses marked.

Clients authenticate with an `Authorization: Bearer` header, not cookies, so no credentials mode is involved:
the origin is echoed, never `*`, and `Access-Control-Allow-Credentials` is not sent. A request from any other
origin gets no CORS header at all, so the browser keeps the response from the page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What a browser may send beyond the CORS-safelisted headers, and which response headers a page may read.
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Content-Encoding")
EXPOSED_HEADERS = ("Retry-After", "WWW-Authenticate", "Allow", "Accept-Encoding")
PREFLIGHT_MAX_AGE_S = 600


def setup_cors(app: web.Application, origins: Collection[str]) -> None:
    """Answer pre-flights and mark responses for `origins`; with none configured, CORS stays off."""
    if not origins:
        return
    allowed = frozenset(origins)
    app.middlewares.insert(1, preflight_middleware(allowed))  # inside the access log, before auth and routing

    async def mark(request: web.Request, response: web.StreamResponse) -> None:
        _vary(response, "Origin")
        origin = request.headers.get(hdrs.ORIGIN)
        if origin in allowed and hdrs.ACCESS_CONTROL_ALLOW_ORIGIN not in response.headers:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(EXPOSED_HEADERS)

    app.on_response_prepare.append(mark)


def preflight_middleware(allowed: frozenset[str]) -> Middleware:
    """Answer `OPTIONS` pre-flights from an allowed origin for an existing resource with 204; pass the rest on."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if (
            request.method != hdrs.METH_OPTIONS
            or origin not in allowed
            or (hdrs.ACCESS_CONTROL_REQUEST_METHOD not in request.headers)
        ):
            return await handler(request)
        methods = _allowed_methods(request)
        if not methods:  # no such resource: the 404 problem answers
            return await handler(request)
        response = web.Response(
            status=204,
            headers={
                hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: ", ".join(methods),
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ", ".join(ALLOWED_HEADERS),
                hdrs.ACCESS_CONTROL_MAX_AGE: str(PREFLIGHT_MAX_AGE_S),
            },
        )
        _vary(response, "Access-Control-Request-Method", "Access-Control-Request-Headers")
        return response

    return middleware


def _allowed_methods(request: web.Request) -> list[str]:
    """The methods the requested path has routes for; OPTIONS itself has none, so routing found a 405."""
    refused = getattr(request.match_info, "http_exception", None)
    if isinstance(refused, web.HTTPMethodNotAllowed):
        return sorted(refused.allowed_methods)
    resource = request.match_info.route.resource
    return sorted({route.method for route in resource}) if resource is not None else []


def _vary(response: web.StreamResponse, *names: str) -> None:
    present = [part.strip() for part in response.headers.get(hdrs.VARY, "").split(",") if part.strip()]
    added = [name for name in names if name.lower() not in {part.lower() for part in present}]
    if added:
        response.headers[hdrs.VARY] = ", ".join(present + added)

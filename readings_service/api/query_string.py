"""Strict query strings: every route takes exactly the query parameters its OpenAPI operation documents, once each.

A parameter the route does not know (`&device=…` on /readings, a typo of `limit`) would otherwise be ignored and
answer 200 with something the client did not ask for; a repeated one would leave it to chance which value counts.
Both are refused with 400 before the handler runs, as unknown body fields are. The allowed names come from the
OpenAPI document, so what is documented and what is accepted cannot drift apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable

from aiohttp import hdrs, web

from readings_service.api.openapi import query_parameters
from readings_service.errors import BadRequest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def check_query(names: Iterable[str], allowed: Collection[str], operation: str) -> None:
    """Raise BadRequest for the first unknown or repeated name among `names` (the keys, one per occurrence).

    The problem's `parameter` is the first unknown name (the detail lists every one) or else the first repeated
    one, and `supported` lists the operation's parameters.
    """
    counts = Counter(names)
    supported = sorted(allowed)
    takes = f"{operation} takes {', '.join(supported)}" if supported else f"{operation} takes no query parameters"
    unknown = [name for name in counts if name not in allowed]
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise BadRequest(
            f"unknown query parameter{plural} {listed}; {takes}", parameter=unknown[0], supported=supported
        )
    repeated = [name for name, count in counts.items() if count > 1]
    if repeated:
        name = repeated[0]
        raise BadRequest(
            f"query parameter {name!r} is given {counts[name]} times; give it once", parameter=name, supported=supported
        )


@web.middleware
async def strict_query_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse unknown or repeated query parameters on every route (400); unmatched requests pass on to their
    404 or 405."""
    resource = request.match_info.route.resource
    if request.query and resource is not None and request.match_info.http_exception is None:
        method = hdrs.METH_GET if request.method == hdrs.METH_HEAD else request.method
        path = resource.canonical
        # items(), not keys(): keys() gives a repeated name once.
        check_query((name for name, _ in request.query.items()), query_parameters(method, path), f"{method} {path}")
    return await handler(request)

"""Which scope each route needs: a small explicit table; routes not in it need `admin`."""

from __future__ import annotations

from readings_service.core.tokens import ADMIN, ANY_SCOPE, INGEST, METRICS, QUERY

# Open to anyone: liveness, readiness and the description of the API.
PUBLIC_ROUTES = frozenset({"/health", "/ready", "/openapi.json"})

# (method, route as registered) -> scope. A route added later without an entry here needs admin, so a
# forgotten entry fails closed.
ROUTE_SCOPES = {
    ("POST", "/readings"): INGEST,
    ("GET", "/readings"): QUERY,
    ("GET", "/devices/{device_id}/readings"): QUERY,
    ("GET", "/devices/{device_id}/latest"): QUERY,
    ("GET", "/metrics"): METRICS,
    ("GET", "/tokens"): ADMIN,
    ("POST", "/tokens"): ADMIN,
    ("DELETE", "/tokens/{name}"): ADMIN,
}


def required_scope(method: str, route: str | None) -> str | None:
    """The scope a request needs, or None if it needs no token.

    `route` is the matched route's pattern, None when no route matched: then any valid token will do (the
    answer is 404 or 405), so a client without one learns nothing about which paths exist. OPTIONS is open:
    CORS pre-flight requests never carry credentials, and they reach no handler of data.
    """
    method = method.upper()
    if method == "OPTIONS" or route in PUBLIC_ROUTES:
        return None
    if route is None:
        return ANY_SCOPE
    if method == "HEAD":
        method = "GET"
    return ROUTE_SCOPES.get((method, route), ADMIN)

"""The scope every route needs."""

from __future__ import annotations

import pytest

from readings_service.core.access import required_scope
from readings_service.core.tokens import ADMIN, ANY_SCOPE, INGEST, METRICS, QUERY


class TestRequiredScope:
    @pytest.mark.parametrize(
        ("method", "route", "expected"),
        [
            ("POST", "/readings", INGEST),
            ("GET", "/readings", QUERY),
            ("GET", "/devices/{device_id}/readings", QUERY),
            ("GET", "/devices/{device_id}/latest", QUERY),
            ("HEAD", "/devices/{device_id}/latest", QUERY),
            ("GET", "/metrics", METRICS),
            ("GET", "/tokens", ADMIN),
            ("POST", "/tokens", ADMIN),
            ("DELETE", "/tokens/{name}", ADMIN),
            ("get", "/readings", QUERY),
        ],
    )
    def test_each_route(self, method: str, route: str, expected: str) -> None:
        """Each route of the API needs its one scope (admin holds them all)."""
        assert expected == required_scope(method, route)

    @pytest.mark.parametrize("route", ["/health", "/ready", "/openapi.json"])
    def test_public_routes(self, route: str) -> None:
        """Liveness, readiness and the API description need no token."""
        assert required_scope("GET", route) is None

    def test_pre_flight_is_public(self) -> None:
        """CORS pre-flight requests carry no credentials and are let through."""
        assert required_scope("OPTIONS", "/readings") is None

    def test_unlisted_route_needs_admin(self) -> None:
        """A route nobody listed fails closed."""
        assert ADMIN == required_scope("GET", "/debug/{thing}")
        assert ADMIN == required_scope("DELETE", "/readings")

    def test_no_route_needs_any_valid_token(self) -> None:
        """A path that matches nothing needs a valid token before it is answered 404."""
        assert ANY_SCOPE == required_scope("GET", None)

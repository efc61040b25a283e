"""The OpenAPI document: valid OpenAPI 3.1, the same operations as the application's routes, served publicly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import OpenAPIV31SpecValidator

from readings_service.api.app import create_app
from readings_service.api.openapi import ERRORS, document
from tests.conftest import MemoryTokens, opener_of, settings_for

METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")


def app_with_auth() -> web.Application:
    return create_app(settings_for(auth={"required": True}), opener_of(object()), MemoryTokens().opener())


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route; aiohttp adds HEAD to every GET on its own."""
    routes = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
    heads = {(method, path) for method, path in routes if method == "HEAD"}
    assert {("GET", path) for _, path in heads} <= routes, "a HEAD route without its GET"
    return routes - heads


def operations_of(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in spec["paths"].items() for method in item if method in METHODS}


class TestDocument:
    def test_is_valid_openapi_3_1(self) -> None:
        spec = document()
        assert spec["openapi"].startswith("3.1.")
        errors = [error.message for error in OpenAPIV31SpecValidator(spec).iter_errors()]
        assert [] == errors

    def test_describes_every_route_and_nothing_else(self) -> None:
        """Every route of the app (with authentication on, so /tokens exists) is an operation, and back."""
        assert routes_of(app_with_auth()) == operations_of(document())

    def test_every_operation_lists_the_errors_any_request_can_get(self) -> None:
        for path, item in document()["paths"].items():
            for method, operation in item.items():
                statuses = {int(code) for code in operation["responses"]}
                assert {400, 405, 414, 431, 500} <= statuses, (method, path)
                assert statuses <= {200, 201, 204, 207} | set(ERRORS), (method, path)
                if operation.get("security") != []:
                    assert {401, 403, 503} <= statuses, (method, path)

    def test_streams_say_how_a_cut_stream_ends(self) -> None:
        stream = document()["paths"]["/readings"]["get"]["responses"]["200"]
        assert "application/x-ndjson" in stream["content"]
        assert '{"error": {"status"' in stream["description"]


class TestServed:
    @pytest.mark.parametrize("required", [True, False])
    async def test_public(self, aiohttp_client: Callable[..., Any], required: bool) -> None:
        """GET /openapi.json needs no token, authentication on or off."""
        app = create_app(settings_for(auth={"required": required}), opener_of(object()), MemoryTokens().opener())
        client = await aiohttp_client(app)
        response = await client.get("/openapi.json")
        assert 200 == response.status
        assert "application/json" == response.content_type
        assert document() == await response.json()

"""Strict query strings: unknown or repeated query parameters are a 400 naming them, on every route."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from readings_service.api.app import create_app
from readings_service.api.openapi import document, query_parameters
from readings_service.api.query_string import check_query
from readings_service.core.memory_store import MemoryStore
from readings_service.core.tokens import ADMIN, TokenRecord, hash_token
from readings_service.errors import BadRequest
from tests.conftest import MemoryTokens, opener_of, settings_for

ADMIN_TOKEN = "admin-secret"
AUTHORIZED = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DEVICE = uuid.UUID("0191b2f4-65a3-7c3e-8a1b-2f6c1f0e9d42")
RANGE = "start=2026-11-20T00:00:00Z&end=2026-11-21T00:00:00Z"
PATH_VALUES = {"{device_id}": str(DEVICE), "{name}": "nobody"}


def operations() -> list[tuple[str, str]]:
    """(method, path template) of every documented operation."""
    return [(method.upper(), path) for path, item in document()["paths"].items() for method in item]


def url_of(path: str) -> str:
    for template, value in PATH_VALUES.items():
        path = path.replace(template, value)
    return path


@pytest.fixture
async def client(aiohttp_client: Callable[..., Any]) -> Any:
    """The app with authentication on (so that /tokens exists) and an admin token."""
    tokens = MemoryTokens()
    tokens.records["admin"] = TokenRecord("admin", hash_token(ADMIN_TOKEN), frozenset({ADMIN}), 0)
    app = create_app(settings_for(auth={"required": True}), opener_of(MemoryStore(buckets=16)), tokens.opener())
    return await aiohttp_client(app)


async def problem_of(response: Any) -> dict[str, Any]:
    assert 400 == response.status
    assert "application/problem+json" == response.content_type
    return await response.json()  # type: ignore[no-any-return]


class TestCheckQuery:
    def test_known_names_once_pass(self) -> None:
        check_query(["start", "end", "limit"], {"start", "end", "limit", "after"}, "GET /readings")

    def test_unknown_names_are_all_listed(self) -> None:
        """The first unknown name is the parameter at fault; the detail names each one once, then what is taken."""
        with pytest.raises(BadRequest) as caught:
            check_query(["start", "device", "every", "device"], {"start", "end"}, "GET /readings")
        expected = "unknown query parameters 'device', 'every'; GET /readings takes end, start"
        assert (expected, "device", ["end", "start"]) == (
            caught.value.detail,
            caught.value.extra["parameter"],
            caught.value.extra["supported"],
        )

    def test_repeated_name(self) -> None:
        with pytest.raises(BadRequest) as caught:
            check_query(["start", "limit", "limit", "limit"], {"start", "limit"}, "GET /readings")
        assert "query parameter 'limit' is given 3 times; give it once" == caught.value.detail
        assert "limit" == caught.value.extra["parameter"]

    def test_route_without_parameters(self) -> None:
        with pytest.raises(BadRequest, match="unknown query parameter 'x'; GET /health takes no query parameters"):
            check_query(["x"], set(), "GET /health")


class TestEveryRoute:
    @pytest.mark.parametrize(("method", "path"), operations())
    async def test_unknown_parameter_is_refused(self, client: Any, method: str, path: str) -> None:
        """Every documented operation refuses a parameter it does not document, before its handler runs."""
        response = await client.request(method, url_of(path) + "?bogus=1", headers=AUTHORIZED)
        problem = await problem_of(response)
        assert "bogus" == problem["parameter"]
        assert sorted(query_parameters(method, path)) == problem["supported"]
        assert f"{method} {path}" in problem["detail"]

    @pytest.mark.parametrize(
        ("method", "path", "name"),
        [(method, path, name) for method, path in operations() for name in sorted(query_parameters(method, path))],
    )
    async def test_repeated_parameter_is_refused(self, client: Any, method: str, path: str, name: str) -> None:
        """Every documented query parameter may be given once only."""
        response = await client.request(method, f"{url_of(path)}?{name}=1&{name}=1", headers=AUTHORIZED)
        problem = await problem_of(response)
        assert name == problem["parameter"]
        assert "is given 2 times" in problem["detail"]

    def test_every_query_route_has_parameters(self) -> None:
        """The operations that take query parameters are the ones expected (so the parametrisation above covers
        them)."""
        expected = {
            ("GET", "/readings"): {"start", "end", "limit", "after"},
            ("GET", "/devices/{device_id}/readings"): {"start", "end", "limit", "after"},
            ("POST", "/readings"): {"partial"},
        }
        found = {(m, p): set(query_parameters(m, p)) for m, p in operations() if query_parameters(m, p)}
        assert expected == found


class TestRequests:
    async def test_the_issue_example(self, client: Any) -> None:
        """`&device=…&every=5m` on a range query was ignored with 200; now both are named."""
        response = await client.get(f"/readings?{RANGE}&device={DEVICE}&every=5m", headers=AUTHORIZED)
        problem = await problem_of(response)
        assert "device" == problem["parameter"]
        assert "'device', 'every'" in problem["detail"]

    async def test_documented_parameters_still_work(self, client: Any) -> None:
        range_answer = await client.get(
            f"/readings?{RANGE}&limit=5&after=2026-11-20T00:00:00Z,{DEVICE}", headers=AUTHORIZED
        )
        assert 200 == range_answer.status
        device_answer = await client.get(f"/devices/{DEVICE}/readings?{RANGE}&limit=5", headers=AUTHORIZED)
        assert 200 == device_answer.status
        reading = {"device_id": str(DEVICE), "ts": "2026-11-20T10:00:00Z", "temperature": 1, "pressure": 2}
        post_answer = await client.post("/readings?partial=true", json=reading, headers=AUTHORIZED)
        assert 200 == post_answer.status
        assert 200 == (await client.get("/health")).status

    async def test_case_matters(self, client: Any) -> None:
        """`Limit` is not `limit`."""
        problem = await problem_of(await client.get(f"/readings?{RANGE}&Limit=5", headers=AUTHORIZED))
        assert "Limit" == problem["parameter"]

    async def test_head_is_checked_as_get(self, client: Any) -> None:
        response = await client.head("/health?verbose=1")
        assert 400 == response.status

    async def test_authentication_comes_first(self, client: Any) -> None:
        """Without a token the answer is 401, whatever the query string."""
        assert 401 == (await client.get(f"/readings?{RANGE}&bogus=1")).status

    async def test_unmatched_requests_keep_their_status(self, client: Any) -> None:
        """No such path is 404 and no such method 405, not a parameter error."""
        assert 404 == (await client.get("/nope?bogus=1", headers=AUTHORIZED)).status
        assert 405 == (await client.put("/readings?bogus=1", headers=AUTHORIZED)).status

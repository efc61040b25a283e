"""The Authorization header, the auth middleware's answers and /tokens, on in-memory stores."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from readings_service.api.app import create_app
from readings_service.api.auth import bearer_token
from readings_service.core.tokens import ADMIN, INGEST, METRICS, TokenRecord, hash_token
from tests.conftest import MemoryTokens, opener_of, settings_for

PROBLEM_JSON = "application/problem+json"


class TestBearerToken:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (None, None),
            ("", None),
            ("Basic dXNlcjpwdw==", None),
            ("Bearerish abc", None),
            ("Bearer abc", "abc"),
            ("bearer abc", "abc"),
            ("BEARER \t abc  ", "abc"),
            ("Bearer", ""),
            ("Bearer ", ""),
            ("Bearer a b", "a b"),
        ],
    )
    def test_parsing(self, header: str | None, expected: str | None) -> None:
        """None without Bearer credentials; otherwise what follows the scheme ("" and "a b" are never valid)."""
        assert expected == bearer_token(header)


class PingStore:
    """Enough of a ReadingStore for the routes that do not touch readings."""

    async def ping(self) -> None:
        return None


def add(tokens: MemoryTokens, name: str, token: str, *scopes: str) -> None:
    tokens.records[name] = TokenRecord(name, hash_token(token), frozenset(scopes), 0)


@pytest.fixture
def tokens() -> MemoryTokens:
    store = MemoryTokens()
    add(store, "metrics", "metrics-secret", METRICS)
    add(store, "admin", "admin-secret", ADMIN)
    return store


@pytest.fixture
async def client(aiohttp_client: Callable[..., Any], tokens: MemoryTokens) -> Any:
    settings = settings_for(auth={"required": True})
    return await aiohttp_client(create_app(settings, opener_of(PingStore()), tokens.opener()))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestRefusals:
    async def test_missing_token(self, client: Any) -> None:
        """No token: 401, a Bearer challenge without an error code, problem+json."""
        response = await client.get("/metrics")
        assert 401 == response.status
        assert 'Bearer realm="readings-service"' == response.headers["WWW-Authenticate"]
        assert PROBLEM_JSON == response.content_type
        body = await response.json(content_type=PROBLEM_JSON)
        assert {"type", "title", "status", "detail"} == set(body)
        assert 401 == body["status"]

    @pytest.mark.parametrize("header", ["Bearer garbage", "Bearer ", "Bearer admin-secretX"])
    async def test_unknown_token(self, client: Any, header: str) -> None:
        """A token that is not valid: 401 with error="invalid_token"."""
        response = await client.get("/metrics", headers={"Authorization": header})
        assert 401 == response.status
        assert 'Bearer realm="readings-service", error="invalid_token"' == response.headers["WWW-Authenticate"]
        assert PROBLEM_JSON == response.content_type

    async def test_wrong_scope(self, client: Any) -> None:
        """A valid token without the route's scope: 403 naming the scope needed."""
        response = await client.get("/readings", headers=bearer("metrics-secret"))
        assert 403 == response.status
        assert 'error="insufficient_scope", scope="query"' in response.headers["WWW-Authenticate"]
        body = await response.json(content_type=PROBLEM_JSON)
        assert "query" == body["required_scope"]

    async def test_unknown_path_needs_a_token(self, client: Any) -> None:
        """No token: 401 even for a path that does not exist; with any valid token, 404."""
        assert 401 == (await client.get("/nothing")).status
        assert 404 == (await client.get("/nothing", headers=bearer("metrics-secret"))).status


class TestAccepted:
    @pytest.mark.parametrize("path", ["/health", "/ready"])
    async def test_public_routes(self, client: Any, path: str) -> None:
        """/health and /ready answer without a token."""
        assert 200 == (await client.get(path)).status

    async def test_scope_and_admin(self, client: Any) -> None:
        """The metrics token and the admin token both read /metrics."""
        for token in ("metrics-secret", "admin-secret"):
            assert 200 == (await client.get("/metrics", headers=bearer(token))).status


class TestTokenRoutes:
    async def test_create_use_list_revoke(self, client: Any, tokens: MemoryTokens) -> None:
        """An admin creates a token (shown once), it works at once, the list never shows secrets, revoking it
        makes it fail at once on this instance."""
        created = await client.post(
            "/tokens", json={"name": "ci", "scopes": [INGEST, METRICS]}, headers=bearer("admin-secret")
        )
        assert 201 == created.status
        document = await created.json()
        assert {"name", "scopes", "created", "token"} == set(document)
        assert ["ingest", "metrics"] == document["scopes"]
        token = document["token"]
        assert 200 == (await client.get("/metrics", headers=bearer(token))).status

        listed = await client.get("/tokens", headers=bearer("admin-secret"))
        text = await listed.text()
        assert ["admin", "ci", "metrics"] == [t["name"] for t in (await listed.json())["tokens"]]
        assert token not in text
        assert hash_token(token).hex() not in text

        assert 204 == (await client.delete("/tokens/ci", headers=bearer("admin-secret"))).status
        assert 401 == (await client.get("/metrics", headers=bearer(token))).status
        assert 404 == (await client.delete("/tokens/ci", headers=bearer("admin-secret"))).status

    async def test_needs_admin(self, client: Any) -> None:
        """Token management needs the admin scope."""
        response = await client.get("/tokens", headers=bearer("metrics-secret"))
        assert 403 == response.status

    @pytest.mark.parametrize(
        ("body", "status"),
        [
            ({"name": "admin", "scopes": [INGEST]}, 409),
            ({"name": "x", "scopes": ["write"]}, 400),
            ({"name": "x y", "scopes": [INGEST]}, 400),
            ({"name": "x"}, 400),
            ({"name": "x", "scopes": "ingest"}, 400),
        ],
    )
    async def test_bad_creations(self, client: Any, body: dict[str, Any], status: int) -> None:
        """A taken name is 409; a bad name, scope or body shape is 400."""
        response = await client.post("/tokens", json=body, headers=bearer("admin-secret"))
        assert status == response.status
        assert PROBLEM_JSON == response.content_type


class TestAuthOff:
    async def test_open_and_logged(self, aiohttp_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
        """auth.required = false: no token needed, no /tokens routes, and a WARNING at start-up says so."""
        settings = settings_for(auth={"required": False})
        with caplog.at_level(logging.WARNING, logger="readings_service"):
            client = await aiohttp_client(create_app(settings, opener_of(PingStore())))
        assert 200 == (await client.get("/metrics")).status
        assert 404 == (await client.get("/tokens")).status
        assert any(r.levelno == logging.WARNING and "authentication is OFF" in r.message for r in caplog.records)

    def test_required_needs_a_token_store(self) -> None:
        """Asking for authentication without a token store is a programming error, caught at once."""
        with pytest.raises(ValueError, match="token store"):
            create_app(settings_for(auth={"required": True}), opener_of(PingStore()))

"""API tokens against the real Cassandra: every scope on every route, two instances sharing one token table,
revocation reaching the other instance, and the `token` command."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from readings_service.api.app import create_app
from readings_service.config import Settings
from readings_service.core.tokens import ADMIN, INGEST, METRICS, QUERY, SCOPES, TOKEN_PREFIX, grants, hash_token, issue
from readings_service.store.cassandra import open_store
from readings_service.store.tokens import open_tokens
from tests.conftest import ROOT, fresh_keyspace, run_keyspace, settings_for
from tests.conftest import run_cli as shared_run_cli

KEYSPACE = run_keyspace("readings_test_auth")
PROBLEM_JSON = "application/problem+json"
DEVICE = uuid.UUID("0191b2f4-65a3-7c3e-8a1b-2f6c1f0e9d42")
READING = {"device_id": str(DEVICE), "ts": "2026-01-02T03:04:05.000Z", "temperature": 20.5, "pressure": 1000.0}
RANGE = "start=2026-01-02T00:00:00Z&end=2026-01-03T00:00:00Z"
# Every route that needs a token, with the scope it needs.
ROUTES = [
    ("POST", "/readings", INGEST),
    ("GET", f"/readings?{RANGE}", QUERY),
    ("GET", f"/devices/{DEVICE}/readings?{RANGE}", QUERY),
    ("GET", f"/devices/{DEVICE}/latest", QUERY),
    ("GET", "/metrics", METRICS),
]


@pytest.fixture(scope="module")
def auth_settings(cassandra_session: Any) -> Settings:
    settings = settings_for(KEYSPACE, auth={"required": True})
    fresh_keyspace(cassandra_session, settings)
    return settings


@pytest.fixture
def settings(cassandra_session: Any, auth_settings: Settings) -> Settings:
    """The auth keyspace with no tokens and no readings."""
    for table in ("api_tokens", "readings", "readings_by_device", "device_latest_day"):
        cassandra_session.execute(f"TRUNCATE {KEYSPACE}.{table}", timeout=120)
    return auth_settings


@pytest.fixture
def start_instance(aiohttp_client: Callable[..., Any], settings: Settings) -> Callable[[], Awaitable[Any]]:
    """Start one more service instance on the keyspace, wired exactly as `serve` wires it."""

    async def start() -> Any:
        return await aiohttp_client(create_app(settings, open_store, open_tokens))

    return start


async def add_token(settings: Settings, name: str, *scopes: str) -> str:
    async with open_tokens(settings) as store:
        token, _ = await issue(store, name, scopes)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def status_of(client: Any, method: str, path: str, headers: dict[str, str]) -> int:
    body = {"json": READING} if method == "POST" else {}
    async with client.request(method, path, headers=headers, **body) as response:
        await response.read()
        return int(response.status)


async def eventually(condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float) -> float:
    """Seconds until `condition` held; fails the test after `timeout_s`."""
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


class TestScopesOnRoutes:
    async def test_each_scope_on_each_route(
        self, settings: Settings, start_instance: Callable[[], Awaitable[Any]]
    ) -> None:
        """A token with the route's scope, or admin, gets 200; any other scope gets 403."""
        tokens = {scope: await add_token(settings, f"only-{scope}", scope) for scope in SCOPES}
        client = await start_instance()
        assert 200 == await status_of(client, "POST", "/readings", bearer(tokens[INGEST]))  # so /latest has one
        expected = {
            (scope, path): 200 if grants({scope}, needed) else 403 for scope in SCOPES for _, path, needed in ROUTES
        }
        actual = {
            (scope, path): await status_of(client, method, path, bearer(tokens[scope]))
            for scope in SCOPES
            for method, path, _ in ROUTES
        }
        assert expected == actual

    async def test_missing_and_garbage_tokens(
        self, settings: Settings, start_instance: Callable[[], Awaitable[Any]]
    ) -> None:
        """Every route refuses a missing or unknown token with 401, a Bearer challenge and problem+json;
        /health and /ready need none."""
        await add_token(settings, "admin", ADMIN)
        client = await start_instance()
        for method, path, _ in ROUTES:
            for headers, challenge in (
                ({}, 'Bearer realm="readings-service"'),
                (bearer(TOKEN_PREFIX + "garbage"), 'Bearer realm="readings-service", error="invalid_token"'),
                ({"Authorization": "Basic YWRtaW46YWRtaW4="}, 'Bearer realm="readings-service"'),
            ):
                async with client.request(method, path, headers=headers, json=READING) as response:
                    assert (401, challenge) == (response.status, response.headers["WWW-Authenticate"]), path
                    assert PROBLEM_JSON == response.content_type
                    assert 401 == (await response.json(content_type=PROBLEM_JSON))["status"]
        for path in ("/health", "/ready"):
            assert 200 == await status_of(client, "GET", path, {})


class TestAccessLogNamesTheToken:
    async def test_name_not_token(
        self, settings: Settings, start_instance: Callable[[], Awaitable[Any]], caplog: pytest.LogCaptureFixture
    ) -> None:
        """The access-log line of an authenticated request names its token; the token itself never appears."""
        token = await add_token(settings, "dashboard-7", QUERY)
        client = await start_instance()
        with caplog.at_level(logging.INFO, logger="readings_service.access"):
            assert 200 == await status_of(client, "GET", f"/readings?{RANGE}", bearer(token))
            assert 403 == await status_of(client, "POST", "/readings", bearer(token))
            assert 401 == await status_of(client, "GET", f"/readings?{RANGE}", {})
        lines = [r.getMessage() for r in caplog.records if r.name == "readings_service.access"]
        assert 3 == len(lines)
        assert ["token=dashboard-7", "token=dashboard-7"] == [
            part for line in lines[:2] for part in line.split() if part.startswith("token=")
        ]
        assert "token=" not in lines[2]
        assert all(token not in line for line in lines)


class TestTwoInstances:
    async def test_created_and_revoked_on_one_holds_on_the_other(
        self, settings: Settings, start_instance: Callable[[], Awaitable[Any]]
    ) -> None:
        """A token created through instance A works on B after B's next refresh; revoked through A, it fails
        on A at once and on B within the refresh interval (plus a margin for a slow machine)."""
        admin = await add_token(settings, "admin", ADMIN)
        first, second = await start_instance(), await start_instance()
        created = await first.post("/tokens", json={"name": "reader", "scopes": [QUERY]}, headers=bearer(admin))
        assert 201 == created.status
        token = (await created.json())["token"]
        latest = f"/devices/{DEVICE}/latest"

        async def status_on(client: Any) -> int:
            return await status_of(client, "GET", latest, bearer(token))

        assert 404 == await status_on(first)  # authorised; the device simply has no readings
        await eventually(lambda: _is(status_on(second), 404), "the new token to work on the second instance", 10)

        assert 204 == (await first.delete("/tokens/reader", headers=bearer(admin))).status
        assert 401 == await status_on(first)
        waited = await eventually(
            lambda: _is(status_on(second), 401),
            "the revocation to reach the second instance",
            settings.auth.refresh_interval_s + 8,
        )
        assert waited < settings.auth.refresh_interval_s + 8


async def _is(status: Awaitable[int], expected: int) -> bool:
    return await status == expected


def run_cli(*args: str, keyspace: str = KEYSPACE) -> subprocess.CompletedProcess[str]:
    return shared_run_cli(
        *args, env={"READINGS_CASSANDRA_KEYSPACE": keyspace, "READINGS_CONFIG": str(ROOT / "config.toml")}
    )


class TestTokenCommand:
    def test_create_list_revoke(self, settings: Settings, cassandra_session: Any) -> None:
        """create prints the token once and stores only its hash; list shows names, scopes and times but no
        secret; revoke deletes it, and revoking again fails."""
        created = run_cli("token", "create", "--scope", "ingest", "--scope", "query", "--name", "ci")
        assert 0 == created.returncode, created.stderr
        token = created.stdout.strip()
        assert token.startswith(TOKEN_PREFIX)
        rows = list(cassandra_session.execute(f"SELECT name, token_hash, scopes FROM {KEYSPACE}.api_tokens"))
        assert [("ci", hash_token(token), ["ingest", "query"])] == [(r[0], r[1], sorted(r[2])) for r in rows]

        again = run_cli("token", "create", "--scope", "admin", "--name", "ci")
        assert 1 == again.returncode
        assert "exists already" in again.stderr

        listed = run_cli("token", "list")
        assert 0 == listed.returncode, listed.stderr
        lines = listed.stdout.splitlines()
        assert ["NAME", "SCOPES", "CREATED"] == lines[0].split()
        assert ["ci", "ingest,query"] == lines[1].split()[:2]
        assert token not in listed.stdout
        assert hash_token(token).hex() not in listed.stdout

        assert 0 == run_cli("token", "revoke", "ci").returncode
        assert [] == list(cassandra_session.execute(f"SELECT name FROM {KEYSPACE}.api_tokens"))
        gone = run_cli("token", "revoke", "ci")
        assert 1 == gone.returncode
        assert "no token named 'ci'" in gone.stderr
        assert "Traceback" not in gone.stderr

    def test_init_only_when_there_is_none(self, settings: Settings, cassandra_session: Any) -> None:
        """init creates and prints an admin token named local-admin the first time, and nothing afterwards."""
        first = run_cli("token", "init")
        assert 0 == first.returncode, first.stderr
        token = next(word for word in first.stdout.split() if word.startswith(TOKEN_PREFIX))
        rows = list(cassandra_session.execute(f"SELECT name, token_hash, scopes FROM {KEYSPACE}.api_tokens"))
        assert [("local-admin", hash_token(token), ["admin"])] == [(r[0], r[1], sorted(r[2])) for r in rows]
        second = run_cli("token", "init")
        assert 0 == second.returncode
        assert "none created" in second.stdout
        assert TOKEN_PREFIX not in second.stdout
        assert 1 == len(list(cassandra_session.execute(f"SELECT name FROM {KEYSPACE}.api_tokens")))

    async def test_revoked_by_the_command_while_serving(
        self, settings: Settings, start_instance: Callable[[], Awaitable[Any]]
    ) -> None:
        """A token created by the command works on a running instance; revoked by the command, it stops working
        there within seconds."""
        client = await start_instance()
        created = await asyncio.to_thread(run_cli, "token", "create", "--scope", "metrics", "--name", "scraper")
        token = created.stdout.strip()
        await eventually(
            lambda: _is(status_of(client, "GET", "/metrics", bearer(token)), 200), "the new token to work", 10
        )
        revoked = await asyncio.to_thread(run_cli, "token", "revoke", "scraper")
        assert 0 == revoked.returncode, revoked.stderr
        await eventually(
            lambda: _is(status_of(client, "GET", "/metrics", bearer(token)), 401), "the revocation to hold", 10
        )

    def test_keyspace_without_the_table(self, cassandra_session: Any) -> None:
        """A keyspace applied before tokens existed is named, with the fix."""
        keyspace = run_keyspace("readings_test_auth_old")
        fresh_keyspace(cassandra_session, settings_for(keyspace))
        cassandra_session.execute(f"DROP TABLE {keyspace}.api_tokens", timeout=120)
        result = run_cli("token", "list", keyspace=keyspace)
        assert 1 == result.returncode
        assert f"keyspace {keyspace} has no api_tokens table: run `readings-service schema apply`" in result.stderr
        assert "Traceback" not in result.stderr

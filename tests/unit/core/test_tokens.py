"""API tokens: generation, hashing, scope checks, the in-memory set and its refreshing cache."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from readings_service.core.tokens import (
    ADMIN,
    ANY_SCOPE,
    INGEST,
    METRICS,
    QUERY,
    TOKEN_PREFIX,
    TokenCache,
    TokenRecord,
    TokenSet,
    check_name,
    check_scopes,
    grants,
    hash_token,
    issue,
    new_token,
)
from readings_service.errors import BadRequest, Conflict, StoreUnavailable
from tests.conftest import MemoryTokens


def record(name: str, token: str, *scopes: str) -> TokenRecord:
    return TokenRecord(name=name, token_hash=hash_token(token), scopes=frozenset(scopes), created_ms=0)


class TestNewToken:
    def test_prefix_and_length(self) -> None:
        """A token is the recognisable prefix and 43 URL-safe characters (32 random bytes)."""
        token = new_token()
        assert token.startswith(TOKEN_PREFIX)
        assert 43 == len(token.removeprefix(TOKEN_PREFIX))

    def test_tokens_differ(self) -> None:
        """Every call draws a new token."""
        assert 100 == len({new_token() for _ in range(100)})


class TestHashToken:
    def test_is_sha256_of_the_whole_token(self) -> None:
        """The stored form is the SHA-256 digest of the token's UTF-8 bytes, prefix included."""
        assert hashlib.sha256(b"rdgs_abc").digest() == hash_token("rdgs_abc")
        assert bytes.fromhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == hash_token("abc")


class TestGrants:
    @pytest.mark.parametrize(
        ("scopes", "needed", "expected"),
        [
            ({INGEST}, INGEST, True),
            ({INGEST}, QUERY, False),
            ({QUERY, METRICS}, METRICS, True),
            ({METRICS}, ADMIN, False),
            ({ADMIN}, INGEST, True),
            ({ADMIN}, QUERY, True),
            ({ADMIN}, METRICS, True),
            ({ADMIN}, ADMIN, True),
            ({INGEST}, ANY_SCOPE, True),
        ],
    )
    def test_scope_or_admin(self, scopes: set[str], needed: str, expected: bool) -> None:
        """A token may do what one of its scopes names; admin may do everything."""
        assert expected == grants(scopes, needed)


class TestChecks:
    @pytest.mark.parametrize("name", ["local-admin", "a", "ci.ingest_2", "x" * 64])
    def test_good_names(self, name: str) -> None:
        assert name == check_name(name)

    @pytest.mark.parametrize("name", ["", "-lead", "has space", "x" * 65, "ünï", "a/b"])
    def test_bad_names(self, name: str) -> None:
        """A bad name is refused naming the parameter."""
        with pytest.raises(BadRequest) as caught:
            check_name(name)
        assert "name" == caught.value.extra["parameter"]

    def test_scopes(self) -> None:
        """Known scopes become a set; unknown ones and none at all are refused."""
        assert frozenset({INGEST, QUERY}) == check_scopes([INGEST, QUERY, INGEST])
        with pytest.raises(BadRequest, match="unknown scope"):
            check_scopes([INGEST, "write"])
        with pytest.raises(BadRequest, match="no scope given"):
            check_scopes([])

    @pytest.mark.parametrize("scopes", [[{}], [[INGEST]], [1, "query"], [None], [INGEST, {"a": 1}]])
    def test_scopes_of_any_json_type(self, scopes: list[object]) -> None:
        """Objects, arrays and numbers among the scopes are a 400 naming them, not a TypeError (found by the
        fuzzer: `{"name": "0", "scopes": [{}]}` was a 500)."""
        with pytest.raises(BadRequest, match="unknown scope"):
            check_scopes(scopes)


class TestTokenSet:
    def test_finds_by_token(self) -> None:
        """A known token finds its record; an unknown one and the hash itself find nothing."""
        tokens = TokenSet([record("a", "secret-a", INGEST), record("b", "secret-b", QUERY)])
        found = tokens.find("secret-b")
        assert found is not None
        assert "b" == found.name
        assert tokens.find("secret-c") is None
        assert tokens.find(hash_token("secret-a").hex()) is None


class TestIssue:
    async def test_issue_stores_only_the_hash(self) -> None:
        """The secret is returned; the store holds its hash, the name and the scopes."""
        store = MemoryTokens()
        token, issued = await issue(store, "ci", [INGEST])
        assert [issued] == await store.tokens()
        assert hash_token(token) == issued.token_hash
        assert token not in repr(issued)

    async def test_name_taken(self) -> None:
        """A second token of the same name is a Conflict and leaves the first in place."""
        store = MemoryTokens()
        _, first = await issue(store, "ci", [INGEST])
        with pytest.raises(Conflict):
            await issue(store, "ci", [ADMIN])
        assert [first] == await store.tokens()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestTokenCache:
    async def test_sees_changes_after_refresh(self) -> None:
        """Tokens added or revoked in the store count once the cache has re-read it."""
        store = MemoryTokens()
        cache = TokenCache(store, 2.0)
        await cache.refresh()
        await store.add(record("a", "secret-a", INGEST))
        assert cache.find("secret-a") is None
        await cache.refresh()
        assert cache.find("secret-a") is not None
        await store.revoke("a")
        await cache.refresh()
        assert cache.find("secret-a") is None

    async def test_refuses_to_answer_when_stale(self) -> None:
        """Never loaded, or not re-read for longer than stale_after_s: lookups raise StoreUnavailable."""
        clock = Clock()
        cache = TokenCache(MemoryTokens(), 2.0, clock=clock)
        with pytest.raises(StoreUnavailable):
            cache.find("x")
        await cache.refresh()
        assert cache.find("x") is None
        assert 30.0 == cache.stale_after_s
        clock.now += 30.5
        with pytest.raises(StoreUnavailable):
            cache.find("x")

    async def test_an_older_read_never_replaces_a_newer_one(self) -> None:
        """A slow read that started before a revocation's re-read does not bring the token back."""
        store = MemoryTokens()
        await store.add(record("a", "secret-a", INGEST))
        cache = TokenCache(store, 2.0)
        release = asyncio.Event()
        original = store.tokens

        async def slow_tokens() -> list[TokenRecord]:
            rows = await original()
            await release.wait()
            return rows

        store.tokens = slow_tokens  # type: ignore[method-assign]
        slow = asyncio.create_task(cache.refresh())  # reads the set that still holds "a"
        await asyncio.sleep(0)
        store.tokens = original  # type: ignore[method-assign]
        await store.revoke("a")
        await cache.refresh()
        release.set()
        await slow
        assert cache.find("secret-a") is None

    async def test_keeps_refreshing_after_an_unexpected_error(self) -> None:
        """A bug while re-reading is logged and the next interval reads again; the task does not die."""
        store = MemoryTokens()
        cache = TokenCache(store, 0.01)
        original = store.tokens
        calls = 0

        async def broken_once() -> list[TokenRecord]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("a bug")
            return await original()

        store.tokens = broken_once  # type: ignore[method-assign]
        await store.add(record("a", "secret-a", INGEST))
        task = asyncio.create_task(cache.keep_fresh())
        try:
            for _ in range(200):
                if calls >= 2:
                    break
                await asyncio.sleep(0.01)
            assert not task.done()
            assert cache.find("secret-a") is not None
        finally:
            task.cancel()

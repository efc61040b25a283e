"""API tokens: generation, hashing, scopes, the in-memory set a process checks against, and the store port.

A token is shown once, at creation; only its SHA-256 hash is stored. Tokens are long random strings, so a plain
unsalted hash is enough: nobody can guess one from its hash, and a lookup needs no per-token work.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from readings_service.core.timestamps import format_timestamp
from readings_service.errors import BadRequest, Conflict, ServiceError, StoreUnavailable

log = logging.getLogger("readings_service")

# Recognisable in logs, shells and secret scanners; the rest is 32 random bytes, URL-safe base64 (43 characters).
TOKEN_PREFIX = "rdgs_"
TOKEN_BYTES = 32
INGEST, QUERY, METRICS, ADMIN = "ingest", "query", "metrics", "admin"
SCOPES = (INGEST, QUERY, METRICS, ADMIN)
# Not a scope a token holds: what a request needs when any valid token will do.
ANY_SCOPE = "any"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def new_token() -> str:
    """A fresh random token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> bytes:
    """The SHA-256 digest under which a token is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8", errors="surrogateescape")).digest()


def grants(scopes: Iterable[str], needed: str) -> bool:
    """Whether a token with `scopes` may do what needs `needed`; admin may do everything."""
    held = frozenset(scopes)
    return needed == ANY_SCOPE or needed in held or ADMIN in held


def check_name(name: str) -> str:
    """`name` if it is a valid token name, else BadRequest."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadRequest(
            f"token name {name!r} must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            parameter="name",
        )
    return name


def check_scopes(scopes: Iterable[object]) -> frozenset[str]:
    """The scopes as a set if every one is a known scope name and there is at least one, else BadRequest.

    The items come from a client's JSON: anything, objects and arrays included, is named, never hashed.
    """
    listed = list(scopes)
    chosen = frozenset(s for s in listed if isinstance(s, str) and s in SCOPES)
    unknown = sorted({repr(s) for s in listed if not (isinstance(s, str) and s in SCOPES)})
    if unknown or not chosen:
        what = f"unknown scope(s) {', '.join(unknown)}" if unknown else "no scope given"
        raise BadRequest(f"{what}; scopes are {', '.join(SCOPES)}", parameter="scopes")
    return chosen


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A stored token: its name, the hash of its secret, its scopes and when it was created (epoch ms)."""

    name: str
    token_hash: bytes
    scopes: frozenset[str]
    created_ms: int

    def public(self) -> dict[str, Any]:
        """What may be shown about the token: never its hash."""
        return {"name": self.name, "scopes": sorted(self.scopes), "created": format_timestamp(self.created_ms)}


class TokenSet:
    """The tokens one process accepts, indexed by hash."""

    def __init__(self, records: Iterable[TokenRecord] = ()) -> None:
        self._by_hash = {record.token_hash: record for record in records}

    def __len__(self) -> int:
        return len(self._by_hash)

    def find(self, token: str) -> TokenRecord | None:
        """The record of `token`, or None if it is unknown or revoked."""
        digest = hash_token(token)
        record = self._by_hash.get(digest)
        # The dict lookup already matched; the constant-time comparison keeps the final check free of timing.
        if record is None or not hmac.compare_digest(record.token_hash, digest):
            return None
        return record


class TokenStore(Protocol):
    """Where tokens live, shared by every instance of the service."""

    async def tokens(self) -> list[TokenRecord]:
        """Every token, read now."""
        ...

    async def add(self, record: TokenRecord) -> bool:
        """Store `record` unless a token of that name exists; whether it was stored."""
        ...

    async def revoke(self, name: str) -> bool:
        """Delete the token named `name`; whether there was one."""
        ...


async def issue(store: TokenStore, name: str, scopes: Iterable[str]) -> tuple[str, TokenRecord]:
    """Create and store a new token; its secret is returned here and never again. Conflict if the name is taken."""
    token = new_token()
    record = TokenRecord(
        name=check_name(name),
        token_hash=hash_token(token),
        scopes=check_scopes(scopes),
        created_ms=int(time.time() * 1000),
    )
    if not await store.add(record):
        raise Conflict(
            f"a token named {name!r} exists already; revoke it first or choose another name", parameter="name"
        )
    return token, record


class TokenCache:
    """A TokenStore's tokens held in memory and re-read every `interval_s`, so every instance converges.

    While the store cannot be read the last set stays in use, but only for `stale_after_s`: after that every
    lookup raises StoreUnavailable (503), so a revocation is never ignored for longer than that.
    """

    def __init__(self, store: TokenStore, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._interval_s = interval_s
        self._clock = clock
        self.stale_after_s = max(30.0, 10 * interval_s)
        self._set = TokenSet()
        self._loaded_at: float | None = None
        self._reads_started = 0
        self._newest_applied = 0

    def __len__(self) -> int:
        return len(self._set)

    async def refresh(self) -> None:
        """Read every token now; a read that started before the one last applied is dropped."""
        self._reads_started += 1
        read, started_at = self._reads_started, self._clock()
        records = await self._store.tokens()
        if read > self._newest_applied:
            self._newest_applied = read
            self._set = TokenSet(records)
            self._loaded_at = started_at

    async def keep_fresh(self) -> None:
        """Refresh every interval until cancelled, logging when reading starts and stops failing."""
        failing = False
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.refresh()
            except ServiceError as error:
                if not failing:
                    log.warning(
                        "cannot re-read API tokens (keeping the last set for at most %.0f s): %s",
                        self.stale_after_s,
                        error.detail,
                    )
                failing = True
            except Exception:  # a bug of ours: logged, and the refreshing goes on rather than dying silently
                log.exception("re-reading API tokens failed unexpectedly")
                failing = True
            else:
                if failing:
                    log.info("API tokens re-read again (%d tokens)", len(self._set))
                failing = False

    def find(self, token: str) -> TokenRecord | None:
        """The record of `token`, None if unknown or revoked; StoreUnavailable if the set is too old to trust."""
        if self._loaded_at is None or self._clock() - self._loaded_at > self.stale_after_s:
            raise StoreUnavailable("API tokens could not be read recently enough to check this token")
        return self._set.find(token)

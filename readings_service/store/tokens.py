"""The Cassandra adapter of TokenStore: the api_tokens table, read and written without blocking the loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.query import PreparedStatement

from readings_service.config import CassandraSettings, Settings
from readings_service.core.tokens import TokenRecord
from readings_service.errors import LayoutMismatch
from readings_service.store.bridge import execute, pages
from readings_service.store.cassandra import connect


class CassandraTokens:
    """TokenStore on a connected Session (prepares its statements at construction, which blocks).

    Creating and revoking are lightweight transactions, so two instances creating the same name cannot both
    succeed and a revocation reports whether the token existed.
    """

    def __init__(self, session: Session, cassandra: CassandraSettings) -> None:
        self._session = session
        self._timeout = cassandra.request_timeout_s
        ks = cassandra.keyspace
        read_cl = ConsistencyLevel.name_to_value[cassandra.read_consistency]
        write_cl = ConsistencyLevel.name_to_value[cassandra.write_consistency]

        # Asked of the driver's schema metadata: preparing against a missing table logs a server error.
        keyspace = session.cluster.metadata.keyspaces.get(ks)
        if keyspace is None or "api_tokens" not in keyspace.tables:
            raise LayoutMismatch(f"keyspace {ks} has no api_tokens table: run `readings-service schema apply`")

        def prepare(cql: str, consistency: int) -> PreparedStatement:
            statement = session.prepare(cql)
            statement.consistency_level = consistency
            return statement

        self._select = prepare(
            f"SELECT name, token_hash, scopes, toUnixTimestamp(created) FROM {ks}.api_tokens", read_cl
        )
        self._select.is_idempotent = True
        self._insert = prepare(
            f"INSERT INTO {ks}.api_tokens (name, token_hash, scopes, created) VALUES (?, ?, ?, ?) IF NOT EXISTS",
            write_cl,
        )
        self._delete = prepare(f"DELETE FROM {ks}.api_tokens WHERE name = ? IF EXISTS", write_cl)

    async def tokens(self) -> list[TokenRecord]:
        records: list[TokenRecord] = []
        async with contextlib.aclosing(pages(self._session, self._select, None, self._timeout)) as rows:
            async for page in rows:
                records.extend(_record(row) for row in page)
        return records

    async def add(self, record: TokenRecord) -> bool:
        params = (record.name, record.token_hash, set(record.scopes), record.created_ms)
        rows = await execute(self._session, self._insert, params, self._timeout)
        return bool(rows[0][0])  # the [applied] column of a lightweight transaction

    async def revoke(self, name: str) -> bool:
        rows = await execute(self._session, self._delete, (name,), self._timeout)
        return bool(rows[0][0])


def _record(row: Any) -> TokenRecord:
    name, token_hash, scopes, created_ms = row
    return TokenRecord(name=name, token_hash=bytes(token_hash), scopes=frozenset(scopes or ()), created_ms=created_ms)


@contextlib.asynccontextmanager
async def open_tokens(settings: Settings) -> AsyncIterator[CassandraTokens]:
    """Connect (its own driver cluster) and prepare off the loop; shut down on exit."""
    cluster, session = await asyncio.to_thread(connect, settings.cassandra)
    try:
        yield await asyncio.to_thread(CassandraTokens, session, settings.cassandra)
    finally:
        await asyncio.to_thread(cluster.shutdown)

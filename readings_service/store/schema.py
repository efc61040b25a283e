"""Create the keyspace and tables from schema/*.cql and guard the recorded data layout."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar

from readings_service.config import CassandraSettings
from readings_service.errors import LayoutMismatch

# The CQL ships inside the package, so an installed wheel finds it wherever it is installed.
SCHEMA_FILES = resources.files("readings_service.store") / "cql"
BUCKETS_KEY = "buckets"
# A cluster that has just started may not yet see all its replicas: layout reads and writes (Paxos, so they need
# a quorum) are retried for this long while replicas are unavailable.
UNAVAILABLE_RETRY_S = 60.0
T = TypeVar("T")


def replication_map(settings: CassandraSettings) -> str:
    """The CQL replication map for the configured strategy."""
    if settings.replication_class == "NetworkTopologyStrategy":
        return (f"{{'class': 'NetworkTopologyStrategy', "
                f"'{settings.local_dc}': {settings.replication_factor}}}")
    return f"{{'class': 'SimpleStrategy', 'replication_factor': {settings.replication_factor}}}"


def schema_statements(settings: CassandraSettings, source: str | None = None) -> list[str]:
    """The schema's CQL statements with keyspace and replication filled in, in file order."""
    text = source if source is not None else _schema_text()
    text = re.sub(r"--[^\n]*", "", text)
    text = text.replace("{keyspace}", settings.keyspace).replace("{replication}", replication_map(settings))
    return [statement.strip() for statement in text.split(";") if statement.strip()]


def _schema_text() -> str:
    files = sorted((f for f in SCHEMA_FILES.iterdir() if f.name.endswith(".cql")), key=lambda f: f.name)
    if not files:
        raise FileNotFoundError(f"no schema files (*.cql) in {SCHEMA_FILES}")
    return "\n".join(file.read_text() for file in files)


def apply_schema(session: Any, settings: CassandraSettings, buckets: int, timeout_s: float = 60.0) -> None:
    """Create keyspace and tables (idempotent) and record the bucket count; blocking, for the CLI."""
    for statement in schema_statements(settings):
        result = session.execute(statement, timeout=timeout_s)
        _wait_for_agreement(session, result, timeout_s)
    recorded = recorded_buckets(session, settings.keyspace)
    if recorded is not None and recorded != buckets:
        raise LayoutMismatch(
            f"keyspace {settings.keyspace} was laid out with {recorded} buckets but the configuration says "
            f"{buckets}; changing it would send reads to the wrong partitions (migrate the data instead)"
        )
    if recorded is None:
        # IF NOT EXISTS makes two concurrent first applies agree on one value.
        insert = f"INSERT INTO {settings.keyspace}.layout (name, value) VALUES (%s, %s) IF NOT EXISTS"
        _while_unavailable(lambda: session.execute(insert, (BUCKETS_KEY, str(buckets)), timeout=timeout_s))
        check_layout(session, settings.keyspace, buckets)


def _wait_for_agreement(session: Any, result: Any, timeout_s: float) -> None:
    """Return once every live node has the schema the statement produced, so the next statement finds it."""
    if result.response_future.is_schema_agreed:
        return
    if not session.cluster.control_connection.wait_for_schema_agreement(wait_time=timeout_s):
        raise RuntimeError(f"the cluster's nodes did not agree on the schema within {timeout_s:.0f} s")


def _while_unavailable(call: Callable[[], T]) -> T:
    """Run `call`, retrying while the cluster reports too few live replicas (only just after a start)."""
    from cassandra import Unavailable
    from cassandra.cluster import NoHostAvailable

    deadline = time.monotonic() + UNAVAILABLE_RETRY_S
    while True:
        try:
            return call()
        except (Unavailable, NoHostAvailable):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def recorded_buckets(session: Any, keyspace: str) -> int | None:
    """The bucket count recorded in the keyspace, or None if none is (a linearizable read of the Paxos write)."""
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    select = SimpleStatement(f"SELECT value FROM {keyspace}.layout WHERE name = %s",
                             consistency_level=ConsistencyLevel.SERIAL)
    rows = list(_while_unavailable(lambda: session.execute(select, (BUCKETS_KEY,))))
    return int(rows[0][0]) if rows else None


def check_layout(session: Any, keyspace: str, buckets: int) -> None:
    """Raise LayoutMismatch unless the keyspace exists with `buckets` recorded."""
    from cassandra import InvalidRequest

    try:
        recorded = recorded_buckets(session, keyspace)
    except InvalidRequest:
        # The query is fixed and valid, so the server rejects it only for a missing keyspace or layout table.
        raise LayoutMismatch(
            f"keyspace {keyspace} has no schema yet: run `readings-service schema apply` first"
        ) from None
    if recorded is None:
        raise LayoutMismatch(f"keyspace {keyspace} records no bucket count: run `readings-service schema apply`")
    if recorded != buckets:
        raise LayoutMismatch(
            f"storage.buckets = {buckets} but keyspace {keyspace} was laid out with {recorded} buckets; "
            "serving would read and write the wrong partitions"
        )

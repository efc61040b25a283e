"""Create the keyspace and tables from schema/*.cql, bring existing tables to the configured options, and guard
the recorded data layout."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
SECONDS_PER_DAY = 86_400
# What the readings tables are compacted with: one-day windows, as their partitions are days.
TIME_WINDOW_COMPACTION = {
    "class": "TimeWindowCompactionStrategy",
    "compaction_window_unit": "DAYS",
    "compaction_window_size": "1",
}


@dataclass(frozen=True, slots=True)
class TableOptions:
    """The options `schema apply` keeps a table at; compaction None leaves the table's own."""

    compaction: Mapping[str, str] | None
    default_time_to_live: int


def table_options(retention_days: int) -> dict[str, TableOptions]:
    """The options of every table that has configured ones, by table name (as the CQL files create them)."""
    ttl_s = retention_days * SECONDS_PER_DAY
    return {
        "readings": TableOptions(TIME_WINDOW_COMPACTION, ttl_s),
        "readings_by_device": TableOptions(TIME_WINDOW_COMPACTION, ttl_s),
        "device_latest_day": TableOptions(None, ttl_s),
    }


def replication_map(settings: CassandraSettings) -> str:
    """The CQL replication map for the configured strategy."""
    if settings.replication_class == "NetworkTopologyStrategy":
        return f"{{'class': 'NetworkTopologyStrategy', '{settings.local_dc}': {settings.replication_factor}}}"
    return f"{{'class': 'SimpleStrategy', 'replication_factor': {settings.replication_factor}}}"


def schema_statements(settings: CassandraSettings, source: str | None = None, retention_days: int = 0) -> list[str]:
    """The schema's CQL statements with keyspace, replication and default TTL filled in, in file order."""
    text = source if source is not None else _schema_text()
    text = re.sub(r"--[^\n]*", "", text)
    text = text.replace("{keyspace}", settings.keyspace).replace("{replication}", replication_map(settings))
    text = text.replace("{default_time_to_live}", str(retention_days * SECONDS_PER_DAY))
    return [statement.strip() for statement in text.split(";") if statement.strip()]


def _schema_text() -> str:
    files = sorted((f for f in SCHEMA_FILES.iterdir() if f.name.endswith(".cql")), key=lambda f: f.name)
    if not files:
        raise FileNotFoundError(f"no schema files (*.cql) in {SCHEMA_FILES}")
    return "\n".join(file.read_text() for file in files)


def apply_schema(
    session: Any, settings: CassandraSettings, buckets: int, timeout_s: float = 60.0, *, retention_days: int = 0
) -> list[str]:
    """Create keyspace and tables, bring existing tables to the configured options and record the bucket count;
    blocking, for the CLI. Idempotent: returns what it changed in tables that existed, nothing the second time."""
    for statement in schema_statements(settings, retention_days=retention_days):
        result = session.execute(statement, timeout=timeout_s)
        _wait_for_agreement(session, result, timeout_s)
    changes = _align_tables(session, settings.keyspace, table_options(retention_days), timeout_s)
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
    return changes


def _align_tables(session: Any, keyspace: str, wanted: Mapping[str, TableOptions], timeout_s: float) -> list[str]:
    """ALTER each table whose compaction or default_time_to_live differs from `wanted` (read from system_schema);
    one line per option changed."""
    rows = session.execute(
        "SELECT table_name, compaction, default_time_to_live FROM system_schema.tables WHERE keyspace_name = %s",
        (keyspace,),
        timeout=timeout_s,
    )
    current = {row[0]: (dict(row[1] or {}), row[2] or 0) for row in rows}
    changes: list[str] = []
    for table, options in wanted.items():
        compaction, ttl_s = current[table]
        clauses: list[str] = []
        if options.compaction is not None and not _same_compaction(compaction, options.compaction):
            clauses.append(f"compaction = {_cql_map(options.compaction)}")
            changes.append(
                f"{table}: compaction {_describe_compaction(compaction)} -> {_describe_compaction(options.compaction)}"
            )
        if ttl_s != options.default_time_to_live:
            clauses.append(f"default_time_to_live = {options.default_time_to_live}")
            changes.append(f"{table}: default_time_to_live {ttl_s} -> {options.default_time_to_live} s")
        if clauses:
            result = session.execute(f"ALTER TABLE {keyspace}.{table} WITH {' AND '.join(clauses)}", timeout=timeout_s)
            _wait_for_agreement(session, result, timeout_s)
    return changes


def _same_compaction(current: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """Whether the table's compaction (system_schema's full class name, every option) has the wanted class and
    options; options not wanted may be anything."""
    return _short_class(current) == wanted["class"] and all(
        current.get(key) == value for key, value in wanted.items() if key != "class"
    )


def _short_class(compaction: Mapping[str, str]) -> str:
    return compaction.get("class", "").rsplit(".", 1)[-1]


def _describe_compaction(compaction: Mapping[str, str]) -> str:
    options = ", ".join(
        f"{key}={value}"
        for key, value in sorted(compaction.items())
        if key in ("compaction_window_unit", "compaction_window_size")
    )
    return f"{_short_class(compaction)}({options})" if options else _short_class(compaction)


def _cql_map(values: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"'{key}': '{value}'" for key, value in values.items()) + "}"


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

    select = SimpleStatement(
        f"SELECT value FROM {keyspace}.layout WHERE name = %s", consistency_level=ConsistencyLevel.SERIAL
    )
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

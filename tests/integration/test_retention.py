"""Retention against the real Cassandra: per-reading TTLs in every table, too-old readings refused, and
`schema apply` bringing existing tables to the configured compaction and default TTL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from readings_service.api.app import create_app
from readings_service.config import Settings
from readings_service.core.model import Reading
from readings_service.core.timestamps import MS_PER_DAY
from readings_service.store.cassandra import CassandraStore
from readings_service.store.schema import apply_schema
from tests.conftest import fresh_keyspace, opener_of, run_keyspace, settings_for
from tests.integration.test_foundation import run_cli

KEYSPACE = run_keyspace("readings_test_retention")
RETENTION_DAYS = 2
DEVICE = uuid.UUID("0191b2f4-65a3-7c3e-8a1b-2f6c1f0e9d42")
OTHER = uuid.UUID("7d444840-9dc0-11d1-b245-5ffdce74fad2")
# The test's clock and the write's differ by the time between them; TTLs are whole seconds.
TOLERANCE_S = 30
TABLES = ("readings", "readings_by_device", "device_latest_day")


def settings(retention_days: int) -> Settings:
    return settings_for(KEYSPACE, storage={"retention_days": retention_days})


def table_settings(session: Any) -> dict[str, tuple[str, dict[str, str], int]]:
    """(compaction class without its package, compaction options, default_time_to_live) of every table."""
    rows = session.execute(
        "SELECT table_name, compaction, default_time_to_live FROM system_schema.tables WHERE keyspace_name = %s",
        (KEYSPACE,),
    )
    return {row[0]: (row[1]["class"].rsplit(".", 1)[-1], dict(row[1]), row[2]) for row in rows}


def ttls(session: Any, table: str, column: str) -> list[int]:
    return sorted(row[0] for row in session.execute(f"SELECT TTL({column}) FROM {KEYSPACE}.{table}"))


@pytest.fixture
def retained(cassandra_session: Any) -> Settings:
    """A fresh keyspace applied with a retention of RETENTION_DAYS."""
    configured = settings(RETENTION_DAYS)
    cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}", timeout=120)
    apply_schema(cassandra_session, configured.cassandra, configured.storage.buckets, retention_days=RETENTION_DAYS)
    return configured


@pytest.fixture
def retaining_store(cassandra_session: Any, retained: Settings) -> CassandraStore:
    return CassandraStore(
        cassandra_session, retained.cassandra, retained.ingest, retained.storage.buckets, RETENTION_DAYS
    )


class TestSchemaApply:
    def test_new_tables_use_day_windows(self, cassandra_session: Any) -> None:
        """A new keyspace gets time-window compaction with one-day windows on both readings tables, and no
        default TTL without a retention; applying it again changes nothing."""
        fresh_keyspace(cassandra_session, settings(0))
        found = table_settings(cassandra_session)
        for table in ("readings", "readings_by_device"):
            kind, options, default_ttl = found[table]
            assert ("TimeWindowCompactionStrategy", "DAYS", "1", 0) == (
                kind,
                options["compaction_window_unit"],
                options["compaction_window_size"],
                default_ttl,
            )
        assert [] == apply_schema(cassandra_session, settings(0).cassandra, 16)

    def test_retention_change_is_applied_once(self, cassandra_session: Any) -> None:
        """A changed retention_days sets each table's default TTL and says so; the next apply changes nothing."""
        fresh_keyspace(cassandra_session, settings(0))
        changes = apply_schema(cassandra_session, settings(30).cassandra, 16, retention_days=30)
        assert [f"{table}: default_time_to_live 0 -> 2592000 s" for table in TABLES] == changes
        assert dict.fromkeys(TABLES, 2592000) == {
            table: found[2] for table, found in table_settings(cassandra_session).items() if table in TABLES
        }
        assert [] == apply_schema(cassandra_session, settings(30).cassandra, 16, retention_days=30)

    def test_existing_tables_get_day_windows(self, cassandra_session: Any) -> None:
        """Tables made before time-window compaction (size-tiered) are altered, keeping their rows."""
        fresh_keyspace(cassandra_session, settings(0))
        for table in ("readings", "readings_by_device"):
            cassandra_session.execute(
                f"ALTER TABLE {KEYSPACE}.{table} WITH compaction = {{'class': 'SizeTieredCompactionStrategy'}}"
            )
        cassandra_session.execute(
            f"INSERT INTO {KEYSPACE}.readings (day, bucket, ts, device_id, temperature, pressure) "
            "VALUES ('2026-01-01', 1, 0, uuid(), 1.0, 2.0)"
        )
        changes = apply_schema(cassandra_session, settings(0).cassandra, 16)
        assert [
            f"{table}: compaction SizeTieredCompactionStrategy -> "
            "TimeWindowCompactionStrategy(compaction_window_size=1, compaction_window_unit=DAYS)"
            for table in ("readings", "readings_by_device")
        ] == changes
        assert "TimeWindowCompactionStrategy" == table_settings(cassandra_session)["readings"][0]
        assert 1 == len(list(cassandra_session.execute(f"SELECT * FROM {KEYSPACE}.readings")))
        assert [] == apply_schema(cassandra_session, settings(0).cassandra, 16)

    def test_cli_says_what_it_changed(self, cassandra_session: Any) -> None:
        """`schema apply` prints each change, then that there is none when run again."""
        fresh_keyspace(cassandra_session, settings(0))
        env = {"READINGS_CASSANDRA_KEYSPACE": KEYSPACE, "READINGS_STORAGE_RETENTION_DAYS": "7"}
        first = run_cli("schema", "apply", env=env)
        assert 0 == first.returncode, first.stderr
        assert "readings are kept 7 days after their timestamp" in first.stdout
        assert "changed readings: default_time_to_live 0 -> 604800 s" in first.stdout
        second = run_cli("schema", "apply", env=env)
        assert 0 == second.returncode, second.stderr
        assert "changed readings" not in second.stdout
        assert "no table options changed" in second.stdout


class TestTtl:
    async def test_every_table_expires_by_the_readings_own_time(
        self, cassandra_session: Any, retaining_store: CassandraStore
    ) -> None:
        """Each row's TTL is what remains of retention_days after the reading's timestamp, not after the write;
        the device's latest-day record lives until the last possible reading of its day expires."""
        now_ms = int(time.time() * 1000)
        ages_ms = [MS_PER_DAY + 3_600_000, 3_600_000, 0]  # a day and an hour, an hour, now
        await retaining_store.write([Reading(DEVICE, now_ms - age, 20.0, 1000.0) for age in ages_ms])
        expected = sorted((RETENTION_DAYS * MS_PER_DAY - age) // 1000 for age in ages_ms)
        for table in ("readings", "readings_by_device"):
            found = ttls(cassandra_session, table, "temperature")
            assert len(expected) == len(found), table
            for want, got in zip(expected, found, strict=True):
                assert want - TOLERANCE_S <= got <= want + 1, (table, want, got)
        newest_day_end_ms = (now_ms // MS_PER_DAY + 1) * MS_PER_DAY
        want = (newest_day_end_ms + RETENTION_DAYS * MS_PER_DAY - now_ms) // 1000
        [latest_ttl] = ttls(cassandra_session, "device_latest_day", "day")
        assert want - TOLERANCE_S <= latest_ttl <= want + 1

    async def test_no_retention_no_ttl(
        self, cassandra_session: Any, shared_keyspace: Settings, store: CassandraStore
    ) -> None:
        """With retention_days = 0 (the default) nothing expires."""
        await store.write([Reading(OTHER, int(time.time() * 1000), 20.0, 1000.0)])
        keyspace = shared_keyspace.cassandra.keyspace
        rows = cassandra_session.execute(f"SELECT TTL(temperature) FROM {keyspace}.readings")
        assert [None] == [row[0] for row in rows]


class TestIngest:
    @pytest.fixture
    async def client(
        self, aiohttp_client: Callable[..., Any], retained: Settings, retaining_store: CassandraStore
    ) -> Any:
        return await aiohttp_client(create_app(retained, opener_of(retaining_store)))

    async def test_too_old_is_refused_and_nothing_written(self, client: Any, cassandra_session: Any) -> None:
        """A reading older than retention_days is a per-item problem: 422 and nothing stored."""
        now_ms = int(time.time() * 1000)
        body = [
            {"device_id": str(DEVICE), "ts": now_ms, "temperature": 1.0, "pressure": 2.0},
            {
                "device_id": str(OTHER),
                "ts": now_ms - RETENTION_DAYS * MS_PER_DAY - 60_000,
                "temperature": 1.0,
                "pressure": 2.0,
            },
        ]
        response = await client.post("/readings", json=body)
        assert 422 == response.status
        [problem] = (await response.json())["problems"]
        assert (1, "ts") == (problem["index"], problem["field"])
        assert "more than storage.retention_days (2) days old" in problem["reason"]
        for table in TABLES:
            assert [] == list(cassandra_session.execute(f"SELECT * FROM {KEYSPACE}.{table}"))

        partial = await client.post("/readings?partial=true", json=body)
        assert 207 == partial.status
        assert (1, 1) == ((answer := await partial.json())["accepted"], answer["rejected"])
        [ttl] = ttls(cassandra_session, "readings", "temperature")
        assert RETENTION_DAYS * 86_400 - TOLERANCE_S <= ttl <= RETENTION_DAYS * 86_400

"""Schema apply, the bucket-count guard and the CLI's start-up errors, against the real Cassandra."""

from __future__ import annotations

from typing import Any

import pytest

from readings_service.errors import LayoutMismatch
from readings_service.store.schema import apply_schema, check_layout, recorded_buckets
from tests.conftest import fresh_keyspace, run_cli, run_keyspace, settings_for

KEYSPACE = run_keyspace("readings_test_schema")
EMPTY_KEYSPACE = run_keyspace("readings_test_empty")
CLI_KEYSPACE = run_keyspace("readings_test_cli")


def tables_of(session: Any, keyspace: str) -> set[str]:
    rows = session.execute("SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,))
    return {row[0] for row in rows}


class TestSchemaApply:
    def test_creates_tables_and_records_buckets(self, cassandra_session: Any) -> None:
        """apply creates every table and records the bucket count."""
        settings = settings_for(KEYSPACE, storage={"buckets": 8})
        fresh_keyspace(cassandra_session, settings)
        assert {"readings", "readings_by_device", "device_latest_day", "layout", "api_tokens"} == tables_of(
            cassandra_session, KEYSPACE
        )
        assert 8 == recorded_buckets(cassandra_session, KEYSPACE)

    def test_reapply_is_harmless(self, cassandra_session: Any) -> None:
        """A second apply keeps existing rows and the recorded layout."""
        settings = settings_for(KEYSPACE, storage={"buckets": 8})
        fresh_keyspace(cassandra_session, settings)
        cassandra_session.execute(
            f"INSERT INTO {KEYSPACE}.readings (day, bucket, ts, device_id, temperature, pressure) "
            "VALUES ('2026-01-01', 1, 0, uuid(), 1.0, 2.0)"
        )
        apply_schema(cassandra_session, settings.cassandra, 8)
        assert 1 == len(list(cassandra_session.execute(f"SELECT * FROM {KEYSPACE}.readings")))
        assert 8 == recorded_buckets(cassandra_session, KEYSPACE)

    def test_table_has_exact_primary_key(self, cassandra_session: Any) -> None:
        """readings is partitioned by (day, bucket) and clustered by ts, device_id ascending."""
        fresh_keyspace(cassandra_session, settings_for(KEYSPACE))
        rows = cassandra_session.execute(
            "SELECT column_name, kind, position, clustering_order FROM system_schema.columns "
            "WHERE keyspace_name = %s AND table_name = 'readings'",
            (KEYSPACE,),
        )
        keys = sorted((r[1], r[2], r[0], r[3]) for r in rows if r[1] != "regular")
        assert [
            ("clustering", 0, "ts", "asc"),
            ("clustering", 1, "device_id", "asc"),
            ("partition_key", 0, "day", "none"),
            ("partition_key", 1, "bucket", "none"),
        ] == keys


class TestBucketGuard:
    def test_apply_refuses_a_different_count(self, cassandra_session: Any) -> None:
        """Re-applying with another bucket count fails and keeps the recorded one."""
        fresh_keyspace(cassandra_session, settings_for(KEYSPACE, storage={"buckets": 8}))
        with pytest.raises(LayoutMismatch, match="laid out with 8 buckets"):
            apply_schema(cassandra_session, settings_for(KEYSPACE).cassandra, 16)
        assert 8 == recorded_buckets(cassandra_session, KEYSPACE)

    def test_check_refuses_a_different_count(self, cassandra_session: Any) -> None:
        """The start-up check names both counts."""
        fresh_keyspace(cassandra_session, settings_for(KEYSPACE, storage={"buckets": 8}))
        with pytest.raises(LayoutMismatch, match=r"storage\.buckets = 16 but .* laid out with 8 buckets"):
            check_layout(cassandra_session, KEYSPACE, 16)

    @pytest.mark.parametrize("keyspace_exists", [False, True])
    def test_check_names_a_missing_schema(self, cassandra_session: Any, keyspace_exists: bool) -> None:
        """No keyspace, or a keyspace without the layout table, is a LayoutMismatch that says to apply."""
        cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {EMPTY_KEYSPACE}", timeout=120)
        if keyspace_exists:
            cassandra_session.execute(
                f"CREATE KEYSPACE {EMPTY_KEYSPACE} WITH replication = "
                "{'class': 'SimpleStrategy', 'replication_factor': 1}",
                timeout=120,
            )
        with pytest.raises(LayoutMismatch, match=f"keyspace {EMPTY_KEYSPACE} has no schema yet"):
            check_layout(cassandra_session, EMPTY_KEYSPACE, 16)

    def test_serve_refuses_to_start(self, cassandra_session: Any) -> None:
        """`serve` exits non-zero with a clear message, no traceback, when the counts differ."""
        fresh_keyspace(cassandra_session, settings_for(KEYSPACE, storage={"buckets": 8}))
        result = run_cli("serve", env={"READINGS_CASSANDRA_KEYSPACE": KEYSPACE, "READINGS_HTTP_PORT": "0"})
        assert 0 != result.returncode
        assert f"storage.buckets = 16 but keyspace {KEYSPACE} was laid out with 8" in result.stderr
        assert "Traceback" not in result.stderr

    def test_serve_refuses_a_keyspace_without_schema(self, cassandra_session: Any) -> None:
        """`serve` on a keyspace nobody applied says to apply the schema."""
        cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {EMPTY_KEYSPACE}")
        result = run_cli("serve", env={"READINGS_CASSANDRA_KEYSPACE": EMPTY_KEYSPACE})
        assert 0 != result.returncode
        assert "schema apply" in result.stderr
        assert "Traceback" not in result.stderr


class TestCliSchema:
    def test_apply_via_cli(self, cassandra_session: Any) -> None:
        """`schema apply` creates the configured keyspace and says so."""
        cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {CLI_KEYSPACE}", timeout=120)
        result = run_cli("schema", "apply", env={"READINGS_CASSANDRA_KEYSPACE": CLI_KEYSPACE})
        assert 0 == result.returncode, result.stderr
        assert f"schema applied to keyspace {CLI_KEYSPACE} (16 buckets)" in result.stdout
        assert 16 == recorded_buckets(cassandra_session, CLI_KEYSPACE)

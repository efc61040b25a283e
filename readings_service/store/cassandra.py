"""The Cassandra adapter of ReadingStore: prepared statements, partition-grouped unlogged batches, async paging."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from datetime import date
from typing import Any

from cassandra import ConsistencyLevel, DriverException
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, Session
from cassandra.connection import ProtocolVersionUnsupported
from cassandra.policies import (
    ConstantReconnectionPolicy,
    DCAwareRoundRobinPolicy,
    RetryPolicy,
    TokenAwarePolicy,
)
from cassandra.protocol import ProtocolException
from cassandra.query import BatchStatement, BatchType, BoundStatement, PreparedStatement, tuple_factory

from readings_service.config import CassandraSettings, IngestSettings, Settings
from readings_service.core.bucketing import bucket_of
from readings_service.core.model import Reading
from readings_service.core.ordering import uuid_order_key, uuid_order_key_from_bytes
from readings_service.core.store import After, Pages, StoredRow
from readings_service.core.timestamps import MS_PER_DAY
from readings_service.errors import StoreUnavailable
from readings_service.metrics import PARTITION_ROWS, relative_day
from readings_service.query_path import wants_raw_pages
from readings_service.store.bridge import execute, gather_bounded, pages, translate
from readings_service.store.raw_pages import DEVICE_COLUMNS, RANGE_COLUMNS, check_columns, open_raw_session
from readings_service.store.schema import check_layout

log = logging.getLogger("readings_service")

# The `date` type travels as an unsigned day count centred on the epoch.
DATE_EPOCH_OFFSET = 2**31
_EPOCH_DATE = datetime.date(1970, 1, 1)
LATEST_CACHE_DEVICES = 100_000
DEVICE_CACHE_SIZE = 200_000
# Rows in the first page of each partition scan: a range query's first byte waits for the first page of every
# bucket, so it stays small; later pages use the configured fetch size.
FIRST_PAGE_ROWS = 100
# Cassandra's largest TTL, 20 years in seconds.
MAX_TTL_S = 630_720_000


class RetryIdempotent(RetryPolicy):  # type: ignore[misc]
    """Retry timeouts and unavailability up to N times: every statement here is an idempotent upsert."""

    def __init__(self, max_retries: int) -> None:
        self.max_retries = max_retries

    def _again(self, retry_num: int, consistency: Any, next_host: bool) -> tuple[Any, Any]:
        if retry_num >= self.max_retries:
            return self.RETHROW, None
        return (self.RETRY_NEXT_HOST if next_host else self.RETRY), consistency

    def on_read_timeout(
        self,
        query: Any,
        consistency: Any,
        required_responses: int,
        received_responses: int,
        data_retrieved: bool,
        retry_num: int,
    ) -> tuple[Any, Any]:
        return self._again(retry_num, consistency, next_host=False)

    def on_write_timeout(
        self,
        query: Any,
        consistency: Any,
        write_type: Any,
        required_responses: int,
        received_responses: int,
        retry_num: int,
    ) -> tuple[Any, Any]:
        return self._again(retry_num, consistency, next_host=False)

    def on_unavailable(
        self, query: Any, consistency: Any, required_replicas: int, alive_replicas: int, retry_num: int
    ) -> tuple[Any, Any]:
        return self._again(retry_num, consistency, next_host=True)

    def on_request_error(self, query: Any, consistency: Any, error: Exception, retry_num: int) -> tuple[Any, Any]:
        return self._again(retry_num, consistency, next_host=True)


def connect(settings: CassandraSettings) -> tuple[Cluster, Session]:
    """Open a cluster connection (blocking: call it at start-up, off the event loop).

    The protocol version is set explicitly, since the driver's own negotiation starts at its private DSE
    versions and warns at each step down. With version 5 configured, a cluster that refuses it is used with
    version 4, which is logged.
    """
    try:
        return _connect(settings, settings.protocol_version)
    except StoreUnavailable as error:
        if settings.protocol_version < 5 or not refused_protocol(error.__cause__):
            raise
    log.warning("Cassandra does not support protocol v%d; using v4", settings.protocol_version)
    return _connect(settings, 4)


def refused_protocol(error: BaseException | None) -> bool:
    """Whether connecting failed because every node refused the protocol version (and answered otherwise)."""
    if not isinstance(error, NoHostAvailable) or not error.errors:
        return False
    return all(
        isinstance(cause, ProtocolVersionUnsupported | ProtocolException)
        or (isinstance(cause, DriverException) and "protocol_version" in str(cause))
        for cause in error.errors.values()
    )


def _connect(settings: CassandraSettings, protocol_version: int) -> tuple[Cluster, Session]:
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=settings.local_dc)),
        retry_policy=RetryIdempotent(settings.max_retries),
        request_timeout=settings.request_timeout_s,
        row_factory=tuple_factory,
    )
    cluster = Cluster(
        contact_points=list(settings.contact_points),
        port=settings.port,
        protocol_version=protocol_version,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=settings.connect_timeout_s,
        # A node that is back is used again within the interval, not after an exponential back-off (the
        # default waited ~14 s after a restart). Statements are re-prepared on it when it comes up.
        reconnection_policy=ConstantReconnectionPolicy(settings.reconnect_interval_s, max_attempts=None),
        max_schema_agreement_wait=30,
    )
    # By default the driver ignores a node's "down" signal while any session still counts an open connection
    # to it, which delayed reconnection by seconds after a kill -9; act on every down event instead.
    cluster._discount_down_events = False
    try:
        session = cluster.connect()
    except Exception as error:
        cluster.shutdown()
        raise translate(error) from error
    return cluster, session


def _day_number(ts_ms: int) -> int:
    return ts_ms // MS_PER_DAY


def _wire_date(day: date) -> int:
    return day.toordinal() - date(1970, 1, 1).toordinal() + DATE_EPOCH_OFFSET


class CassandraStore:
    """ReadingStore on a connected Session (prepares its statements at construction, which blocks)."""

    def __init__(
        self,
        session: Session,
        cassandra: CassandraSettings,
        ingest: IngestSettings,
        buckets: int,
        retention_days: int = 0,
    ) -> None:
        self._session = session
        self._retention_ms = retention_days * MS_PER_DAY
        self._timeout = cassandra.request_timeout_s
        self._fetch_size = cassandra.fetch_size
        self._batch_rows = ingest.batch_rows
        self._in_flight = ingest.max_in_flight
        self._buckets = buckets
        self._write_cl = ConsistencyLevel.name_to_value[cassandra.write_consistency]
        self._latest_day: OrderedDict[uuid.UUID, int] = OrderedDict()
        self._devices: dict[bytes, tuple[int, uuid.UUID]] = {}
        ks = cassandra.keyspace
        self._keyspace = ks
        read_cl = ConsistencyLevel.name_to_value[cassandra.read_consistency]

        def prepare(cql: str, consistency: int) -> PreparedStatement:
            statement = session.prepare(cql)
            statement.consistency_level = consistency
            statement.is_idempotent = True
            statement.fetch_size = cassandra.fetch_size
            return statement

        # The device id travels as a blob: building uuid.UUID for every row was the read path's biggest cost,
        # and ids repeat, so each distinct blob is turned into (order key, UUID) once (see _rows).
        columns = "toUnixTimestamp(ts), uuidAsBlob(device_id), temperature, pressure"
        # With a retention every row carries its own TTL, counted from the reading's timestamp (see _ttl_s).
        ttl = " USING TTL ?" if self._retention_ms else ""
        self._insert = prepare(
            f"INSERT INTO {ks}.readings (day, bucket, ts, device_id, temperature, pressure) "
            f"VALUES (?, ?, ?, ?, ?, ?){ttl}",
            self._write_cl,
        )
        self._insert_by_device = prepare(
            f"INSERT INTO {ks}.readings_by_device (device_id, day, ts, temperature, pressure) "
            f"VALUES (?, ?, ?, ?, ?){ttl}",
            self._write_cl,
        )
        latest_ttl = " AND TTL ?" if self._retention_ms else ""
        self._insert_latest_day = prepare(
            f"INSERT INTO {ks}.device_latest_day (device_id, day) VALUES (?, ?) USING TIMESTAMP ?{latest_ttl}",
            self._write_cl,
        )
        self._scan = prepare(
            f"SELECT {columns} FROM {ks}.readings WHERE day = ? AND bucket = ? AND ts >= ? AND ts < ?", read_cl
        )
        self._scan_after = prepare(
            f"SELECT {columns} FROM {ks}.readings WHERE day = ? AND bucket = ? "
            "AND (ts, device_id) > (?, ?) AND (ts) < (?)",
            read_cl,
        )
        self._scan_device = prepare(
            f"SELECT toUnixTimestamp(ts), temperature, pressure FROM {ks}.readings_by_device "
            "WHERE device_id = ? AND day = ? AND ts >= ? AND ts < ?",
            read_cl,
        )
        self._latest_day_of = prepare(f"SELECT day FROM {ks}.device_latest_day WHERE device_id = ?", read_cl)
        self._newest_of_day = prepare(
            f"SELECT toUnixTimestamp(ts), temperature, pressure FROM {ks}.readings_by_device "
            "WHERE device_id = ? AND day = ? ORDER BY ts DESC LIMIT 1",
            read_cl,
        )
        self._ping = prepare("SELECT release_version FROM system.local", read_cl)

    async def write(self, readings: Sequence[Reading]) -> None:
        """Upsert readings into all tables; a later reading with the same (device_id, ts) wins."""
        # Rows in one batch share a write timestamp, and Cassandra breaks ties by comparing values, so
        # the later duplicate must be the only one sent.
        unique: dict[tuple[uuid.UUID, int], Reading] = {}
        for reading in readings:
            unique[(reading.device_id, reading.ts_ms)] = reading
        by_bucket: dict[tuple[int, int], list[tuple[Any, ...]]] = {}
        by_device: dict[tuple[uuid.UUID, int], list[tuple[Any, ...]]] = {}
        newest_day: dict[uuid.UUID, int] = {}
        buckets = self._buckets
        now_ms = int(time.time() * 1000)
        for (device_id, ts_ms), reading in unique.items():
            day = _day_number(ts_ms)
            wire_day = day + DATE_EPOCH_OFFSET
            bucket = bucket_of(device_id, buckets)
            row: tuple[Any, ...] = (wire_day, bucket, ts_ms, device_id, reading.temperature, reading.pressure)
            device_row: tuple[Any, ...] = (device_id, wire_day, ts_ms, reading.temperature, reading.pressure)
            if self._retention_ms:
                ttl_s = self._ttl_s(ts_ms, now_ms)
                row, device_row = (*row, ttl_s), (*device_row, ttl_s)
            by_bucket.setdefault((day, bucket), []).append(row)
            by_device.setdefault((device_id, day), []).append(device_row)
            if newest_day.get(device_id, -(2**62)) < ts_ms:
                newest_day[device_id] = ts_ms
        calls: list[Callable[[], Any]] = []
        # Rows of a partition with several rows go out as single-partition batches (one mutation each); rows
        # alone in their partition (typical for the per-device table) are grouped by the replicas that own them,
        # so one request carries many without a coordinator hop (the spark connector's "replica_set" grouping).
        loners: list[BoundStatement] = []
        for table, groups in ((self._insert, by_bucket), (self._insert_by_device, by_device)):
            for rows in groups.values():
                if len(rows) == 1:
                    loners.append(table.bind(rows[0]))
                else:
                    calls.extend(self._batches(table, rows))
        latest_written: list[tuple[uuid.UUID, int]] = []
        for device_id, ts_ms in newest_day.items():
            day = _day_number(ts_ms)
            if self._latest_day.get(device_id, -(2**62)) >= day:
                continue  # an acknowledged write already recorded this day or a later one
            latest_written.append((device_id, day))
            latest_row: tuple[Any, ...] = (device_id, day + DATE_EPOCH_OFFSET, ts_ms * 1000)
            if self._retention_ms:
                # The day's record lives as long as the day's last possible reading, which a later reading of
                # the same day (not written here again: see _latest_day) may be.
                latest_row = (*latest_row, self._ttl_s((day + 1) * MS_PER_DAY - 1, now_ms))
            loners.append(self._insert_latest_day.bind(latest_row))
        calls.extend(self._replica_batches(loners))
        await gather_bounded(calls, self._in_flight)
        self._count_partition_rows(by_bucket)
        for device_id, day in latest_written:
            self._remember_latest_day(device_id, day)

    def _ttl_s(self, ts_ms: int, now_ms: int) -> int:
        """Seconds until a reading of `ts_ms` is retention_days old, rounded up; at least 1, as a TTL of 0 would
        mean no expiry (ingest refuses readings already that old, but time passes between checking and writing)."""
        remaining_ms = ts_ms + self._retention_ms - now_ms
        return min(max(-(-remaining_ms // 1000), 1), MAX_TTL_S)

    @staticmethod
    def _count_partition_rows(by_bucket: dict[tuple[int, int], list[tuple[Any, ...]]]) -> None:
        today = datetime.datetime.now(datetime.UTC).date()
        for (day, bucket), rows in by_bucket.items():
            label = relative_day(_EPOCH_DATE + datetime.timedelta(days=day), today)
            PARTITION_ROWS.labels(label, str(bucket)).inc(len(rows))

    def _remember_latest_day(self, device_id: uuid.UUID, day: int) -> None:
        if self._latest_day.get(device_id, -(2**62)) < day:
            self._latest_day[device_id] = day
            self._latest_day.move_to_end(device_id)
            if len(self._latest_day) > LATEST_CACHE_DEVICES:
                self._latest_day.popitem(last=False)

    def _call(self, statement: Any, params: Any) -> Callable[[], Any]:
        return lambda: execute(self._session, statement, params, self._timeout, "write")

    def _batches(self, statement: PreparedStatement, rows: list[tuple[Any, ...]]) -> list[Callable[[], Any]]:
        return self._in_batches([statement.bind(row) for row in rows])

    def _in_batches(self, statements: list[BoundStatement]) -> list[Callable[[], Any]]:
        """Calls sending the statements in unlogged batches of at most batch_rows (a lone one unbatched)."""
        calls: list[Callable[[], Any]] = []
        for start in range(0, len(statements), self._batch_rows):
            part = statements[start : start + self._batch_rows]
            if len(part) == 1:
                calls.append(self._call(part[0], None))
                continue
            batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=self._write_cl)
            batch.is_idempotent = True
            for bound in part:
                batch.add(bound)
            calls.append(self._call(batch, None))
        return calls

    def _replica_batches(self, statements: list[BoundStatement]) -> list[Callable[[], Any]]:
        token_map = self._session.cluster.metadata.token_map
        groups: dict[Any, list[BoundStatement]] = {}
        for bound in statements:
            replicas: Any = None
            if token_map is not None:
                token = token_map.token_class.from_key(bound.routing_key)
                replicas = frozenset(token_map.get_replicas(self._keyspace, token))
            groups.setdefault(replicas, []).append(bound)
        return [call for group in groups.values() for call in self._in_batches(group)]

    def scan_bucket(self, day: date, bucket: int, start_ms: int, end_ms: int, after: After | None) -> Pages:
        wire_day = _wire_date(day)
        if after is None:
            params: tuple[Any, ...] = (wire_day, bucket, start_ms, end_ms)
            return self._rows(pages(self._session, self._scan, params, self._timeout, FIRST_PAGE_ROWS))
        params = (wire_day, bucket, after.ts_ms, after.device_id, end_ms)
        return self._rows(pages(self._session, self._scan_after, params, self._timeout, FIRST_PAGE_ROWS))

    async def _rows(self, raw_pages: AsyncGenerator[list[Any], None]) -> Pages:
        devices = self._devices
        async with contextlib.aclosing(raw_pages):
            async for page in raw_pages:
                if len(devices) > DEVICE_CACHE_SIZE:
                    devices.clear()
                rows: list[StoredRow] = []
                append = rows.append
                for ts, raw, temperature, pressure in page:
                    device = devices.get(raw)
                    if device is None:
                        device = devices[raw] = (uuid_order_key_from_bytes(raw), uuid.UUID(bytes=raw))
                    append((ts, device[0], device[1], temperature, pressure))
                yield rows

    async def scan_device(self, device_id: uuid.UUID, day: date, start_ms: int, end_ms: int) -> Pages:
        params = (device_id, _wire_date(day), start_ms, end_ms)
        order = uuid_order_key(device_id)
        scan_pages = pages(self._session, self._scan_device, params, self._timeout, kind="device_scan")
        async with contextlib.aclosing(scan_pages) as scan:
            async for page in scan:
                yield [(ts, order, device_id, temperature, pressure) for ts, temperature, pressure in page]

    async def latest(self, device_id: uuid.UUID) -> StoredRow | None:
        found = await execute(self._session, self._latest_day_of, (device_id,), self._timeout, "latest")
        if not found or found[0][0] is None:
            return None
        wire_day = found[0][0].days_from_epoch + DATE_EPOCH_OFFSET
        rows = await execute(self._session, self._newest_of_day, (device_id, wire_day), self._timeout, "latest")
        if not rows:
            return None
        ts, temperature, pressure = rows[0]
        return (ts, uuid_order_key(device_id), device_id, temperature, pressure)

    async def ping(self) -> None:
        await execute(self._session, self._ping, None, self._timeout, "ping")


class RawPageCassandraStore(CassandraStore):
    """A CassandraStore whose scans can also hand over their pages unparsed, through a second session.

    That session (`store.raw_pages`) prepares the same scan statements; its results keep the rows body as bytes.
    Prepared here, their result columns are checked: the compiled reader parses exactly these types.
    """

    def __init__(
        self,
        session: Session,
        raw_session: Session,
        cassandra: CassandraSettings,
        ingest: IngestSettings,
        buckets: int,
        retention_days: int = 0,
    ) -> None:
        super().__init__(session, cassandra, ingest, buckets, retention_days)
        self._raw_session = raw_session
        self._raw_scan = self._prepare_raw(self._scan, RANGE_COLUMNS)
        self._raw_scan_after = self._prepare_raw(self._scan_after, RANGE_COLUMNS)
        self._raw_scan_device = self._prepare_raw(self._scan_device, DEVICE_COLUMNS)

    def _prepare_raw(self, like: PreparedStatement, columns: Sequence[str]) -> PreparedStatement:
        statement = self._raw_session.prepare(like.query_string)
        check_columns(statement, columns)
        statement.consistency_level = like.consistency_level
        statement.is_idempotent = True
        statement.fetch_size = like.fetch_size
        return statement

    def scan_bucket_raw(
        self, day: date, bucket: int, start_ms: int, end_ms: int, after: After | None
    ) -> AsyncGenerator[bytes, None]:
        wire_day = _wire_date(day)
        if after is None:
            params: tuple[Any, ...] = (wire_day, bucket, start_ms, end_ms)
            return pages(self._raw_session, self._raw_scan, params, self._timeout, FIRST_PAGE_ROWS)
        params = (wire_day, bucket, after.ts_ms, after.device_id, end_ms)
        return pages(self._raw_session, self._raw_scan_after, params, self._timeout, FIRST_PAGE_ROWS)

    def scan_device_raw(
        self, device_id: uuid.UUID, day: date, start_ms: int, end_ms: int
    ) -> AsyncGenerator[bytes, None]:
        params = (device_id, _wire_date(day), start_ms, end_ms)
        return pages(self._raw_session, self._raw_scan_device, params, self._timeout, kind="device_scan")


def _open(session: Session, settings: Settings) -> CassandraStore:
    """The store on a connected session; with raw pages wanted, a second session for them (blocking)."""
    args = (settings.cassandra, settings.ingest, settings.storage.buckets, settings.storage.retention_days)
    if not wants_raw_pages(settings.query):
        return CassandraStore(session, *args)
    return RawPageCassandraStore(session, open_raw_session(session.cluster), *args)


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[CassandraStore]:
    """Connect, check the recorded layout and prepare statements off the loop; shut down on exit."""
    cluster, session = await asyncio.to_thread(connect, settings.cassandra)
    try:
        await asyncio.to_thread(check_layout, session, settings.cassandra.keyspace, settings.storage.buckets)
        yield await asyncio.to_thread(_open, session, settings)
    finally:
        await asyncio.to_thread(cluster.shutdown)

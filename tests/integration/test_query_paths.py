"""Both range-query paths against the real Cassandra: the same HTTP responses, byte for byte.

One app serves with the compiled path on raw pages (`query.native = on`), the other with the pure-Python path
(`off`), both on the same keyspace; every request goes to both. The data spans several days and all buckets,
shares timestamps, holds every uuid version, nulls, NaN, infinities, extreme floats and dates far from now
(written with CQL: the API refuses non-finite values).
"""

from __future__ import annotations

import dataclasses
import math
import random
import uuid
from typing import Any

import pytest

from readings_service.api.app import create_app
from readings_service.config import Settings
from readings_service.core.bucketing import bucket_of
from readings_service.core.model import Reading
from readings_service.core.timestamps import MAX_TS_MS, MIN_TS_MS, MS_PER_DAY
from readings_service.store.cassandra import DATE_EPOCH_OFFSET, connect
from readings_service.store.raw_pages import open_raw_session
from tests.conftest import make_store, opener_of

pytest.importorskip("readings_native")

BASE = 1_100_000_000_000 // MS_PER_DAY * MS_PER_DAY  # 2004-11-09
ODD_VALUES = [None, math.nan, math.inf, -math.inf, 1e16, -1e16, 1e22, 1e-7, 5e-324, -0.0, 1.7976931348623157e308]


def path_settings(settings: Settings, native: str) -> Settings:
    return dataclasses.replace(settings, query=dataclasses.replace(settings.query, native=native))


def devices(rng: random.Random) -> list[uuid.UUID]:
    """Every version nibble, v1 ids whose time order disagrees with their bytes, random variant bits."""
    pool = [uuid.UUID(int=rng.getrandbits(128) & ~(0xF << 76) | version << 76) for version in range(16)]
    pool += [uuid.uuid1(node=rng.getrandbits(48), clock_seq=rng.getrandbits(14)) for _ in range(4)]
    pool += [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(20)]
    return pool


def write_raw(session: Any, keyspace: str, rows: list[tuple[int, uuid.UUID, float | None, float | None]]) -> None:
    """Rows through CQL, into both tables the range queries read."""
    readings = session.prepare(
        f"INSERT INTO {keyspace}.readings (day, bucket, ts, device_id, temperature, pressure) VALUES (?, ?, ?, ?, ?, ?)"
    )
    by_device = session.prepare(
        f"INSERT INTO {keyspace}.readings_by_device (device_id, day, ts, temperature, pressure) VALUES (?, ?, ?, ?, ?)"
    )
    for ts, device, temperature, pressure in rows:
        day = ts // MS_PER_DAY + DATE_EPOCH_OFFSET
        session.execute(readings, (day, bucket_of(device, 16), ts, device, temperature, pressure))
        session.execute(by_device, (device, day, ts, temperature, pressure))


class TestPathsAgree:
    async def test_http_responses_are_identical(
        self,
        aiohttp_client: Any,
        cassandra_session: Any,
        raw_session: Any,
        shared_keyspace: Settings,
        truncate: Any,
    ) -> None:
        """Ranges over several days, per device, with after and limit: the same status and the same bytes."""
        truncate()
        settings = shared_keyspace  # fetch size 7: many pages per partition
        native_store = make_store(cassandra_session, raw_session, settings, native=True)
        python_store = make_store(cassandra_session, raw_session, settings, native=False)
        rng = random.Random(11)
        pool = devices(rng)
        moments = [BASE + rng.randrange(4 * MS_PER_DAY) for _ in range(60)] + [BASE, BASE + MS_PER_DAY - 1]
        readings = {
            (d, ts): Reading(d, ts, rng.uniform(-40, 60), rng.uniform(950, 1050))
            for d, ts in ((rng.choice(pool), rng.choice(moments)) for _ in range(1500))
        }
        await native_store.write(list(readings.values()))
        odd = [
            (BASE + rng.randrange(4 * MS_PER_DAY), rng.choice(pool), rng.choice(ODD_VALUES), rng.choice(ODD_VALUES))
            for _ in range(60)
        ]
        far = [
            (MIN_TS_MS, pool[0], 1.0, 2.0),
            (MIN_TS_MS + 5, pool[1], None, 3.0),
            (MAX_TS_MS - 1, pool[2], -1.5, 1e16),
            (MAX_TS_MS - MS_PER_DAY, pool[3], 0.1, math.nan),
        ]
        write_raw(cassandra_session, settings.cassandra.keyspace, odd + far)

        native = await aiohttp_client(create_app(path_settings(settings, "on"), opener_of(native_store)))
        python = await aiohttp_client(create_app(path_settings(settings, "off"), opener_of(python_store)))
        assert ("native", "python") == (
            (await (await native.get("/health")).json())["query_path"],
            (await (await python.get("/health")).json())["query_path"],
        )

        some = sorted(readings)[::97]
        queries = [
            f"/readings?start={BASE - 1}&end={BASE + 4 * MS_PER_DAY}",
            f"/readings?start={BASE + 5000}&end={BASE + 2 * MS_PER_DAY + 77}&limit=333",
            f"/readings?start={MIN_TS_MS}&end={MIN_TS_MS + MS_PER_DAY}",
            f"/readings?start={MAX_TS_MS - 3 * MS_PER_DAY}&end={MAX_TS_MS}",
        ]
        queries += [
            f"/readings?start={BASE}&end={BASE + 4 * MS_PER_DAY}&after={ts},{d}&limit={n}"
            for (d, ts), n in zip(some, [1, 7, 50, 400, 5000] * 4, strict=False)
        ]
        queries += [f"/devices/{d}/readings?start={BASE - 1}&end={BASE + 4 * MS_PER_DAY}" for d in pool[:20]]
        queries += [
            f"/devices/{d}/readings?start={BASE}&end={BASE + 4 * MS_PER_DAY}&after={ts},{other}&limit=3"
            for (d, ts), other in zip(some, pool, strict=False)
        ]
        bodies = []
        for query in queries:
            expected, actual = await python.get(query), await native.get(query)
            body = await expected.read()
            assert (expected.status, body) == (actual.status, await actual.read()), query
            bodies.append(body)
        # Raw pages on protocol v4 as well (the same bytes again).
        v4_cluster, v4_session = connect(dataclasses.replace(settings.cassandra, protocol_version=4))
        try:
            v4_store = make_store(v4_session, open_raw_session(v4_cluster), settings, native=True)
            assert 4 == v4_cluster.protocol_version
            v4 = await aiohttp_client(create_app(path_settings(settings, "on"), opener_of(v4_store)))
            for query, body in list(zip(queries, bodies, strict=True))[::3]:
                assert body == await (await v4.get(query)).read(), query
        finally:
            v4_cluster.shutdown()
        # The queries really returned data, odd values included.
        assert sum(body.count(b"\n") for body in bodies) > 3000
        assert b'"temperature":null' in bodies[0]
        assert b"e+16" in bodies[0]
        assert b'"ts":"0001-01-01T00:00:00.000Z"' in bodies[2]
        assert b'"ts":"9999-12-31T23:59:59.998Z"' in bodies[3]


class TestFailFast:
    def test_unexpected_column_types_are_refused_at_prepare(self, raw_session: Any, shared_keyspace: Settings) -> None:
        """A scan whose result columns are not the types the compiled reader parses fails at prepare time."""
        from readings_service.errors import StoreFailure
        from readings_service.store.raw_pages import RANGE_COLUMNS, check_columns

        keyspace = shared_keyspace.cassandra.keyspace
        statement = raw_session.prepare(
            f"SELECT ts, device_id, temperature, pressure FROM {keyspace}.readings WHERE day = ? AND bucket = ?"
        )
        with pytest.raises(StoreFailure, match="timestamp, uuid, double, double"):
            check_columns(statement, RANGE_COLUMNS)

    def test_protocol_version_is_5(self, cassandra_session: Any) -> None:
        """The local node speaks protocol v5, and the service uses it by default."""
        assert 5 == cassandra_session.cluster.protocol_version

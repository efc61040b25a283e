"""kill -9 of one node of a 3-node cluster (RF=3, QUORUM) during ingest and range queries: nothing fails."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.faults.harness import (
    FAULT_DAY_MS,
    MS_PER_DAY,
    LocalCluster,
    ReadingSource,
    Service,
    Tally,
    driver_session,
    post_until,
    stored,
)

BASE = 21  # 127.0.0.21-23: never the node the other tests use


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(3, BASE, tmp_path_factory.mktemp("cluster")).running() as running:
        yield running


async def read_ranges(url: str, outcomes: Counter[str], stop: asyncio.Event) -> None:
    """Read the fault day's range again and again; count complete and failed streams."""
    params = {"start": str(FAULT_DAY_MS), "end": str(FAULT_DAY_MS + MS_PER_DAY)}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        while not stop.is_set():
            try:
                async with http.get(url + "/readings", params=params) as response:
                    body = await response.read()
                    complete = response.status == 200 and b'"error"' not in body[-300:]
                    outcomes["complete" if complete else f"status {response.status} or error line"] += 1
            except (aiohttp.ClientError, TimeoutError) as error:
                outcomes[type(error).__name__] += 1
            await asyncio.sleep(0.2)


async def ingest_and_query_through_kill(cluster: LocalCluster, service: Service) -> tuple[Tally, Counter[str]]:
    tally = Tally()
    reads: Counter[str] = Counter()
    source = ReadingSource()
    stop = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        tasks = [asyncio.create_task(post_until(http, [service.url], source, tally, stop)) for _ in range(4)]
        tasks += [asyncio.create_task(read_ranges(service.url, reads, stop)) for _ in range(2)]
        try:
            await asyncio.sleep(4)
            await asyncio.to_thread(cluster.kill, 2)
            await asyncio.sleep(4)
            await asyncio.to_thread(cluster.restart, 2)
            await asyncio.sleep(3)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    return tally, reads


def converged(cluster: LocalCluster, keyspace: str, timeout_s: float = 60) -> float:
    """Seconds until a read at consistency ALL succeeds: every replica answers again."""
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    started = time.monotonic()
    select = SimpleStatement(f"SELECT value FROM {keyspace}.layout", consistency_level=ConsistencyLevel.ALL)
    with driver_session(cluster.addresses, "ALL") as session:
        while True:
            try:
                session.execute(select)
                return time.monotonic() - started
            except Exception:
                if time.monotonic() - started > timeout_s:
                    raise
                time.sleep(0.2)


class TestKillOneOfThree:
    def test_no_failed_request_and_nothing_lost(self, cluster: LocalCluster, tmp_path: Path) -> None:
        """Writes and range queries at QUORUM carry on through a kill -9; all acknowledged readings are read back."""
        keyspace = f"faults_cluster_{int(time.time())}"
        settings = {
            "cassandra_contact_points": ",".join(cluster.addresses),
            "cassandra_keyspace": keyspace,
            "cassandra_replication_factor": "3",
            "cassandra_read_consistency": "QUORUM",
            "cassandra_write_consistency": "QUORUM",
        }
        service = Service(tmp_path, **settings)
        service.cli("schema", "apply")  # on a cluster that has just started: must succeed on the first try
        with service:
            tally, reads = asyncio.run(ingest_and_query_through_kill(cluster, service))
            converged_s = converged(cluster, keyspace)
            through_service = asyncio.run(_range_through(service.url))
        with driver_session(cluster.addresses, "QUORUM") as session:
            found = stored(session, keyspace, ReadingSource().devices)
            session.execute(f"DROP KEYSPACE {keyspace}", timeout=120)
        print(
            f"\n3 nodes, kill -9 of one: {tally.requests} writes {dict(tally.statuses)}, "
            f"{len(tally.acknowledged)} acknowledged, {len(tally.acknowledged - found)} lost at QUORUM, "
            f"{len(tally.acknowledged - through_service)} missing from the service's range query; "
            f"range streams {dict(reads)}; consistency ALL answered {converged_s:.1f} s after the restart"
        )
        assert {200} == set(tally.statuses), tally.statuses
        assert not tally.client_errors, tally.client_errors
        assert len(tally.acknowledged) > 0
        assert set() == tally.acknowledged - found
        assert set() == tally.acknowledged - through_service
        assert reads["complete"] > 0
        assert {"complete"} == set(reads), reads


async def _range_through(url: str) -> set[tuple[object, int]]:
    import uuid

    from readings_service.core.timestamps import parse_timestamp

    params = {"start": str(FAULT_DAY_MS), "end": str(FAULT_DAY_MS + MS_PER_DAY)}
    async with aiohttp.ClientSession() as http, http.get(url + "/readings", params=params) as response:
        assert 200 == response.status
        lines = (await response.read()).splitlines()
    rows = [orjson.loads(line) for line in lines]
    return {(uuid.UUID(row["device_id"]), parse_timestamp(row["ts"])) for row in rows}

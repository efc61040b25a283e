"""kill -9 of the only Cassandra node: what was acknowledged survives, the service sheds and recovers quickly."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.faults.harness import (
    LocalCluster,
    ReadingSource,
    Service,
    Tally,
    driver_session,
    post_until,
    stored,
    wait_for,
)

BASE = 11  # 127.0.0.11: never the node the other tests use
RECOVERY_S = 3.0


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(1, BASE, tmp_path_factory.mktemp("single-node")).running() as cluster:
        yield cluster


def service_on(node: LocalCluster, log_dir: Path, keyspace: str) -> Service:
    service = Service(log_dir, cassandra_contact_points=node.addresses[0], cassandra_keyspace=keyspace)
    service.cli("schema", "apply")
    return service


def new_report() -> dict[str, list[float]]:
    return {"down_at": [], "recovery_s": [], "statuses_while_down": [], "ready_while_down": []}


async def ingest_with_kills(
    node: LocalCluster, service: Service, kills: int, writers: int, report: dict[str, list[float]]
) -> Tally:
    """Writers post without pause; the node is killed `kills` times at random moments and started again."""
    tally = Tally()
    source = ReadingSource()
    stop = asyncio.Event()
    rng = random.Random(9)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        tasks = [asyncio.create_task(post_until(http, [service.url], source, tally, stop)) for _ in range(writers)]
        try:
            for _ in range(kills):
                await asyncio.sleep(rng.uniform(1.0, 3.0))
                await asyncio.to_thread(node.kill, 1)
                report["down_at"].append(time.monotonic())
                await asyncio.sleep(rng.uniform(0.5, 1.5))
                report["ready_while_down"].append(float(await _get_status(service.url + "/ready")))
                ok_before = len(tally.ok_times)
                statuses_while_down = dict(tally.statuses)
                answering = await asyncio.to_thread(node.restart, 1)
                recovered = await wait_for(lambda n=ok_before: len(tally.ok_times) > n, 30)
                assert recovered, f"no 200 within 30 s of the restart: {tally}"
                first_ok = tally.ok_times[ok_before]
                report["recovery_s"].append(max(0.0, first_ok - answering))
                report["statuses_while_down"].append(float(sum(statuses_while_down.values())))
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    return tally


class TestKillDuringIngest:
    def test_nothing_acknowledged_is_lost(self, node: LocalCluster, tmp_path: Path) -> None:
        """Three kill -9s during ingest from 4 writers: only 200 or 503 + Retry-After, fast recovery, 0 lost."""
        keyspace = f"faults_kill_{int(time.time())}"
        report = new_report()
        with service_on(node, tmp_path, keyspace) as service:
            tally = asyncio.run(ingest_with_kills(node, service, kills=3, writers=4, report=report))
            ready = asyncio.run(_get_status(service.url + "/ready"))
            log = service.log()
        with driver_session(node.addresses, "ONE") as session:
            found = stored(session, keyspace, ReadingSource().devices)
            session.execute(f"DROP KEYSPACE {keyspace}", timeout=120)
        lost = tally.acknowledged - found
        print(
            f"\nsingle node, 3 x kill -9: {tally.requests} requests {dict(tally.statuses)}, "
            f"{len(tally.acknowledged)} acknowledged, {len(lost)} lost, "
            f"recovery after CQL answered: {[round(s, 2) for s in report['recovery_s']]} s"
        )
        assert set(tally.statuses) <= {200, 503}, tally.statuses
        assert tally.statuses[503] > 0, "the node was down, yet no request was refused"
        assert 0 == tally.without_retry_after
        assert not tally.client_errors, tally.client_errors
        assert len(tally.acknowledged) > 0
        assert 0 == len(lost)
        assert all(seconds <= RECOVERY_S for seconds in report["recovery_s"]), report["recovery_s"]
        assert 200 == ready
        assert [503.0] * 3 == report["ready_while_down"]
        assert "Traceback" not in log

    def test_keyspace_survives_kill_right_after_schema_apply(self, node: LocalCluster, tmp_path: Path) -> None:
        """A kill -9 seconds after `schema apply` keeps the new keyspace and what was acknowledged in it."""
        keyspace = f"faults_schema_{int(time.time())}"
        report = new_report()
        with service_on(node, tmp_path, keyspace) as service:
            tally = asyncio.run(ingest_with_kills(node, service, kills=1, writers=2, report=report))
        with driver_session(node.addresses, "ONE") as session:
            found = stored(session, keyspace, ReadingSource().devices)
            session.execute(f"DROP KEYSPACE {keyspace}", timeout=120)
        print(
            f"\nkill -9 after schema apply: {dict(tally.statuses)}, {len(tally.acknowledged)} acknowledged, "
            f"{len(tally.acknowledged - found)} lost"
        )
        assert len(tally.acknowledged) > 0
        assert set() == tally.acknowledged - found


async def _get_status(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status

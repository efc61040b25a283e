"""Faults at the service's edge, on the test node: several instances, vanishing readers, more writers than fit."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from readings_service.core.ordering import uuid_order_key
from readings_service.core.timestamps import parse_timestamp
from tests.conftest import run_keyspace, settings_for
from tests.faults.harness import (
    FAULT_DAY_MS,
    MS_PER_DAY,
    ReadingSource,
    Service,
    Tally,
    driver_session,
    metric,
    metrics,
    ndjson,
    post_until,
    rss_bytes,
    stored,
)

DAY = {"start": str(FAULT_DAY_MS), "end": str(FAULT_DAY_MS + MS_PER_DAY)}


@pytest.fixture
def keyspace(request: pytest.FixtureRequest) -> Iterator[str]:
    """A keyspace of the test's own on the test node, dropped afterwards."""
    name = run_keyspace(f"faults_{request.node.name.split('[')[0][5:30]}")
    yield name
    with driver_session(list(settings_for().cassandra.contact_points), "ONE") as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=120)


def services(log_dir: Path, keyspace: str, count: int, **settings: str) -> list[Service]:
    made = [Service(log_dir, cassandra_keyspace=keyspace, **settings) for _ in range(count)]
    made[0].cli("schema", "apply")
    return made


async def seed(url: str, source: ReadingSource, rows: int, batch: int = 2000) -> set[tuple[uuid.UUID, int]]:
    written: set[tuple[uuid.UUID, int]] = set()
    async with aiohttp.ClientSession() as http:
        for _ in range(rows // batch):
            readings = source.batch(batch)
            async with http.post(
                url + "/readings", data=ndjson(readings), headers={"Content-Type": "application/x-ndjson"}
            ) as response:
                assert 200 == response.status, await response.text()
            written.update(readings)
    return written


def clustering_key(row: dict[str, Any]) -> tuple[int, int]:
    return parse_timestamp(row["ts"]), uuid_order_key(uuid.UUID(row["device_id"]))


class TestSeveralInstances:
    def test_paging_across_instances_sees_every_row_once(self, keyspace: str, tmp_path: Path) -> None:
        """Ingest spread over 3 processes; paging with limit/after while alternating them returns each row once."""
        instances = services(tmp_path, keyspace, 3)
        for instance in instances:
            instance.start()
        try:
            written, pages = asyncio.run(_ingest_then_page([i.url for i in instances]))
        finally:
            for instance in instances:
                instance.stop()
        keys = [clustering_key(row) for page in pages for row in page]
        got = [(uuid.UUID(row["device_id"]), parse_timestamp(row["ts"])) for page in pages for row in page]
        print(
            f"\n3 instances: {len(written)} written, {len(got)} paged in {len(pages)} pages, "
            f"{len(got) - len(set(got))} duplicates, {len(written - set(got))} missing"
        )
        assert sorted(keys) == keys
        assert len(got) == len(set(got))
        assert written == set(got)


async def _ingest_then_page(urls: list[str]) -> tuple[set[tuple[uuid.UUID, int]], list[list[dict[str, Any]]]]:
    source = ReadingSource(devices=40)
    written: set[tuple[uuid.UUID, int]] = set()
    for url, _ in zip(itertools.cycle(urls), range(26), strict=False):
        written |= await seed(url, source, 300, batch=300)
    pages: list[list[dict[str, Any]]] = []
    after: str | None = None
    async with aiohttp.ClientSession() as http:
        for url in itertools.cycle(urls):
            params = DAY | {"limit": "997"} | ({"after": after} if after else {})
            async with http.get(url + "/readings", params=params) as response:
                assert 200 == response.status
                page = [orjson.loads(line) for line in (await response.read()).splitlines()]
            if not page:
                return written, pages
            pages.append(page)
            after = f"{page[-1]['ts']},{page[-1]['device_id']}"
    raise AssertionError("unreachable")


class TestVanishingReaders:
    def test_no_task_paging_or_memory_left_behind(self, keyspace: str, tmp_path: Path) -> None:
        """1,000 clients that reset the connection mid-stream leave no task, no paging, no memory, no traceback."""
        (service,) = services(tmp_path, keyspace, 1)
        with service:
            figures = asyncio.run(_vanish(service))
            log = service.log()
        print(f"\nvanishing readers: {figures}")
        assert figures["disconnected"] >= 1000, "fewer than 1,000 readers got a stream to walk away from"
        assert 0 == figures["streams_open"]
        assert figures["pages_after"] == figures["pages_settled"], "pages were still requested after the readers left"
        assert figures["tasks_after"] <= figures["tasks_before"] + 2
        assert figures["rss_after_mib"] - figures["rss_before_mib"] <= 10  # growth; giving memory back is fine
        assert "Traceback" not in log
        assert " ERROR " not in log


async def _vanish(service: Service) -> dict[str, float]:
    await seed(service.url, ReadingSource(), 40_000)
    counts = {"disconnected": 0, "shed": 0}

    async def reader(http: aiohttp.ClientSession) -> None:
        async with http.get(service.url + "/readings", params=DAY) as response:
            if response.status != 200:
                counts["shed"] += 1
                return
            await response.content.readany()  # the stream has begun
            response.connection.transport.abort()  # type: ignore[union-attr]  # a reset, not a goodbye
            counts["disconnected"] += 1

    async def wave(http: aiohttp.ClientSession, readers: int) -> None:
        """Groups of 20 until `readers` have disconnected mid-stream (a reader shed with 503 does not count)."""
        target = counts["disconnected"] + readers
        for _ in range(3 * readers // 20):
            if counts["disconnected"] >= target:
                return
            await asyncio.gather(*(reader(http) for _ in range(20)), return_exceptions=True)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as http:
        start = await _settled(http, service)
        # Warm-up: the allocator's high-water mark rises over the first waves of 20 concurrent streams (each holds
        # a prefetched page per bucket) and levels off; a leak would keep growing over the next 1,000.
        await wave(http, 1000)
        before = await _settled(http, service)
        counts["disconnected"] = 0
        await wave(http, 1000)
        after = await _settled(http, service)
        await asyncio.sleep(1.0)
        text = await metrics(http, service.url)
    return {
        **counts,
        "streams_open": metric(text, "readings_streams_open"),
        "pages_settled": after["pages"],
        "pages_after": metric(text, "readings_cassandra_pages_requested_total"),
        "tasks_before": before["tasks"],
        "tasks_after": after["tasks"],
        "rss_start_mib": round(start["rss"] / 2**20, 1),
        "rss_before_mib": round(before["rss"] / 2**20, 1),
        "rss_after_mib": round(after["rss"] / 2**20, 1),
    }


async def _settled(http: aiohttp.ClientSession, service: Service) -> dict[str, float]:
    """The service's figures once no stream is open any more."""
    for _ in range(100):
        text = await metrics(http, service.url)
        if metric(text, "readings_streams_open") == 0:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    text = await metrics(http, service.url)
    return {
        "tasks": metric(text, "readings_event_loop_tasks"),
        "pages": metric(text, "readings_cassandra_pages_requested_total"),
        "rss": rss_bytes(service.pid),
    }


class TestOverload:
    def test_sheds_with_503_and_keeps_what_it_acknowledged(self, keyspace: str, tmp_path: Path) -> None:
        """300 concurrent writers: 200 or 503 + Retry-After only, no hang, bounded memory, 0 acknowledged lost."""
        (service,) = services(tmp_path, keyspace, 1)
        with service:
            tally, rss = asyncio.run(_overload(service))
            log = service.log()
        with driver_session(list(settings_for().cassandra.contact_points), "ONE") as session:
            found = stored(session, keyspace, ReadingSource().devices)
        print(
            f"\noverload, 300 writers: {tally.requests} requests {dict(tally.statuses)}, "
            f"{len(tally.acknowledged)} acknowledged, {len(tally.acknowledged - found)} lost, "
            f"RSS {rss[0] / 2**20:.0f} -> peak {max(rss) / 2**20:.0f} MiB"
        )
        assert set(tally.statuses) == {200, 503}, tally.statuses
        assert 0 == tally.without_retry_after
        assert not tally.client_errors, tally.client_errors
        assert set() == tally.acknowledged - found
        assert max(rss) - rss[0] < 200 * 2**20
        assert "Traceback" not in log


async def _overload(service: Service) -> tuple[Tally, list[int]]:
    tally = Tally()
    source = ReadingSource()
    stop = asyncio.Event()
    rss = [rss_bytes(service.pid)]

    async def sample() -> None:
        while not stop.is_set():
            rss.append(rss_bytes(service.pid))
            await asyncio.sleep(0.05)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as http:
        sampler = asyncio.create_task(sample())
        writers = [
            post_until(http, [service.url], source, tally, stop, batch_size=200, max_requests=6) for _ in range(300)
        ]
        await asyncio.gather(*writers)
        stop.set()
        await sampler
    return tally, rss

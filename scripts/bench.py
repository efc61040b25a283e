"""Benchmarks against the local Cassandra: the service next to the raw driver and the naive way, in one run.

    scripts/bench [--smoke] [--runs N] [--sizes 100000,1000000,5000000] [--out BENCHMARKS.md]

The service runs as its own process (`readings-service serve`); the load generator, the driver-alone ceiling and
the naive way run in this process. Every side of a ratio uses the same Cassandra, the same data and the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from readings_service.config import Settings, load_settings
from readings_service.core.bucketing import bucket_of
from readings_service.core.merge import merge_sorted_pages
from readings_service.core.model import Reading
from readings_service.core.ordering import uuid_order_key
from readings_service.core.ranges import row_key
from readings_service.core.timestamps import MS_PER_DAY
from readings_service.query_path import native_version
from readings_service.store.bridge import execute, gather_bounded, pages
from readings_service.store.cassandra import DATE_EPOCH_OFFSET, CassandraStore, connect
from readings_service.store.schema import apply_schema

ROOT = Path(__file__).resolve().parent.parent
ANALYSIS = "## Where the time goes"
FIRST_DAY = 19_700  # 2023-12-09; each data set gets its own day


@dataclass
class Results:
    """Everything measured, by section; each entry holds the per-run values."""

    params: dict[str, Any] = field(default_factory=dict)
    ingest: dict[str, list[float]] = field(default_factory=dict)
    query: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    small: dict[str, list[float]] = field(default_factory=dict)
    merge: dict[str, list[float]] = field(default_factory=dict)
    device: dict[str, list[float]] = field(default_factory=dict)
    stalls: dict[str, dict[float, float]] = field(default_factory=dict)

    def add(self, section: dict[Any, Any], name: str, value: float) -> None:
        section.setdefault(name, []).append(value)


def devices(count: int, seed: int = 7) -> list[uuid.UUID]:
    rng = random.Random(seed)
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(count)]


def readings_for_day(day: int, count: int, device_count: int) -> list[Reading]:
    """`count` readings spread evenly over one UTC day; devices report in turn."""
    ids = devices(device_count)
    step = max(1, MS_PER_DAY // max(1, count))
    base = day * MS_PER_DAY
    return [
        Reading(
            ids[i % device_count],
            base + (i * step) % MS_PER_DAY + i // MS_PER_DAY,
            20.0 + (i % 100) / 10,
            1000.0 + (i % 50),
        )
        for i in range(count)
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def service_process(settings: Settings, native: str) -> Iterator[tuple[str, int]]:
    """Run `readings-service serve` on the bench keyspace and contact points, with `query.native` = `native`;
    yields (base URL, pid)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("READINGS_")}
    env |= {
        "READINGS_CASSANDRA_KEYSPACE": settings.cassandra.keyspace,
        "READINGS_HTTP_PORT": str(port),
        "READINGS_STORAGE_BUCKETS": str(settings.storage.buckets),
        "READINGS_CASSANDRA_CONTACT_POINTS": ",".join(settings.cassandra.contact_points),
        "READINGS_CASSANDRA_PROTOCOL_VERSION": str(settings.cassandra.protocol_version),
        "READINGS_AUTH_REQUIRED": "false",
        "READINGS_QUERY_NATIVE": native,
    }
    # The log goes to a file: a pipe nobody reads fills up after a few hundred access-log lines, and then the
    # service's next log call blocks its event loop.
    log = tempfile.NamedTemporaryFile(prefix=f"bench-serve-{native}-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "readings-service"), "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"bench: service exited: {Path(log.name).read_text()[-4000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            break
        time.sleep(0.1)
    try:
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(30)
        log.close()
        Path(log.name).unlink()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@contextlib.asynccontextmanager
async def rss_sampler(pid: int) -> AsyncIterator[list[int]]:
    """Samples the process's RSS every 20 ms; the list's max is the peak seen."""
    samples = [rss_bytes(pid)]

    async def sample() -> None:
        while True:
            samples.append(rss_bytes(pid))
            await asyncio.sleep(0.02)

    task = asyncio.ensure_future(sample())
    try:
        yield samples
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        samples.append(rss_bytes(pid))


# ---------------------------------------------------------------- ingest


def ndjson_body(batch: list[Reading]) -> bytes:
    return b"".join(
        orjson.dumps(
            {"device_id": str(r.device_id), "ts": r.ts_ms, "temperature": r.temperature, "pressure": r.pressure},
            option=orjson.OPT_APPEND_NEWLINE,
        )
        for r in batch
    )


async def ingest_service(url: str, batches: list[list[Reading]], clients: int) -> tuple[float, list[float]]:
    """K clients post the batches; returns (readings/s, request latencies in s)."""
    bodies = [ndjson_body(b) for b in batches]
    queue = iter(bodies)
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as http:

        async def client() -> None:
            for body in queue:
                started = time.perf_counter()
                async with http.post(
                    f"{url}/readings", data=body, headers={"Content-Type": "application/x-ndjson"}
                ) as response:
                    if response.status != 200:
                        raise RuntimeError(f"POST failed: {response.status} {await response.text()}")
                    await response.read()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return sum(map(len, batches)) / elapsed, latencies


async def ingest_driver(store: CassandraStore, batches: list[list[Reading]], clients: int) -> float:
    """The same batches through the same write path, K at a time, no HTTP and no parsing."""
    queue = iter(batches)

    async def client() -> None:
        for batch in queue:
            await store.write(batch)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return sum(map(len, batches)) / (time.perf_counter() - started)


async def ingest_naive(session: Any, keyspace: str, readings: list[Reading], buckets: int) -> float:
    """One awaited INSERT per row and table, one after another."""
    insert = session.prepare(
        f"INSERT INTO {keyspace}.readings (day, bucket, ts, device_id, temperature, pressure) VALUES (?, ?, ?, ?, ?, ?)"
    )
    by_device = session.prepare(
        f"INSERT INTO {keyspace}.readings_by_device (device_id, day, ts, temperature, pressure) VALUES (?, ?, ?, ?, ?)"
    )
    started = time.perf_counter()
    for r in readings:
        day = r.ts_ms // MS_PER_DAY + DATE_EPOCH_OFFSET
        await execute(
            session, insert, (day, bucket_of(r.device_id, buckets), r.ts_ms, r.device_id, r.temperature, r.pressure), 10
        )
        await execute(session, by_device, (r.device_id, day, r.ts_ms, r.temperature, r.pressure), 10)
    return len(readings) / (time.perf_counter() - started)


# ---------------------------------------------------------------- range query


async def seed_readings_table(session: Any, keyspace: str, day: int, count: int, buckets: int) -> None:
    """Fill one day of the `readings` table fast (only the table range queries read)."""
    insert = session.prepare(
        f"INSERT INTO {keyspace}.readings (day, bucket, ts, device_id, temperature, pressure) VALUES (?, ?, ?, ?, ?, ?)"
    )
    from cassandra.query import BatchStatement, BatchType

    ids = devices(10_000)
    id_buckets = [bucket_of(d, buckets) for d in ids]
    step = MS_PER_DAY / count
    base = day * MS_PER_DAY
    wire_day = day + DATE_EPOCH_OFFSET
    chunk = 20_000
    for start in range(0, count, chunk):
        groups: dict[int, list[tuple[Any, ...]]] = {}
        for i in range(start, min(count, start + chunk)):
            d = i % len(ids)
            groups.setdefault(id_buckets[d], []).append(
                (wire_day, id_buckets[d], base + int(i * step), ids[d], 20.0 + (i % 100) / 10, 1000.0 + i % 50)
            )
        calls: list[Callable[[], Any]] = []
        for rows in groups.values():
            for s in range(0, len(rows), 40):
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                for row in rows[s : s + 40]:
                    batch.add(insert, row)
                calls.append(functools.partial(execute, session, batch, None, 30))
        await gather_bounded(calls, 64)


DEVICE = uuid.UUID("6ba7b810-9dad-41d1-80b4-00c04fd430c8")


async def seed_device_day(session: Any, keyspace: str, day: int, count: int) -> None:
    """Fill one device's partition of one day in `readings_by_device` (what a per-device range reads)."""
    from cassandra.query import BatchStatement, BatchType

    insert = session.prepare(
        f"INSERT INTO {keyspace}.readings_by_device (device_id, day, ts, temperature, pressure) VALUES (?, ?, ?, ?, ?)"
    )
    step = MS_PER_DAY / count
    calls: list[Callable[[], Any]] = []
    for start in range(0, count, 40):
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for i in range(start, min(count, start + 40)):
            batch.add(
                insert,
                (
                    DEVICE,
                    day + DATE_EPOCH_OFFSET,
                    day * MS_PER_DAY + int(i * step),
                    20.0 + (i % 100) / 10,
                    1000.0 + i % 50,
                ),
            )
        calls.append(functools.partial(execute, session, batch, None, 30))
    await gather_bounded(calls, 64)


async def device_driver(session: Any, settings: Settings, day: int) -> float:
    """The per-device query of the day's partition, paged with the driver; no HTTP. Returns rows/s."""
    statement = session.prepare(
        f"SELECT toUnixTimestamp(ts), temperature, pressure FROM {settings.cassandra.keyspace}.readings_by_device "
        "WHERE device_id = ? AND day = ? AND ts >= ? AND ts < ?"
    )
    statement.fetch_size = settings.cassandra.fetch_size
    params = (DEVICE, day + DATE_EPOCH_OFFSET, day * MS_PER_DAY, (day + 1) * MS_PER_DAY)
    count = 0
    started = time.perf_counter()
    async with contextlib.aclosing(pages(session, statement, params, 30)) as scan:
        async for page in scan:
            count += len(page)
    return count / (time.perf_counter() - started)


async def query_service(url: str, day: int, pid: int, device: uuid.UUID | None = None) -> tuple[float, float, int, int]:
    """GET one day over HTTP (all devices, or one); returns (rows/s, time to first byte in s, rows, peak RSS)."""
    start, end = day * MS_PER_DAY, (day + 1) * MS_PER_DAY
    rows = 0
    route = f"/devices/{device}/readings" if device else "/readings"
    async with rss_sampler(pid) as samples, aiohttp.ClientSession() as http:
        started = time.perf_counter()
        async with http.get(f"{url}{route}?start={start}&end={end}") as response:
            first_byte = 0.0
            async for part in response.content.iter_any():
                if not first_byte:
                    first_byte = time.perf_counter() - started
                rows += part.count(b"\n")
        elapsed = time.perf_counter() - started
    return rows / elapsed, first_byte, rows, max(samples)


async def query_driver(session: Any, settings: Settings, day: int, buckets: int) -> tuple[float, int]:
    keyspace = settings.cassandra.keyspace
    """The same query of every bucket of the day, paged concurrently with the driver; no merge, no HTTP."""
    statement = session.prepare(
        f"SELECT toUnixTimestamp(ts), uuidAsBlob(device_id), temperature, pressure FROM {keyspace}.readings "
        "WHERE day = ? AND bucket = ? AND ts >= ? AND ts < ?"
    )
    statement.fetch_size = settings.cassandra.fetch_size
    start, end = day * MS_PER_DAY, (day + 1) * MS_PER_DAY
    counts = [0] * buckets

    async def drain(bucket: int) -> None:
        params = (day + DATE_EPOCH_OFFSET, bucket, start, end)
        async with contextlib.aclosing(pages(session, statement, params, 30)) as scan:
            async for page in scan:
                counts[bucket] += len(page)

    started = time.perf_counter()
    await asyncio.gather(*(drain(b) for b in range(buckets)))
    total = sum(counts)
    return total / (time.perf_counter() - started), total


def query_naive(session: Any, keyspace: str, day: int, buckets: int, fetch_size: int) -> tuple[float, int]:
    """Fetch every bucket fully (blocking), sort in Python, serialise every row with json."""
    from cassandra.query import SimpleStatement

    started = time.perf_counter()
    rows: list[Any] = []
    for bucket in range(buckets):
        statement = SimpleStatement(
            f"SELECT ts, device_id, temperature, pressure FROM {keyspace}.readings WHERE day = %s AND bucket = %s",
            fetch_size=fetch_size,
        )
        rows.extend(session.execute(statement, (day + DATE_EPOCH_OFFSET, bucket)))
    rows.sort(key=lambda r: (r[0], r[1]))
    body = "".join(
        json.dumps({"device_id": str(r[1]), "ts": r[0].isoformat() + "Z", "temperature": r[2], "pressure": r[3]}) + "\n"
        for r in rows
    )
    elapsed = time.perf_counter() - started
    del body
    return len(rows) / elapsed, len(rows)


# ---------------------------------------------------------------- event-loop stalls

STALL_METRIC = "readings_event_loop_stall_seconds_bucket"


async def stall_counts(http: aiohttp.ClientSession, url: str) -> dict[float, float]:
    """The service's event-loop stall histogram: cumulative wake-ups by upper bound in seconds."""
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    counts: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(STALL_METRIC + "{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            counts[float(bound)] = float(line.rsplit(" ", 1)[1])
    return counts


async def mixed_load(url: str, stream_day: int, post_day: int, seconds: float) -> dict[float, float]:
    """Two clients posting 10,000-reading bodies and two streaming a day, for `seconds`; returns the stall
    histogram of that window (wake-ups of the service's 10 ms timer by how late they came)."""
    body = ndjson_body(readings_for_day(post_day, 10_000, 1000))
    start, end = stream_day * MS_PER_DAY, (stream_day + 1) * MS_PER_DAY
    async with aiohttp.ClientSession() as http:
        before = await stall_counts(http, url)
        deadline = time.monotonic() + seconds

        async def poster() -> None:
            while time.monotonic() < deadline:
                async with http.post(
                    f"{url}/readings", data=body, headers={"Content-Type": "application/x-ndjson"}
                ) as response:
                    await response.read()

        async def streamer() -> None:
            while time.monotonic() < deadline:
                async with http.get(f"{url}/readings?start={start}&end={end}") as response:
                    async for _ in response.content.iter_any():
                        pass

        await asyncio.gather(poster(), poster(), streamer(), streamer())
        after = await stall_counts(http, url)
    return {bound: after[bound] - before.get(bound, 0.0) for bound in after}


def stall_row(name: str, window: dict[float, float]) -> str:
    """One report line: wake-ups, how many came over 10 and 50 ms late, and the bucket of the worst one."""
    total = window.get(float("inf"), 0.0)
    worst = min((bound for bound, count in window.items() if count >= total), default=float("nan"))
    worst_text = "over 2 s" if worst == float("inf") else f"≤ {worst * 1000:.0f} ms"
    return (
        f"| {name} | {total:,.0f} | {total - window.get(0.01, 0.0):,.0f} | {total - window.get(0.05, 0.0):,.0f} "
        f"| {worst_text} |"
    )


# ---------------------------------------------------------------- small queries and merge kernel


async def small_queries(
    url: str, session: Any, store: CassandraStore, day: int, repeats: int
) -> tuple[list[float], list[float]]:
    """Latencies of a one-day ~100-row range over HTTP and of one single-partition query (driver)."""
    from datetime import date, timedelta

    start, end = day * MS_PER_DAY, (day + 1) * MS_PER_DAY
    fan_out: list[float] = []
    single: list[float] = []
    the_day = date(1970, 1, 1) + timedelta(days=day)
    async with aiohttp.ClientSession() as http:
        for _ in range(repeats):
            t = time.perf_counter()
            async with http.get(f"{url}/readings?start={start}&end={end}") as response:
                await response.read()
            fan_out.append(time.perf_counter() - t)
            t = time.perf_counter()
            async with contextlib.aclosing(store.scan_bucket(the_day, 0, start, end, None)) as scan:
                async for _ in scan:
                    pass
            single.append(time.perf_counter() - t)
    return fan_out, single


async def merge_kernel(sources: int, pages_per_source: int, page_rows: int) -> float:
    """Rows/s of merge_sorted_pages alone on in-memory pages of stored-row tuples."""
    ids = devices(1000)
    rng = random.Random(3)
    data = []
    for _ in range(sources):
        picks = (ids[rng.randrange(1000)] for _ in range(pages_per_source * page_rows))
        rows = sorted(((rng.randrange(10**9), uuid_order_key(d), d, 1.0, 2.0) for d in picks), key=row_key)
        data.append([rows[i : i + page_rows] for i in range(0, len(rows), page_rows)])

    async def source(pages_: list[list[Any]]) -> AsyncIterator[list[Any]]:
        for page in pages_:
            yield page

    started = time.perf_counter()
    count = 0
    async for chunk in merge_sorted_pages([source(p) for p in data], row_key):
        count += len(chunk)
    return count / (time.perf_counter() - started)


def native_kernel(sources: int, pages_per_source: int, page_rows: int) -> float:
    """Rows/s of the compiled DayMerge alone (parse raw pages, merge, encode NDJSON) on in-memory pages."""
    import struct

    import readings_native

    ids = devices(1000)
    rng = random.Random(3)

    def page(rows: list[tuple[int, uuid.UUID]]) -> bytes:
        cells = [struct.pack(">i", len(rows))]
        for ts, device in rows:
            cells.append(struct.pack(">iqi16sidid", 8, ts, 16, device.bytes, 8, 21.5, 8, 1013.25))
        return b"".join(cells)

    data = []
    for _ in range(sources):
        rows = sorted(
            ((rng.randrange(10**9), ids[rng.randrange(1000)]) for _ in range(pages_per_source * page_rows)),
            key=lambda row: (row[0], uuid_order_key(row[1])),
        )
        data.append([page(rows[i : i + page_rows]) for i in range(0, len(rows), page_rows)])

    started = time.perf_counter()
    merge = readings_native.DayMerge(sources)
    cursors = [0] * sources
    dry = list(range(sources))
    count = 0
    while True:
        for index in dry:
            if cursors[index] < len(data[index]):
                merge.push(index, data[index][cursors[index]])
                cursors[index] += 1
            else:
                merge.finish(index)
        _, emitted, _, dry = merge.cut()
        count += emitted
        if not dry and not emitted:
            break
    return count / (time.perf_counter() - started)


# ---------------------------------------------------------------- report


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def versions() -> dict[str, str]:
    import cassandra

    out = {
        "python": platform.python_version(),
        "cassandra-driver": cassandra.__version__,
        "aiohttp": aiohttp.__version__,
        "orjson": orjson.__version__,
    }
    lib = sorted(Path.home().glob(".cache/readings-service/cassandra/lib-*"))
    out["cassandra"] = lib[-1].name.removeprefix("lib-") if lib else os.environ.get("CASSANDRA_VERSION", "?")
    return out


def report(results: Results) -> str:
    p = results.params
    lines = [
        "# Benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} with `scripts/bench {p['argv']}`: medians of {p['runs']} runs.",
        f"Machine: {p['machine']}; Cassandra, the service and the load generator share it.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".",
        f"Settings: {p['buckets']} buckets, fetch size {p['fetch_size']}, protocol v{p['protocol']}, "
        f"consistency {p['consistency']}, batch rows {p['batch_rows']}.",
        "",
        "## Ingest",
        "",
        f"{p['ingest_rows']} readings from {p['ingest_devices']} devices, {p['clients']} concurrent clients "
        f"posting NDJSON batches of {p['batch']}; the driver alone writes the same batches through the same write "
        f"path with the same concurrency; the naive way awaits one INSERT per row and table "
        f"({p['naive_rows']} readings).",
        "",
        "| side | readings/s | p50 latency | p99 latency | ratio |",
        "|---|---|---|---|---|",
    ]
    ing = results.ingest
    service, driver, naive = med(ing["service"]), med(ing["driver"]), med(ing["naive"])
    lines += [
        f"| service (HTTP) | {service:,.0f} | {med(ing['p50']) * 1000:.1f} ms | {med(ing['p99']) * 1000:.1f} ms | "
        f"service/driver {service / driver:.2f} |",
        f"| driver alone (ceiling) | {driver:,.0f} | | | |",
        f"| naive | {naive:,.0f} | | | service/naive {service / naive:.1f} |",
        "",
        "## Range query (one day, all buckets)",
        "",
        f"One day over HTTP, NDJSON streamed to the end, per path: `native` is the compiled path on raw pages "
        f"({p['native_version']}), `python` the pure-Python reference; both services run side by side, on "
        f"protocol v{p['protocol']} like the driver alone, which pages the same 16 partitions and decodes rows "
        "into tuples (no merge, no HTTP). The naive way fetches every bucket fully, sorts and serialises with "
        "`json` before the first byte.",
        "",
    ]
    paths = p["paths"]
    header = "| rows | driver rows/s | " + " | ".join(f"{path} rows/s" for path in paths) + " | naive rows/s | "
    header += " | ".join(f"{path}/driver" for path in paths) + " | "
    header += " | ".join(f"first byte {path}" for path in paths) + " | "
    header += " | ".join(f"peak RSS {path}" for path in paths) + " |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for size, q in sorted(results.query.items()):
        d = med(q["driver"])
        naive_text = f"{med(q['naive']):,.0f}" if q.get("naive") else "not run"
        cells = [
            f"{size:,}",
            f"{d:,.0f}",
            *(f"{med(q[path]):,.0f}" for path in paths),
            naive_text,
            *(f"{med(q[path]) / d:.2f}" for path in paths),
            *(f"{med(q[f'{path}_ttfb']) * 1000:.1f} ms" for path in paths),
            *(f"{med(q[f'{path}_rss']) / 2**20:.0f} MiB" for path in paths),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    dv = results.device
    lines += [
        "",
        "## Per-device range (one device, one day)",
        "",
        f"{p['device_rows']:,} readings of one device in one day (one `readings_by_device` partition) over HTTP, next "
        "to the driver paging the same partition into tuples.",
        "",
        "| side | rows/s | ratio to driver | time to first byte |",
        "|---|---|---|---|",
        f"| driver alone | {med(dv['driver']):,.0f} | | |",
        *(
            f"| {path} path, HTTP | {med(dv[path]):,.0f} | {med(dv[path]) / med(dv['driver']):.2f} | "
            f"{med(dv[f'{path}_ttfb']) * 1000:.1f} ms |"
            for path in paths
        ),
    ]
    lines += [
        "",
        "## Event-loop stalls under mixed load",
        "",
        f"For {p['stall_seconds']:g} s (first run only), two clients post 10,000-reading NDJSON bodies while two "
        f"stream the {min(results.query):,}-row day, per service; the service wakes a 10 ms timer and records "
        "how late each wake-up came (`readings_event_loop_stall_seconds`): that lateness is how long some work "
        "held the event loop.",
        "",
        "| service | wake-ups | over 10 ms late | over 50 ms late | worst |",
        "|---|---|---|---|---|",
        *(stall_row(f"{path} path", results.stalls[path]) for path in paths if path in results.stalls),
    ]
    sm = results.small
    lines += [
        "",
        "## Small queries",
        "",
        f"A one-day range returning ~{p['small_rows']} rows across all {p['buckets']} buckets (HTTP, fan-out and "
        "merge) next to one single-partition read through the driver.",
        "",
        "| query | p50 | p99 |",
        "|---|---|---|",
        *(
            f"| one day, all buckets, HTTP, {path} | {med(sm[f'{path}_p50']) * 1000:.2f} ms | "
            f"{med(sm[f'{path}_p99']) * 1000:.2f} ms |"
            for path in paths
        ),
        f"| one partition, driver | {med(sm['one_p50']) * 1000:.2f} ms | {med(sm['one_p99']) * 1000:.2f} ms |",
        "",
        "## Merge kernel",
        "",
        f"`merge_sorted_pages` alone, {p['merge_shape']}: **{med(results.merge['rows_s']):,.0f} rows/s**.",
    ]
    if results.merge.get("native_rows_s"):
        lines.append(
            f"The compiled `DayMerge` on the same shape as raw pages, parsing, merging and writing NDJSON: "
            f"**{med(results.merge['native_rows_s']):,.0f} rows/s**."
        )
    lines.append("")
    return "\n".join(lines)


def plot(results: Results, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed; no plot", file=sys.stderr)
        return
    sizes = sorted(results.query)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sides = (
        ("driver", "driver alone (ceiling)"),
        ("native", "service over HTTP, native path"),
        ("python", "service over HTTP, python path"),
        ("naive", "naive"),
    )
    for name, label in sides:
        measured = [s for s in sizes if results.query[s].get(name)]
        if measured:
            ax.plot(measured, [med(results.query[s][name]) for s in measured], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("rows in the one-day range")
    ax.set_ylabel("rows/s")
    ax.set_title("Range query throughput")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def run(args: argparse.Namespace) -> Results:
    env = {k: v for k, v in os.environ.items() if k.startswith("READINGS_") and k != "READINGS_CASSANDRA_KEYSPACE"}
    base = load_settings(ROOT / "config.toml", env)
    keyspace = args.keyspace
    settings = replace(base, cassandra=replace(base.cassandra, keyspace=keyspace))
    buckets = settings.storage.buckets
    cluster, session = connect(settings.cassandra)
    # Every side uses the version the cluster accepted (the services are started with it too).
    settings = replace(settings, cassandra=replace(settings.cassandra, protocol_version=cluster.protocol_version))
    native = native_version()[0] is not None
    paths = ["native", "python"] if native else ["python"]
    results = Results()
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        apply_schema(session, settings.cassandra, buckets)
        store = CassandraStore(session, settings.cassandra, settings.ingest, buckets)
        sizes = [int(s) for s in args.sizes.split(",")]
        results.params = {
            "argv": " ".join(sys.argv[1:]),
            "runs": args.runs,
            "buckets": buckets,
            "machine": f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f}"
            f" GiB, {platform.platform()}",
            "fetch_size": settings.cassandra.fetch_size,
            "protocol": settings.cassandra.protocol_version,
            "paths": paths,
            "native_version": native_version()[0] or native_version()[1],
            "consistency": settings.cassandra.write_consistency,
            "batch_rows": settings.ingest.batch_rows,
            "ingest_rows": args.ingest_rows,
            "ingest_devices": 1000,
            "clients": args.clients,
            "batch": args.batch,
            "naive_rows": args.naive_rows,
            "small_rows": 100,
            "device_rows": args.device_rows,
            "stall_seconds": args.stall_seconds,
            "merge_shape": "16 sources x 20 pages x 1000 rows, key (ts, uuid order)",
        }
        for size_index, size in enumerate(sizes):
            print(f"bench: seeding {size:,} rows", file=sys.stderr, flush=True)
            await seed_readings_table(session, keyspace, FIRST_DAY + size_index, size, buckets)
        small_day = FIRST_DAY + len(sizes)
        await seed_readings_table(session, keyspace, small_day, 100, buckets)
        device_day = small_day + 1
        print(f"bench: seeding {args.device_rows:,} rows of one device", file=sys.stderr, flush=True)
        await seed_device_day(session, keyspace, device_day, args.device_rows)
        with contextlib.ExitStack() as services:
            # One service process per path, both up for the whole run, so every ratio compares one moment.
            served = {
                path: services.enter_context(service_process(settings, "on" if path == "native" else "off"))
                for path in paths
            }
            url, _ = served[paths[0]]
            for run_index in range(args.runs):
                print(f"bench: run {run_index + 1}/{args.runs}", file=sys.stderr, flush=True)
                day = FIRST_DAY + 100 + run_index * 3
                readings = readings_for_day(day, args.ingest_rows, 1000)
                batches = [readings[i : i + args.batch] for i in range(0, len(readings), args.batch)]
                rate, latencies = await ingest_service(url, batches, args.clients)
                results.add(results.ingest, "service", rate)
                results.add(results.ingest, "p50", percentile(latencies, 0.5))
                results.add(results.ingest, "p99", percentile(latencies, 0.99))
                driver_readings = readings_for_day(day + 1, args.ingest_rows, 1000)
                driver_batches = [
                    driver_readings[i : i + args.batch] for i in range(0, len(driver_readings), args.batch)
                ]
                results.add(results.ingest, "driver", await ingest_driver(store, driver_batches, args.clients))
                naive = readings_for_day(day + 2, args.naive_rows, 1000)
                results.add(results.ingest, "naive", await ingest_naive(session, keyspace, naive, buckets))
                for size_index, size in enumerate(sizes):
                    q = results.query.setdefault(size, {})
                    day_q = FIRST_DAY + size_index
                    # Sides in turn, the order rotating with the run, so no side always follows the same one.
                    sides = [*paths, "driver"]
                    sides = sides[run_index % len(sides) :] + sides[: run_index % len(sides)]
                    for side in sides:
                        if side == "driver":
                            rate, rows = await query_driver(session, settings, day_q, buckets)
                            results.add(q, "driver", rate)
                            continue
                        path_url, pid = served[side]
                        rate, ttfb, rows, rss = await query_service(path_url, day_q, pid)
                        if rows != size:
                            raise RuntimeError(f"{side} service returned {rows} rows, expected {size}")
                        results.add(q, side, rate)
                        results.add(q, f"{side}_ttfb", ttfb)
                        results.add(q, f"{side}_rss", rss)
                    if size <= args.naive_max_rows:
                        rate, rows = await asyncio.to_thread(
                            query_naive, session, keyspace, day_q, buckets, settings.cassandra.fetch_size
                        )
                        results.add(q, "naive", rate)
                for side in [*paths, "driver"]:
                    if side == "driver":
                        results.add(results.device, "driver", await device_driver(session, settings, device_day))
                        continue
                    path_url, pid = served[side]
                    rate, ttfb, rows, _ = await query_service(path_url, device_day, pid, DEVICE)
                    if rows != args.device_rows:
                        raise RuntimeError(f"{side} service returned {rows} device rows, expected {args.device_rows}")
                    results.add(results.device, side, rate)
                    results.add(results.device, f"{side}_ttfb", ttfb)
                for path in paths:
                    path_url, _ = served[path]
                    fan, one = await small_queries(path_url, session, store, small_day, args.small_repeats)
                    results.add(results.small, f"{path}_p50", percentile(fan, 0.5))
                    results.add(results.small, f"{path}_p99", percentile(fan, 0.99))
                    results.add(results.small, "one_p50", percentile(one, 0.5))
                    results.add(results.small, "one_p99", percentile(one, 0.99))
                if run_index == 0:
                    for path in paths:
                        path_url, _ = served[path]
                        results.stalls[path] = await mixed_load(path_url, FIRST_DAY, day + 50, args.stall_seconds)
                results.add(results.merge, "rows_s", await merge_kernel(16, args.merge_pages, 1000))
                if native:
                    results.add(results.merge, "native_rows_s", native_kernel(16, args.merge_pages, 1000))
        if not args.keep:
            session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
    finally:
        cluster.shutdown()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="a seconds-long run that only checks the script works")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="100000,1000000,5000000")
    parser.add_argument("--ingest-rows", type=int, default=100_000)
    parser.add_argument("--naive-rows", type=int, default=3_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--small-repeats", type=int, default=200)
    parser.add_argument("--merge-pages", type=int, default=20)
    parser.add_argument("--stall-seconds", type=float, default=15.0, help="length of the mixed-load phase")
    parser.add_argument("--device-rows", type=int, default=200_000, help="rows of the one-device day")
    parser.add_argument(
        "--naive-max-rows",
        type=int,
        default=5_000_000,
        help="skip the naive query (which holds the whole day in memory) above this size",
    )
    parser.add_argument("--keyspace", default="bench", help="scratch keyspace, dropped and created anew")
    parser.add_argument("--keep", action="store_true", help="keep the bench keyspace afterwards")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.sizes, args.ingest_rows, args.naive_rows = 1, "2000", 2000, 100
        args.small_repeats, args.merge_pages, args.device_rows, args.stall_seconds = 5, 1, 1000, 1.0
        args.out = Path(os.environ.get("TMPDIR", "/tmp")) / "BENCHMARKS.smoke.md"
    results = asyncio.run(run(args))
    text = report(results)
    # The hand-written analysis at the end of the file survives a new run.
    kept = args.out.read_text().partition(ANALYSIS)[2] if args.out.exists() else ""
    args.out.write_text(text + (f"\n{ANALYSIS}{kept}" if kept else ""))
    if not args.smoke:
        plot(results, args.out.with_name("benchmarks.png"))
    print(text)


if __name__ == "__main__":
    main()

"""Real faults for the fault tests: local Cassandra nodes that are killed with SIGKILL, service processes, and
clients that count what was acknowledged so that it can be read back."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from readings_service.core.timestamps import MS_PER_DAY
from tests.conftest import ROOT, env_without_readings

CASSANDRA_SCRIPT = ROOT / "scripts" / "cassandra"
# Fault data lives on one past UTC day, far from the other tests' days.
FAULT_DAY_MS = 20_400 * MS_PER_DAY  # 2025-11-08


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cql_answers(address: str) -> bool:
    try:
        with socket.create_connection((address, 9042), timeout=0.2):
            return True
    except OSError:
        return False


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class LocalCluster:
    """Nodes started by scripts/cassandra on 127.0.0.(base…), with their state in a folder of their own."""

    def __init__(self, nodes: int, base: int, state: Path) -> None:
        self.nodes = nodes
        self.base = base
        self.state = state

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.{self.base + i}" for i in range(self.nodes)]

    def run(self, action: str, only: int | None = None) -> None:
        command = [sys.executable, str(CASSANDRA_SCRIPT), action, "--nodes", str(self.nodes), "--base", str(self.base)]
        if only is not None:
            command += ["--only", str(only)]
        env = os.environ | {"CASSANDRA_STATE": str(self.state)}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(command[1:])} failed:\n{done.stdout}\n{done.stderr}")

    def kill(self, node: int) -> None:
        """SIGKILL one node: no drain, no flush — a crash."""
        self.run("kill", only=node)

    def restart(self, node: int) -> float:
        """Start a killed node; returns the monotonic time its CQL port first accepted a connection."""
        address = self.addresses[node - 1]
        first: list[float] = []
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                if cql_answers(address):
                    first.append(time.monotonic())
                    return
                time.sleep(0.02)

        watcher = threading.Thread(target=probe)
        watcher.start()
        try:
            self.run("start", only=node)
        finally:
            stop.set()
            watcher.join()
        assert first, f"node {node} never accepted a CQL connection"
        return first[0]

    @contextlib.contextmanager
    def running(self) -> Iterator[LocalCluster]:
        self.run("start")
        try:
            yield self
        finally:
            self.run("wipe")


class Service:
    """A `readings-service serve` process with READINGS_* overrides; its log goes to a file."""

    def __init__(self, log_dir: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"service-{self.port}.log"
        env = env_without_readings()  # the cluster variables stay: a service finds the cluster the tests use
        env |= {
            "READINGS_CONFIG": str(ROOT / "config.toml"),
            "READINGS_HTTP_PORT": str(self.port),
            "READINGS_AUTH_REQUIRED": "false",
        }  # the fault tests measure storage, not authentication
        env |= {f"READINGS_{key.upper()}": value for key, value in settings.items()}
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "readings_service", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert 0 == done.returncode, f"readings-service {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def start(self) -> Service:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "readings_service", "serve"],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"service exited at start-up:\n{self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return self
            time.sleep(0.1)
        raise AssertionError(f"service did not listen within 90 s:\n{self.log()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def wait_for(condition: Callable[[], bool], timeout_s: float, step_s: float = 0.01) -> bool:
    """Whether `condition` became true within `timeout_s` (checked every `step_s`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(step_s)
    return condition()


def metric(text: str, name: str) -> float:
    """One sample's value from Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} not exposed")


async def metrics(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url + "/metrics") as response:
        assert 200 == response.status
        return await response.text()


@dataclass
class Tally:
    """What clients saw: statuses, 503s without Retry-After, and every reading acknowledged with 200."""

    statuses: Counter[int] = field(default_factory=Counter)
    without_retry_after: int = 0
    client_errors: Counter[str] = field(default_factory=Counter)
    acknowledged: set[tuple[uuid.UUID, int]] = field(default_factory=set)
    ok_times: list[float] = field(default_factory=list)
    requests: int = 0


class ReadingSource:
    """Unique readings on the fault day: the ts counts up, devices take turns."""

    def __init__(self, devices: int = 64, seed: int = 1) -> None:
        rng = random.Random(seed)
        self.devices = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(devices)]
        self._counter = itertools.count()

    def batch(self, size: int) -> list[tuple[uuid.UUID, int]]:
        out = []
        for _ in range(size):
            n = next(self._counter)
            out.append((self.devices[n % len(self.devices)], FAULT_DAY_MS + 1000 + n))
        return out


def ndjson(batch: list[tuple[uuid.UUID, int]]) -> bytes:
    return b"".join(
        orjson.dumps(
            {"device_id": str(d), "ts": ts, "temperature": (ts % 400) / 10, "pressure": 1000.0},
            option=orjson.OPT_APPEND_NEWLINE,
        )
        for d, ts in batch
    )


async def post_until(
    http: aiohttp.ClientSession,
    urls: list[str],
    source: ReadingSource,
    tally: Tally,
    stop: asyncio.Event,
    batch_size: int = 200,
    max_requests: int | None = None,
) -> None:
    """Post batches until `stop` (or `max_requests`); a batch answered 503 is sent again shortly after."""
    rotation = itertools.cycle(urls)
    batch = source.batch(batch_size)
    sent = 0
    while not stop.is_set() and (max_requests is None or sent < max_requests):
        sent += 1
        tally.requests += 1
        try:
            async with http.post(
                next(rotation) + "/readings", data=ndjson(batch), headers={"Content-Type": "application/x-ndjson"}
            ) as response:
                await response.read()
                tally.statuses[response.status] += 1
                if response.status == 200:
                    tally.acknowledged.update(batch)
                    tally.ok_times.append(time.monotonic())
                    batch = source.batch(batch_size)
                    continue
                if response.status == 503 and "Retry-After" not in response.headers:
                    tally.without_retry_after += 1
        except (aiohttp.ClientError, TimeoutError) as error:
            tally.client_errors[type(error).__name__] += 1
        await asyncio.sleep(0.05)


def stored(session: Any, keyspace: str, device_ids: list[uuid.UUID], days: int = 1) -> set[tuple[uuid.UUID, int]]:
    """Every (device_id, ts) of the fault day found in both reading tables (by partition and by device)."""
    from cassandra.query import SimpleStatement

    from readings_service.core.bucketing import day_of

    day = day_of(FAULT_DAY_MS)
    by_partition: set[tuple[uuid.UUID, int]] = set()
    for bucket in range(16):
        select = SimpleStatement(
            f"SELECT device_id, toUnixTimestamp(ts) FROM {keyspace}.readings WHERE day = %s AND bucket = %s",
            fetch_size=5000,
        )
        by_partition.update((row[0], row[1]) for row in session.execute(select, (day, bucket)))
    by_device: set[tuple[uuid.UUID, int]] = set()
    for device in device_ids:
        select = SimpleStatement(
            f"SELECT toUnixTimestamp(ts) FROM {keyspace}.readings_by_device WHERE device_id = %s AND day = %s",
            fetch_size=5000,
        )
        by_device.update((device, row[0]) for row in session.execute(select, (device, day)))
    return by_partition & by_device  # stored means stored in both tables


@contextlib.contextmanager
def driver_session(addresses: list[str], consistency: str) -> Iterator[Any]:
    """A plain driver session for reading back, at the given consistency level."""
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    profile = ExecutionProfile(
        consistency_level=ConsistencyLevel.name_to_value[consistency],
        load_balancing_policy=RoundRobinPolicy(),
        request_timeout=60,
    )
    cluster = Cluster(addresses, execution_profiles={EXEC_PROFILE_DEFAULT: profile}, protocol_version=4)
    session = cluster.connect()
    try:
        yield session
    finally:
        cluster.shutdown()

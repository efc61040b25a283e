"""Shared fixtures: settings for a test keyspace, and a real Cassandra session (never a mock of one)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from readings_service.config import Settings, load_settings

# Shared 2-core machines make wall-clock deadlines flaky; properties are about results, not speed.
# scripts/test, what CI runs, selects the "ci" profile: every property runs its full number of examples.
# Elsewhere (scripts/check, a bare pytest) "dev" runs an eighth of them, so the unit suite stays a loop of seconds.
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "dev")
hypothesis_settings.register_profile(
    "ci",
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
hypothesis_settings.register_profile("dev", hypothesis_settings.get_profile("ci"), max_examples=12)
hypothesis_settings.load_profile(HYPOTHESIS_PROFILE)


def examples(ci: int) -> int:
    """A property's number of examples: `ci` under the ci profile, an eighth of it (at least 10) otherwise."""
    return ci if HYPOTHESIS_PROFILE == "ci" else max(10, ci // 8)


ROOT = Path(__file__).resolve().parent.parent
# Every keyspace a run creates ends with the run's id, so runs sharing a node never collide; the session's
# teardown drops them all.
RUN_ID = uuid.uuid4().hex[:8]


def run_keyspace(name: str) -> str:
    """`name` made unique to this test run."""
    return f"{name}_{RUN_ID}"


TEST_KEYSPACE = run_keyspace("readings_test")
# The variables that point the tests at another cluster; every other READINGS_* variable is ignored, except
# READINGS_QUERY_NATIVE, which picks the range-query path the tests run on (scripts/test runs the query tests
# on both).
CLUSTER_VARIABLES = ("READINGS_CASSANDRA_CONTACT_POINTS", "READINGS_CASSANDRA_PORT", "READINGS_CASSANDRA_LOCAL_DC")
QUERY_PATH_VARIABLE = "READINGS_QUERY_NATIVE"


def cluster_environment() -> dict[str, str]:
    """The CLUSTER_VARIABLES that are set."""
    return {name: os.environ[name] for name in CLUSTER_VARIABLES if name in os.environ}


def query_path_environment() -> dict[str, str]:
    """READINGS_QUERY_NATIVE if it is set."""
    return {name: os.environ[name] for name in (QUERY_PATH_VARIABLE,) if name in os.environ}


def settings_for(keyspace: str = TEST_KEYSPACE, **sections: dict[str, Any]) -> Settings:
    """The project's config.toml and the cluster variables, pointed at a test keyspace, with per-section field
    overrides.

    Authentication is off unless `auth` overrides say otherwise: only the auth tests exercise it.
    """
    base = load_settings(ROOT / "config.toml", cluster_environment() | query_path_environment())
    sections["auth"] = {"required": False} | sections.get("auth", {})
    cassandra = dataclasses.replace(base.cassandra, keyspace=keyspace, **sections.pop("cassandra", {}))
    replaced = {name: dataclasses.replace(getattr(base, name), **fields) for name, fields in sections.items()}
    return dataclasses.replace(base, cassandra=cassandra, **replaced)


@pytest.fixture(scope="session")
def cassandra_session() -> Iterator[Any]:
    """A driver session on the local node the test command started; fails (never skips) if there is none."""
    from readings_service.store.cassandra import connect

    settings = settings_for()
    try:
        cluster, session = connect(settings.cassandra)
    except Exception as error:
        where = f"{', '.join(settings.cassandra.contact_points)} port {settings.cassandra.port}"
        pytest.fail(f"no Cassandra at {where}: {error} (run scripts/cassandra ensure)")
    yield session
    try:
        for row in session.execute("SELECT keyspace_name FROM system_schema.keyspaces"):
            if row[0].endswith(f"_{RUN_ID}"):
                session.execute(f"DROP KEYSPACE IF EXISTS {row[0]}", timeout=120)
    finally:
        cluster.shutdown()


def fresh_keyspace(session: Any, settings: Settings) -> None:
    """Drop the keyspace and apply the schema again, so a test starts from nothing."""
    from readings_service.store.schema import apply_schema

    session.execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra.keyspace}", timeout=120)
    apply_schema(session, settings.cassandra, settings.storage.buckets)


@pytest.fixture(scope="session")
def store_settings() -> Settings:
    """Settings of the shared storage keyspace: small pages so that tests cross page boundaries."""
    return settings_for(cassandra={"fetch_size": 7})


@pytest.fixture(scope="session")
def shared_keyspace(cassandra_session: Any, store_settings: Settings) -> Settings:
    fresh_keyspace(cassandra_session, store_settings)
    return store_settings


@pytest.fixture
def truncate(cassandra_session: Any, shared_keyspace: Settings) -> Callable[[], None]:
    """Empty every readings table of the shared keyspace."""

    def run() -> None:
        keyspace = shared_keyspace.cassandra.keyspace
        for table in ("readings", "readings_by_device", "device_latest_day"):
            cassandra_session.execute(f"TRUNCATE {keyspace}.{table}", timeout=120)

    return run


@pytest.fixture(scope="session")
def raw_session(cassandra_session: Any) -> Any:
    """A second session on the same cluster whose scans return raw pages (store.raw_pages)."""
    from readings_service.store.raw_pages import open_raw_session

    return open_raw_session(cassandra_session.cluster)


def make_store(cassandra_session: Any, raw_session: Any, settings: Settings, native: bool | None = None) -> Any:
    """The store serve would open for `settings`: with raw pages when the compiled path may serve (or `native`
    says so)."""
    from readings_service.query_path import wants_raw_pages
    from readings_service.store.cassandra import CassandraStore, RawPageCassandraStore

    args = (settings.cassandra, settings.ingest, settings.storage.buckets)
    if native if native is not None else wants_raw_pages(settings.query):
        return RawPageCassandraStore(cassandra_session, raw_session, *args)
    return CassandraStore(cassandra_session, *args)


@pytest.fixture
def store(cassandra_session: Any, raw_session: Any, shared_keyspace: Settings, truncate: Callable[[], None]) -> Any:
    """The store on the emptied shared keyspace (with raw pages unless the pure-Python path is chosen)."""
    truncate()
    return make_store(cassandra_session, raw_session, shared_keyspace)


def opener_of(store: Any) -> Callable[[Settings], contextlib.AbstractAsyncContextManager[Any]]:
    @contextlib.asynccontextmanager
    async def open_store(settings: Settings) -> AsyncIterator[Any]:
        yield store

    return open_store


class PeakAllocation:
    """The peak of the bytes allocated, by any thread, inside a `with` block (traced by tracemalloc)."""

    allocated = 0

    def __enter__(self) -> PeakAllocation:
        tracemalloc.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.allocated = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Any], store: Any, shared_keyspace: Settings
) -> TestClient[web.Request, web.Application]:
    """An HTTP client of the app on the real store."""
    from readings_service.api.app import create_app

    return await aiohttp_client(create_app(shared_keyspace, opener_of(store)))  # type: ignore[no-any-return]


def env_without_readings() -> dict[str, str]:
    """The environment minus READINGS_* variables other than the cluster and query path ones, for subprocess
    tests."""
    return (
        {k: v for k, v in os.environ.items() if not k.startswith("READINGS_")}
        | cluster_environment()
        | query_path_environment()
    )


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, text: bool = True, **options: Any
) -> subprocess.CompletedProcess[Any]:
    """`python -m readings_service ARGS` in a subprocess, on the tests' cluster variables plus `env`."""
    return subprocess.run(
        [sys.executable, "-m", "readings_service", *args],
        cwd=cwd,
        env=env_without_readings() | (env or {}),
        capture_output=True,
        text=text,
        timeout=120,
        check=False,
        **options,
    )


class MemoryTokens:
    """A TokenStore in a dict, for HTTP-layer unit tests (the Cassandra one is tested against the real node)."""

    def __init__(self) -> None:
        self.records: dict[str, Any] = {}

    async def tokens(self) -> list[Any]:
        return list(self.records.values())

    async def add(self, record: Any) -> bool:
        return self.records.setdefault(record.name, record) is record

    async def revoke(self, name: str) -> bool:
        return self.records.pop(name, None) is not None

    def opener(self) -> Callable[[Settings], contextlib.AbstractAsyncContextManager[Any]]:
        @contextlib.asynccontextmanager
        async def open_tokens(settings: Settings) -> AsyncIterator[Any]:
            yield self

        return open_tokens

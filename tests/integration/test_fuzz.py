"""Schemathesis against a live `serve` process on the real node: every answer conforms to /openapi.json, and
none is a 5xx.

The service runs as `readings-service serve` (the server, middlewares and parser hook of production) with
authentication on, as it runs by default, and the fuzzer holds an admin token: every operation is reached past
authentication, and the answers without a token (401) are checked too. Generation is seeded, so a run is
repeatable; `READINGS_FUZZ_SEED` and `READINGS_FUZZ_EXAMPLES` explore further. Its configuration is
schemathesis.toml beside this file, its hooks fuzz_hooks.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from readings_service.api.openapi import EXAMPLE_READING
from tests.conftest import ROOT, fresh_keyspace, run_keyspace, settings_for
from tests.faults.harness import Service

KEYSPACE = run_keyspace("readings_test_fuzz")
SEED = int(os.environ.get("READINGS_FUZZ_SEED", "20261203"))
# Per operation; operations with few distinct inputs run fewer. 450 gives about 2,300 requests in all.
EXAMPLES = int(os.environ.get("READINGS_FUZZ_EXAMPLES", "450"))
MIN_REQUESTS = 2000
CONFIG = Path(__file__).with_name("schemathesis.toml")
TOKEN_NAME = "fuzz-admin"
# Every check that holds for this API. Left out: positive_data_acceptance, as a range that satisfies the schema can
# still be refused (start after end, longer than max_range_days, a reading too far in the future), and the
# stateful use_after_free / ensure_resource_availability, which need links the document does not declare.
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
        "ignored_auth",
    ]
)


@pytest.fixture(scope="module")
def live(cassandra_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str]]:
    """A `serve` process on its own keyspace with authentication on, and an admin token for it."""
    fresh_keyspace(cassandra_session, settings_for(KEYSPACE))
    contact = ",".join(settings_for().cassandra.contact_points)
    service = Service(
        tmp_path_factory.mktemp("fuzz"),
        cassandra_keyspace=KEYSPACE,
        cassandra_contact_points=contact,
        auth_required="true",
        http_shutdown_timeout_s="2",
        http_cors_origins="https://dashboard.example.com",
    )
    token = service.cli("token", "create", "--scope", "admin", "--name", TOKEN_NAME).strip()
    with service:
        # Readings of the documented example device, so its operations also answer 200 with data.
        body = b"".join(
            orjson.dumps(EXAMPLE_READING | {"ts": 1_767_322_800_000 + i * 60_000}) + b"\n" for i in range(50)
        )
        request = urllib.request.Request(
            f"{service.url}/readings",
            data=body,
            method="POST",
            headers={"Content-Type": "application/x-ndjson", "Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert 200 == response.status
        yield service, token


def test_fuzz_conforms(live: tuple[Service, str], tmp_path: Path) -> None:
    """At least MIN_REQUESTS generated requests, every one answered as the document says, no 5xx."""
    service, token = live
    report = tmp_path / "events.ndjson"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{service.url}/openapi.json",
        "--checks",
        CHECKS,
        "--header",
        f"Authorization: Bearer {token}",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "2",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
        "--request-timeout",
        "10",
    ]
    env = os.environ | {
        "SCHEMATHESIS_HOOKS": "tests.integration.fuzz_hooks",
        "PYTHONPATH": str(ROOT),
        "READINGS_FUZZ_KEEP_TOKEN": TOKEN_NAME,
    }
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    requests = count_requests(report)
    print(f"schemathesis: {requests} requests in {elapsed:.1f} s (seed {SEED})\n{output[-3000:]}")
    assert 0 == done.returncode, f"{output}\nservice log:\n{service.log()[-5000:]}"
    assert requests >= MIN_REQUESTS
    assert "Traceback" not in service.log()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /readings?start=" + b"1" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"POST /readings HTTP/1.1\r\nHost: x\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n{}", 415),
    ],
)
def test_serve_answers_parser_errors_as_problems(live: tuple[Service, str], raw: bytes, status: int) -> None:
    """The serve command runs the server whose parser errors are problem+json (test_http_protocol has the rest)."""
    service, _ = live
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert f" {status} ".encode() in head.split(b"\r\n")[0], head  # HTTP/1.0: the request's version is unknown
    assert b"content-type: application/problem+json" in head.lower()
    assert status == orjson.loads(body)["status"]


def count_requests(report: Path) -> int:
    """HTTP requests the run sent, counted from its NDJSON event log."""
    if not report.exists():
        return 0
    total = 0
    for line in report.read_bytes().splitlines():
        event = orjson.loads(line)
        total += len(event.get("ScenarioFinished", {}).get("recorder", {}).get("interactions", {}))
    return total

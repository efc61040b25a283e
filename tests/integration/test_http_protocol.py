"""Every error is problem+json, also those aiohttp's parser raises before any middleware, and CORS: on the app
served exactly as `serve` serves it, on a real port, over raw sockets where a client library would refuse."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import logging
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from readings_service.api.app import create_app
from readings_service.api.server import MAX_HEADER_FIELD, MAX_REQUEST_LINE, ProblemAppRunner
from readings_service.config import Settings
from tests.conftest import opener_of

PROBLEM_JSON = "application/problem+json"
ORIGIN = "https://dashboard.example.com"
DEVICE = "0191b2f4-65a3-7c3e-8a1b-2f6c1f0e9d42"
READING = {"device_id": DEVICE, "ts": "2026-01-02T03:04:05.000Z", "temperature": 20.5, "pressure": 1000.0}


@dataclasses.dataclass
class Served:
    port: int
    url: str


@pytest.fixture
async def served(store: Any, shared_keyspace: Settings) -> AsyncIterator[Served]:
    """The app on a real port through the runner `serve` uses, CORS on for ORIGIN."""
    http = dataclasses.replace(shared_keyspace.http, cors_origins=(ORIGIN,))
    runner = ProblemAppRunner(
        create_app(dataclasses.replace(shared_keyspace, http=http), opener_of(store)), access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Served(port, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


async def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer (the server closes): status, headers (lower-case names), body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:] if line)
            headers = {name.lower(): value for name, value in headers.items()}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
    finally:
        writer.close()
    return int(lines[0].split()[1]), headers, body


def problem_of(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers["content-type"].startswith(PROBLEM_JSON)
    document: dict[str, Any] = orjson.loads(body)
    assert {"type", "title", "status", "detail"} <= document.keys()
    return document


class TestParserErrors:
    async def test_long_request_line_is_414(self, served: Served, caplog: pytest.LogCaptureFixture) -> None:
        """A request target over 8 KiB: 414 problem+json, logged as one line without a traceback."""
        caplog.set_level(logging.INFO)
        target = "/readings?start=" + "1" * (MAX_REQUEST_LINE + 10)
        status, headers, body = await exchange(served.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert 414 == status
        assert 414 == problem_of(headers, body)["status"]
        assert not [r for r in caplog.records if r.exc_info]

    async def test_huge_header_is_431(self, served: Served) -> None:
        """One header line over the limit: 431 problem+json."""
        raw = f"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * (MAX_HEADER_FIELD + 10)}\r\n\r\n".encode()
        status, headers, body = await exchange(served.port, raw)
        assert (431, 431) == (status, problem_of(headers, body)["status"])

    async def test_too_many_headers_is_431(self, served: Served) -> None:
        raw = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(200)) + b"\r\n"
        status, headers, body = await exchange(served.port, raw)
        assert (431, 431) == (status, problem_of(headers, body)["status"])

    @pytest.mark.parametrize(
        "raw",
        [
            b"\x00\x01 nonsense\r\n\r\n",
            b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
            b"GET /readings?start=\xff HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /readings HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcde",
        ],
    )
    async def test_malformed_request_is_400(self, served: Served, raw: bytes) -> None:
        status, headers, body = await exchange(served.port, raw)
        assert (400, 400) == (status, problem_of(headers, body)["status"])


class TestContentEncoding:
    @pytest.mark.parametrize("encoding", ["br", "zstd", "garbage", "gzip, gzip", "x-gzip"])
    async def test_unsupported_is_415(self, served: Served, encoding: str) -> None:
        """Refused before the body is read, naming the encoding and listing those supported, also in
        Accept-Encoding."""
        raw = (
            f"POST /readings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: "
            f"{encoding}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        ).encode()
        status, headers, body = await exchange(served.port, raw)
        problem = problem_of(headers, body)
        assert (415, 415) == (status, problem["status"])
        assert encoding in problem["detail"]
        assert ["gzip", "deflate", "identity"] == problem["supported"]
        assert "gzip, deflate, identity" == headers["accept-encoding"]

    async def test_bad_gzip_is_400_without_traceback(self, served: Served, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                served.url + "/readings",
                data=b"\x1f\x8b\x08\x00 not gzip at all" * 10,
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            ) as response,
        ):
            assert 400 == response.status
            assert 400 == (await response.json(content_type=PROBLEM_JSON))["status"]
        assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]

    @pytest.mark.parametrize(
        ("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress), ("identity", bytes)]
    )
    async def test_supported_are_decoded(self, served: Served, encoding: str, compress: Any) -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                served.url + "/readings",
                data=compress(orjson.dumps(READING)),
                headers={"Content-Type": "application/json", "Content-Encoding": encoding},
            ) as response,
        ):
            assert (200, {"accepted": 1}) == (response.status, await response.json())


class TestRouting:
    async def test_405_has_allow(self, served: Served) -> None:
        async with aiohttp.ClientSession() as http, http.put(served.url + "/readings") as response:
            assert 405 == response.status
            assert {"GET", "HEAD", "POST"} == {m.strip() for m in response.headers["Allow"].split(",")}
            problem = await response.json(content_type=PROBLEM_JSON)
            assert ["GET", "HEAD", "POST"] == problem["allowed"]

    async def test_404_is_a_problem(self, served: Served) -> None:
        async with aiohttp.ClientSession() as http, http.get(served.url + "/nowhere") as response:
            assert 404 == response.status
            assert 404 == (await response.json(content_type=PROBLEM_JSON))["status"]


class TestCors:
    async def test_preflight_from_an_allowed_origin(self, served: Served) -> None:
        """204 with the methods of the path and the headers a client sends; nothing is run."""
        headers = {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, content-encoding",
        }
        async with aiohttp.ClientSession() as http, http.options(served.url + "/readings", headers=headers) as response:
            assert 204 == response.status
            assert ORIGIN == response.headers["Access-Control-Allow-Origin"]
            assert "GET, HEAD, POST" == response.headers["Access-Control-Allow-Methods"]
            assert "Authorization, Content-Type, Content-Encoding" == response.headers["Access-Control-Allow-Headers"]
            assert "600" == response.headers["Access-Control-Max-Age"]
            assert "Access-Control-Allow-Credentials" not in response.headers

    async def test_preflight_from_another_origin(self, served: Served) -> None:
        """No CORS header at all: OPTIONS is no method of the path, so 405 with Allow."""
        headers = {"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"}
        async with aiohttp.ClientSession() as http, http.options(served.url + "/readings", headers=headers) as response:
            assert 405 == response.status
            assert not [name for name in response.headers if name.lower().startswith("access-control-")]

    @pytest.mark.parametrize("path", ["/health", "/readings?start=x", f"/devices/{DEVICE}/readings?start=0&end=1"])
    async def test_responses_to_an_allowed_origin(self, served: Served, path: str) -> None:
        """Answers, errors and streams alike carry the origin and the headers a page may read."""
        async with aiohttp.ClientSession() as http, http.get(served.url + path, headers={"Origin": ORIGIN}) as response:
            await response.read()
            assert ORIGIN == response.headers["Access-Control-Allow-Origin"]
            assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
            assert "Origin" in response.headers["Vary"]

    async def test_responses_to_another_origin(self, served: Served) -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.get(served.url + "/health", headers={"Origin": "https://evil.example.com"}) as r,
        ):
            assert 200 == r.status
            assert not [name for name in r.headers if name.lower().startswith("access-control-")]
            assert "Origin" in r.headers["Vary"]

    async def test_off_by_default(self, aiohttp_client: Any, store: Any, shared_keyspace: Settings) -> None:
        """With no origin configured, nothing CORS: no header, no Vary, OPTIONS is a 405."""
        assert () == shared_keyspace.http.cors_origins
        client = await aiohttp_client(create_app(shared_keyspace, opener_of(store)))
        response = await client.options("/readings", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
        assert 405 == response.status
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Vary" not in (await client.get("/health", headers={"Origin": ORIGIN})).headers

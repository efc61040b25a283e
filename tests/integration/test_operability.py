"""Metrics and the access log, on the real node: values move as requests are made; the log line says what happened."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
import pytest

from readings_service.api.access_log import format_line
from readings_service.metrics import REGISTRY

DEVICE = uuid.UUID("0191b2f4-65a3-7c3e-8a1b-2f6c1f0e9d42")
DAY = {"start": "2026-11-20T00:00:00Z", "end": "2026-11-21T00:00:00Z"}


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def readings(count: int) -> bytes:
    return b"".join(
        orjson.dumps(
            {"device_id": str(DEVICE), "ts": 1_795_132_800_000 + i * 1000, "temperature": 20.0, "pressure": 1000.0},
            option=orjson.OPT_APPEND_NEWLINE,
        )
        for i in range(count)
    )


class TestMetrics:
    async def test_values_move_with_requests(self, client: Any) -> None:
        """Ingest, a stream and an error each move their counters by exactly what they did."""
        before = {
            "posts": sample("readings_http_requests_total", route="/readings", method="POST", status="200"),
            "accepted": sample("readings_ingested_total", outcome="accepted"),
            "rejected": sample("readings_ingested_total", outcome="rejected"),
            "rows": sample("readings_streamed_rows_total"),
            "bytes": sample("readings_streamed_bytes_total"),
            "writes": sample("readings_cassandra_requests_total", kind="write"),
            "scans": sample("readings_cassandra_requests_total", kind="scan"),
            "bad": sample("readings_http_requests_total", route="/readings", method="GET", status="400"),
            "unmatched": sample("readings_http_requests_total", route="unmatched", method="GET", status="404"),
            "partition": sum(
                sample("readings_partition_rows_written_total", day="older", bucket=str(b)) for b in range(16)
            ),
        }
        response = await client.post("/readings", data=readings(30), headers={"Content-Type": "application/x-ndjson"})
        assert 200 == response.status
        bad = b'{"device_id": "nope", "ts": 1, "temperature": 1, "pressure": 1}\n' + readings(2)
        partial = await client.post(
            "/readings?partial=true", data=bad, headers={"Content-Type": "application/x-ndjson"}
        )
        assert 207 == partial.status
        stream = await client.get("/readings", params=DAY)
        body = await stream.read()
        assert 400 == (await client.get("/readings")).status
        assert 404 == (await client.get("/nowhere")).status
        assert before["posts"] + 1 == sample(
            "readings_http_requests_total", route="/readings", method="POST", status="200"
        )
        assert before["accepted"] + 32 == sample("readings_ingested_total", outcome="accepted")
        assert before["rejected"] + 1 == sample("readings_ingested_total", outcome="rejected")
        assert before["rows"] + 30 == sample("readings_streamed_rows_total")
        assert before["bytes"] + len(body) == sample("readings_streamed_bytes_total")
        assert sample("readings_cassandra_requests_total", kind="write") > before["writes"]
        assert sample("readings_cassandra_requests_total", kind="scan") >= before["scans"] + 16
        assert before["bad"] + 1 == sample(
            "readings_http_requests_total", route="/readings", method="GET", status="400"
        )
        assert before["unmatched"] + 1 == sample(
            "readings_http_requests_total", route="unmatched", method="GET", status="404"
        )
        partition = sum(sample("readings_partition_rows_written_total", day="older", bucket=str(b)) for b in range(16))
        assert before["partition"] + 32 == partition
        active = (await (await client.get("/health")).json())["query_path"]
        assert {path: float(path == active) for path in ("native", "python")} == {
            path: sample("readings_query_path", path=path) for path in ("native", "python")
        }

    async def test_exposition(self, client: Any) -> None:
        """/metrics answers the Prometheus text format, with the request histogram and the Cassandra latencies."""
        await client.get("/ready")
        response = await client.get("/metrics")
        assert 200 == response.status
        assert response.content_type == "text/plain"
        text = await response.text()
        assert 'readings_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/ready"}' in text
        assert 'readings_cassandra_request_duration_seconds_count{kind="ping"}' in text


class TestAccessLog:
    async def test_one_line_per_request(self, client: Any, caplog: pytest.LogCaptureFixture) -> None:
        """Each request logs one line with method, route, status, bytes, duration and rows for streams."""
        await client.post("/readings", data=readings(3), headers={"Content-Type": "application/x-ndjson"})
        with caplog.at_level(logging.INFO, logger="readings_service.access"):
            stream = await client.get("/readings", params=DAY)
            body = await stream.read()
            await client.get("/readings", params={"start": "yesterday"})
        lines = [r.getMessage() for r in caplog.records if r.name == "readings_service.access"]
        assert 2 == len(lines)
        for part in ("method=GET", "route=/readings", "status=200", f"bytes={len(body)}", "rows=3", "duration_ms="):
            assert part in lines[0]
        assert "status=400" in lines[1]
        assert "rows=" not in lines[1]

    def test_json_style(self) -> None:
        """The JSON style is one object per line; empty fields stay in it as null, nothing is dropped."""
        fields = {"method": "GET", "status": 200, "rows": None}
        assert {"method": "GET", "status": 200, "rows": None} == orjson.loads(format_line(fields, "json"))
        assert "method=GET status=200" == format_line(fields, "text")

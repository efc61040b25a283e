"""The process's Prometheus metrics: what operators and the fault tests watch.

Every label has a small, fixed set of values, so the number of series stays bounded whatever the traffic:
routes are the app's route templates (or "unmatched"), methods and statuses are HTTP's, Cassandra request kinds
are the store's five, error labels are driver exception class names, and the partition view labels days
relative to today (4 values) times the configured bucket count.
"""

from __future__ import annotations

import asyncio
import datetime

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "readings_http_requests", "HTTP requests by route template, method and status", ["route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "readings_http_request_duration_seconds",
    "Time from request to the end of the response (streams: the last byte)",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
READINGS_INGESTED = Counter("readings_ingested", "Readings in POST /readings bodies, by outcome", ["outcome"])
ROWS_STREAMED = Counter("readings_streamed_rows", "Readings sent in NDJSON streams")
BYTES_STREAMED = Counter("readings_streamed_bytes", "NDJSON bytes sent in streams")
STREAMS_OPEN = Gauge("readings_streams_open", "NDJSON streams being sent right now")
CASSANDRA_REQUESTS = Counter("readings_cassandra_requests", "Requests sent to Cassandra, by kind", ["kind"])
CASSANDRA_DURATION = Histogram(
    "readings_cassandra_request_duration_seconds",
    "Time until Cassandra answered one request (one page for scans)",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
)
CASSANDRA_ERRORS = Counter(
    "readings_cassandra_errors", "Failed Cassandra requests, by kind and error type", ["kind", "error"]
)
PAGES_REQUESTED = Counter("readings_cassandra_pages_requested", "Pages of partition scans requested from Cassandra")
REQUESTS_SHED = Counter(
    "readings_requests_shed", "Requests answered 503 because this process was at its limit", ["kind"]
)
QUERY_PATH = Gauge("readings_query_path", "The range-query path serving requests (1 = active)", ["path"])
PARTITION_ROWS = Counter(
    "readings_partition_rows_written",
    "Rows written to the readings table per (day relative to today, bucket): partition skew",
    ["day", "bucket"],
)

CASSANDRA_KINDS = ("write", "scan", "device_scan", "latest", "ping")
for _kind in ("ingest", "stream"):
    REQUESTS_SHED.labels(_kind)
for _outcome in ("accepted", "rejected"):
    READINGS_INGESTED.labels(_outcome)
for _kind in CASSANDRA_KINDS:
    CASSANDRA_REQUESTS.labels(_kind)
QUERY_PATH.labels("python").set(1)
AUTH_REJECTED = Counter(
    "readings_auth_rejected",
    "Requests refused for want of a valid token (missing, invalid) or of its scope (scope)",
    ["reason"],
)
for _reason in ("missing", "invalid", "scope"):
    AUTH_REJECTED.labels(_reason)


def relative_day(day: datetime.date, today: datetime.date) -> str:
    """The partition view's day label: today, yesterday, older or future (a bounded set)."""
    if day == today:
        return "today"
    if day > today:
        return "future"
    return "yesterday" if day == today - datetime.timedelta(days=1) else "older"


def _tasks() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # collected outside the event loop
        return 0


EVENT_LOOP_TASKS = Gauge("readings_event_loop_tasks", "asyncio tasks alive in the serving event loop")
EVENT_LOOP_TASKS.set_function(_tasks)
EVENT_LOOP_STALL = Histogram(
    "readings_event_loop_stall_seconds",
    "How late the event loop woke a periodic timer: how long some work held the loop",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)

__all__ = [
    "AUTH_REJECTED",
    "BYTES_STREAMED",
    "CASSANDRA_DURATION",
    "CASSANDRA_ERRORS",
    "CASSANDRA_REQUESTS",
    "EVENT_LOOP_STALL",
    "EVENT_LOOP_TASKS",
    "HTTP_DURATION",
    "HTTP_REQUESTS",
    "PAGES_REQUESTED",
    "PARTITION_ROWS",
    "QUERY_PATH",
    "READINGS_INGESTED",
    "REGISTRY",
    "REQUESTS_SHED",
    "ROWS_STREAMED",
    "STREAMS_OPEN",
    "relative_day",
]

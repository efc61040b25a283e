"""The process's Prometheus metrics: what operators and the fault tests watch.

Every label has a small, fixed set of values, so the number of series stays bounded whatever the traffic.
"""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY, Counter, Gauge

STREAMS_OPEN = Gauge("readings_streams_open", "NDJSON streams being sent right now")
PAGES_REQUESTED = Counter("readings_cassandra_pages_requested", "Pages of partition scans requested from Cassandra")
REQUESTS_SHED = Counter("readings_requests_shed", "Requests answered 503 because this process was at its limit",
                        ["kind"])
for _kind in ("ingest", "stream"):
    REQUESTS_SHED.labels(_kind)


def _tasks() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # collected outside the event loop
        return 0


EVENT_LOOP_TASKS = Gauge("readings_event_loop_tasks", "asyncio tasks alive in the serving event loop")
EVENT_LOOP_TASKS.set_function(_tasks)

__all__ = ["EVENT_LOOP_TASKS", "PAGES_REQUESTED", "REGISTRY", "REQUESTS_SHED", "STREAMS_OPEN"]

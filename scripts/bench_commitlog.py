"""What durability costs: ingest per commit-log mode, each on a fresh local node, modes interleaved in one run.

    scripts/bench-commitlog [--runs 2] [--rows 100000] [--out BENCHMARKS.md]

For each run and each mode (periodic, group, batch) a new node is started on 127.0.0.31 with that mode, and the
same readings are written through the service's write path alone (CassandraStore.write, 8 batches of 500 in
flight) and over HTTP (a `readings-service serve` process, 8 clients). The medians go into BENCHMARKS.md between
the commit-log markers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from bench import FIRST_DAY, ROOT, ingest_driver, ingest_service, readings_for_day, service_process

from readings_service.config import load_settings
from readings_service.store.cassandra import CassandraStore, connect
from readings_service.store.schema import apply_schema

MODES = ("periodic", "group", "batch")
BASE = 31
BEGIN, END = "<!-- commit-log modes: begin -->", "<!-- commit-log modes: end -->"


def node(action: str, mode: str, state: Path) -> None:
    env = os.environ | {"CASSANDRA_STATE": str(state), "CASSANDRA_COMMITLOG_SYNC": mode}
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cassandra"), action, "--base", str(BASE)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


async def measure(mode: str, rows: int, run: int) -> tuple[float, float]:
    base = load_settings(ROOT / "config.toml", {})
    settings = replace(
        base, cassandra=replace(base.cassandra, contact_points=(f"127.0.0.{BASE}",), keyspace="bench_commitlog")
    )
    cluster, session = connect(settings.cassandra)
    try:
        apply_schema(session, settings.cassandra, settings.storage.buckets)
        store = CassandraStore(session, settings.cassandra, settings.ingest, settings.storage.buckets)
        day = FIRST_DAY + 200 + run * 2
        batches = _batches(readings_for_day(day, rows, 1000))
        alone = await ingest_driver(store, batches, 8)
        with service_process(settings) as (url, _pid):
            http, _ = await ingest_service(url, _batches(readings_for_day(day + 1, rows, 1000)), 8)
    finally:
        cluster.shutdown()
    return alone, http


def _batches(readings: list) -> list:  # type: ignore[type-arg]
    return [readings[i : i + 500] for i in range(0, len(readings), 500)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    figures: dict[str, dict[str, list[float]]] = {m: {"alone": [], "http": []} for m in MODES}
    for run in range(args.runs):
        for mode in MODES:
            with tempfile.TemporaryDirectory(prefix=f"commitlog-{mode}-") as state:
                node("start", mode, Path(state))
                try:
                    alone, http = asyncio.run(measure(mode, args.rows, run))
                finally:
                    node("wipe", mode, Path(state))
            figures[mode]["alone"].append(alone)
            figures[mode]["http"].append(http)
            print(
                f"bench-commitlog: run {run + 1} {mode}: write path {alone:,.0f}/s, HTTP {http:,.0f}/s",
                file=sys.stderr,
                flush=True,
            )
    lines = [
        BEGIN,
        "",
        f"`scripts/bench-commitlog --runs {args.runs} --rows {args.rows}`: a fresh node per mode and run, modes "
        "interleaved, readings/s (median; all runs in brackets).",
        "",
        "| commit-log mode | durable on kill -9 | write path alone | over HTTP | HTTP vs periodic |",
        "|---|---|---|---|---|",
    ]
    periodic_http = statistics.median(figures["periodic"]["http"])
    for mode in MODES:
        alone, http = figures[mode]["alone"], figures[mode]["http"]
        lines.append(
            f"| {mode}{' (default)' if mode == 'batch' else ''} | {'no' if mode == 'periodic' else 'yes'} | "
            f"{statistics.median(alone):,.0f} ({', '.join(f'{v:,.0f}' for v in alone)}) | "
            f"{statistics.median(http):,.0f} ({', '.join(f'{v:,.0f}' for v in http)}) | "
            f"{statistics.median(http) / periodic_http:.2f}x |"
        )
    lines += ["", END]
    table = "\n".join(lines)
    text = args.out.read_text() if args.out.exists() else ""
    if BEGIN in text:
        text = text.split(BEGIN)[0] + table + text.split(END, 1)[1]
    else:
        text += "\n## Commit-log modes: the price of durability\n\n" + table + "\n"
    args.out.write_text(text)
    print(table)


if __name__ == "__main__":
    main()

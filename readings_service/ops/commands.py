"""The ops commands of the command line: `generate`, `load` and `verify` (arguments, running, summaries)."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import sys
import time
from pathlib import Path
from typing import BinaryIO, TextIO

from readings_service.config import Settings
from readings_service.core.ndjson import encode_line
from readings_service.core.timestamps import TimestampError, parse_time_text
from readings_service.errors import ServiceError
from readings_service.ops import generate as generation
from readings_service.ops import sources
from readings_service.ops.checkpoint import CheckpointError
from readings_service.ops.load import LoadError, LoadOptions, LoadResult, default_rejects_path, load
from readings_service.ops.progress import progress_for
from readings_service.ops.tokens import add_token_parser
from readings_service.ops.verify import Mismatch, VerifyCounts, verify

# The driver (cassandra_store) and aiohttp's client (http_sink) are imported by the commands that use them.


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `generate`, `load`, `verify` and `token` subcommands."""
    add_generate_parser(commands)
    add_load_parser(commands)
    add_verify_parser(commands)
    add_token_parser(commands)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def add_generate_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    generate = commands.add_parser(
        "generate",
        help="write synthetic readings (fixtures, load tests)",
        description="Write realistic readings: per device, temperature and pressure are bounded random walks; "
        "device ids mix UUID versions 1, 4 and 7. The output depends only on the arguments.",
    )
    generate.add_argument("--devices", type=_positive, required=True, metavar="N", help="number of devices")
    generate.add_argument(
        "--start", required=True, metavar="TIME", help="first grid point: RFC 3339 with offset, or epoch ms"
    )
    generate.add_argument(
        "--end", required=True, metavar="TIME", help="end of the range (exclusive), same forms as --start"
    )
    generate.add_argument(
        "--interval",
        default="10s",
        metavar="DURATION",
        help="time between a device's readings (default: 10s; units ms, s, m, h, d)",
    )
    generate.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    generate.add_argument(
        "--jitter",
        default="0s",
        metavar="DURATION",
        help="up to this much is added to each reading's time, except on shared timestamps "
        "(default: 0s; shorter than --interval)",
    )
    generate.add_argument(
        "--shared-timestamps",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="fraction of devices reporting exactly on the common grid start + k*interval, so "
        "that they share timestamps; the others keep a fixed random phase (default: 0)",
    )
    generate.add_argument("--format", choices=generation.FORMATS, default="ndjson", help="default: ndjson")
    generate.add_argument(
        "--output",
        "-o",
        default="-",
        metavar="PATH",
        help="file to write, gzip-compressed if it ends in .gz (default: stdout)",
    )


def add_load_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = commands.add_parser(
        "load",
        help="load readings from files into Cassandra (or a running service)",
        description="Validate every reading exactly as POST /readings does and write it through the same store "
        "code. Inputs are read incrementally (memory stays flat for any size). Writes are idempotent "
        "upserts: loading rows again stores them once, so re-running or resuming a load is safe. "
        "Exit status: 0 all rows written; 1 the load stopped (an error, or --strict at a bad row); "
        "3 it finished but rejected rows.",
    )
    load.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="NDJSON, JSON array or CSV (header device_id,ts,temperature,pressure); gzip is detected; - reads stdin",
    )
    load.add_argument(
        "--format",
        choices=sources.FORMATS,
        default="auto",
        help="input format (default: auto, from the first character: [ JSON, { NDJSON, else CSV)",
    )
    load.add_argument("--concurrency", type=_positive, default=4, metavar="N", help="batches in flight (default: 4)")
    load.add_argument(
        "--batch-rows", type=_positive, default=2000, metavar="N", help="readings per batch (default: 2000)"
    )
    load.add_argument("--url", help="post to the service at this base URL instead of writing to Cassandra")
    load.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="with --url: a file holding an API token with the ingest scope (kept out of argv)",
    )
    load.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first bad row, writing nothing of its batch (default: skip bad rows)",
    )
    load.add_argument(
        "--rejects",
        type=Path,
        metavar="PATH",
        help="where skipped rows are listed as NDJSON {file, line, reason, raw} (default: "
        "FILE.rejects.ndjson of the first file, or ./load.rejects.ndjson for stdin)",
    )
    load.add_argument(
        "--skip",
        type=_count,
        default=0,
        metavar="N",
        help="pass over the first N rows (ignored when resuming from --checkpoint)",
    )
    load.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        help="record the position after each acknowledged batch; if PATH exists, continue from it",
    )
    load.add_argument(
        "--log-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between progress lines when stderr is not a terminal (default: 10)",
    )


def add_verify_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = commands.add_parser(
        "verify",
        help="check that every reading of a fixture is stored with the same values",
        description="Read the files like `load` does and compare each reading with what range queries return. "
        "For a (device_id, ts) given twice, the later one is expected, as with the API. Exit status 0 "
        "when every valid reading matches, 1 otherwise.",
    )
    verify.add_argument("files", nargs="+", metavar="FILE", help="the fixture, in any format `load` reads")
    verify.add_argument("--format", choices=sources.FORMATS, default="auto", help="default: auto")
    verify.add_argument(
        "--show",
        type=_count,
        default=20,
        metavar="N",
        help="print the first N mismatches and invalid rows (default: 20)",
    )
    verify.add_argument("--mismatches", type=Path, metavar="PATH", help="write every mismatch to PATH as NDJSON")
    verify.add_argument(
        "--window-rows",
        type=_positive,
        default=250_000,
        metavar="N",
        help="most fixture readings held in memory at once (default: 250000)",
    )
    verify.add_argument(
        "--tmp-dir",
        type=Path,
        metavar="DIR",
        help="where the fixture is spilled, 52 bytes per reading (default: the system's)",
    )


def _time_arg(name: str, raw: str) -> int:
    try:
        return parse_time_text(raw)
    except TimestampError as error:
        raise generation.GenerateError(f"{name} {raw!r}: {error}") from None


def run_generate(args: argparse.Namespace) -> None:
    """Write the plan's readings to stdout or `--output`."""
    try:
        plan = generation.Plan(
            devices=args.devices,
            start_ms=_time_arg("--start", args.start),
            end_ms=_time_arg("--end", args.end),
            interval_ms=generation.parse_duration(args.interval),
            seed=args.seed,
            jitter_ms=generation.parse_duration(args.jitter),
            shared=args.shared_timestamps,
        )
        plan.check()
    except (generation.GenerateError, ServiceError) as error:
        sys.exit(f"readings-service generate: {error}")
    chunks = generation.encode(generation.generate(plan), args.format)
    if args.output == "-":
        try:
            sys.stdout.buffer.writelines(chunks)
            sys.stdout.buffer.flush()
        except BrokenPipeError:  # e.g. `generate ... | head`: the reader has all it wants
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    opener = gzip.open if args.output.endswith(".gz") else open
    try:
        with opener(args.output, "wb") as output:
            output.writelines(chunks)
    except OSError as error:
        sys.exit(f"readings-service generate: {error}")


def run_load(settings: Settings, args: argparse.Namespace) -> int:
    """Load the files, print the summary; the exit status: 0 all written, 1 stopped, 3 rows rejected."""

    options = LoadOptions(
        rejects=args.rejects or default_rejects_path(args.files),
        fmt=args.format,
        batch_rows=args.batch_rows,
        concurrency=args.concurrency,
        strict=args.strict,
        skip=args.skip,
        checkpoint=args.checkpoint,
        timestamps=settings.timestamp_rules(),
    )
    progress = progress_for(sys.stderr, args.log_every)

    async def run() -> LoadResult:
        if args.url:
            from readings_service.ops.http_sink import open_http_sink

            token = args.token_file.read_text().strip() if args.token_file else None
            async with open_http_sink(args.url, settings.cassandra.request_timeout_s * 3, token) as sink:
                return await load(args.files, sink, options, progress)
        from readings_service.store.cassandra import open_store

        async with open_store(settings) as store:
            return await load(args.files, store, options, progress)

    try:
        result = asyncio.run(run())
    except KeyboardInterrupt:
        hint = f"; run the same command to continue from {args.checkpoint}" if args.checkpoint else ""
        print(f"readings-service load: interrupted{hint}", file=sys.stderr)
        return 130
    except (LoadError, CheckpointError, sources.SourceError, OSError) as error:
        sys.exit(f"readings-service load: {error}")
    counts = result.counts
    if result.already_complete:
        print(f"checkpoint {args.checkpoint} records this load as complete; nothing to do")
    else:
        if result.resumed_from is not None:
            print(f"resumed after {result.resumed_from.describe()}" + (" (--skip ignored)" if args.skip else ""))
        print(
            f"read {counts.rows_read:,} rows ({counts.skipped:,} skipped), wrote {counts.written:,}, "
            f"rejected {counts.rejected:,} in {counts.elapsed_s:.1f} s: {counts.rows_per_s:,.0f} rows/s"
        )
    if result.rejects_path is not None and result.rejected_in_all:
        print(f"rejected rows are listed in {result.rejects_path}")
    if result.stopped_at is not None:
        print(f"stopped at {result.stopped_at.describe()}; nothing of its batch was written", file=sys.stderr)
        return 1
    return 3 if result.rejected_in_all else 0


def run_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Compare the files with the store, print mismatches and the summary; exit status 0 when all match."""
    from readings_service.store.cassandra import open_store

    shown = {"mismatch": 0, "invalid": 0}

    def show(kind: str, text: str, stream: TextIO) -> None:
        if shown[kind] < args.show:
            print(text, file=stream)
        shown[kind] += 1

    async def run(mismatches: BinaryIO | None) -> VerifyCounts:
        def on_mismatch(mismatch: Mismatch) -> None:
            show("mismatch", mismatch.describe(), sys.stdout)
            if mismatches is not None:
                mismatches.write(encode_line(mismatch.as_dict()))

        async with open_store(settings) as store:
            return await verify(
                args.files,
                store,
                buckets=settings.storage.buckets,
                on_mismatch=on_mismatch,
                on_invalid=lambda text: show("invalid", f"invalid {text}", sys.stderr),
                fmt=args.format,
                window_rows=args.window_rows,
                timestamps=settings.timestamp_rules(),
                spill_dir=args.tmp_dir,
            )

    started = time.monotonic()
    try:
        if args.mismatches:
            with args.mismatches.open("wb") as mismatches:
                counts = asyncio.run(run(mismatches))
        else:
            counts = asyncio.run(run(None))
    except KeyboardInterrupt:
        print("readings-service verify: interrupted", file=sys.stderr)
        return 130
    except (sources.SourceError, OSError) as error:
        sys.exit(f"readings-service verify: {error}")
    for kind, count in shown.items():
        if count > args.show:
            print(f"... {count - args.show:,} more {kind} lines not shown", file=sys.stderr)
    summary = (
        f"verified {counts.readings:,} readings in {time.monotonic() - started:.1f} s: "
        f"{counts.matched:,} match, {counts.missing:,} missing, {counts.differing:,} differ"
    )
    if counts.invalid:
        summary += f"; {counts.invalid:,} invalid rows in the fixture were not checked"
    if counts.other_stored:
        summary += f"; {counts.other_stored:,} other stored readings in the same time windows"
    print(summary)
    return 0 if counts.ok else 1

"""Command line: parse arguments, load the configuration, run one command."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from readings_service.config import CONFIG_PATH_ENV, ConfigError, LoadedSettings, Settings, config_path, load, render
from readings_service.errors import LayoutMismatch, ServiceError

# The operator tools, imported only when one of them runs: serving never loads them (or rich).
OPS_COMMANDS = {
    "generate": "write synthetic readings (NDJSON, JSON or CSV)",
    "load": "load files of readings into Cassandra",
    "verify": "check that a fixture's readings are stored",
    "token": "manage API tokens (create, list, revoke, init)",
}


def build_parser(with_ops: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="readings-service", description="IoT readings in Cassandra, served over HTTP."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"configuration file (default: ${CONFIG_PATH_ENV}, else ./config.toml if it exists, "
        "else the built-in defaults)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP service")
    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    config_commands.add_parser("show", help="print the effective configuration and where each value came from")
    schema = commands.add_parser("schema", help="manage the Cassandra schema")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True)
    schema_commands.add_parser("apply", help="create keyspace and tables (idempotent), record the bucket count")
    schema_commands.add_parser("check", help="exit non-zero unless the recorded layout matches the configuration")
    if with_ops:
        from readings_service.ops import commands as ops_commands

        ops_commands.add_parsers(commands)
    else:  # listed for --help; their arguments are parsed only when one of them runs, with ops imported
        for name, summary in OPS_COMMANDS.items():
            commands.add_parser(name, help=summary, add_help=False)
    return parser


def _version() -> str:
    try:
        return metadata.version("readings-service")
    except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
        return "unknown"


def config_from(args: argparse.Namespace) -> LoadedSettings:
    return load(config_path(args.config, os.environ), os.environ)


def run_serve(settings: Settings) -> None:
    import asyncio

    from readings_service.api.app import create_app
    from readings_service.api.server import serve
    from readings_service.store.cassandra import open_store
    from readings_service.store.tokens import open_tokens

    app = create_app(settings, open_store, open_tokens)
    try:
        asyncio.run(serve(app, settings.http.host, settings.http.port, settings.http.shutdown_timeout_s))
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        sys.exit(
            f"readings-service: cannot listen on {settings.http.host}:{settings.http.port}: "
            "the address is already in use"
        )


def _kept(retention_days: int) -> str:
    return f"{retention_days} days after their timestamp" if retention_days else "forever"


def run_schema(settings: Settings, action: str) -> None:
    from readings_service.store.cassandra import connect
    from readings_service.store.schema import apply_schema, check_layout

    cluster, session = connect(settings.cassandra)
    try:
        if action == "apply":
            changes = apply_schema(
                session, settings.cassandra, settings.storage.buckets, retention_days=settings.storage.retention_days
            )
            print(f"schema applied to keyspace {settings.cassandra.keyspace} ({settings.storage.buckets} buckets)")
            print(f"readings are kept {_kept(settings.storage.retention_days)}")
            for change in changes:
                print(f"changed {change}")
            if not changes:
                print("no table options changed")
        else:
            check_layout(session, settings.cassandra.keyspace, settings.storage.buckets)
            print(f"keyspace {settings.cassandra.keyspace} matches the configuration")
    finally:
        cluster.shutdown()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `readings-service` command."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(with_ops=bool(OPS_COMMANDS.keys() & set(words))).parse_args(words)
    if args.command in OPS_COMMANDS:
        from readings_service.ops import commands as ops_commands
    if args.command == "generate":  # needs no configuration
        ops_commands.run_generate(args)
        return
    try:
        loaded = config_from(args)
        settings = loaded.settings
        if args.command == "config":
            print(render(loaded), end="")
        elif args.command == "serve":
            run_serve(settings)
        elif args.command == "schema":
            run_schema(settings, args.schema_command)
        elif args.command == "load":
            sys.exit(ops_commands.run_load(settings, args))
        elif args.command == "verify":
            sys.exit(ops_commands.run_verify(settings, args))
        elif args.command == "token":
            from readings_service.ops.tokens import run_token

            sys.exit(run_token(settings, args))
    except ConfigError as error:
        sys.exit(f"readings-service: configuration error: {error}")
    except LayoutMismatch as error:
        sys.exit(f"readings-service: {error}")
    except ServiceError as error:
        sys.exit(f"readings-service: {error.detail}")

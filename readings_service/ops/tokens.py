"""The `token` command: create, list and revoke API tokens in the shared api_tokens table; `init` for a first one."""

from __future__ import annotations

import argparse
import asyncio
import sys

from readings_service.config import Settings
from readings_service.core.tokens import ADMIN, SCOPES, TokenStore, issue
from readings_service.errors import Conflict, NotFound

LOCAL_ADMIN = "local-admin"


def add_token_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser(
        "token",
        help="manage API tokens (create, list, revoke, init)",
        description="Tokens are stored only as SHA-256 hashes in the keyspace's api_tokens table, which every "
        "instance re-reads every auth.refresh_interval_s: a change holds everywhere within seconds. "
        f"Scopes: {', '.join(SCOPES)} (admin grants everything).",
    )
    actions = token.add_subparsers(dest="token_command", required=True)
    create = actions.add_parser("create", help="create a token and print it (the only time it is shown)")
    create.add_argument("--name", required=True, help="a unique name: letters, digits, '.', '_', '-'")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=SCOPES,
        dest="scopes",
        help="a scope the token holds; repeat for several",
    )
    actions.add_parser("list", help="list tokens: name, scopes, creation time (never the tokens)")
    revoke = actions.add_parser("revoke", help="delete a token; every instance refuses it within seconds")
    revoke.add_argument("name", help="the token's name")
    actions.add_parser("init", help=f"if no token exists, create an admin token named {LOCAL_ADMIN} and print it")


def run_token(settings: Settings, args: argparse.Namespace) -> int:
    """Run one `token` action against the configured keyspace; the exit status."""
    from readings_service.store.tokens import open_tokens

    async def run() -> int:
        async with open_tokens(settings) as store:
            return await ACTIONS[args.token_command](store, args, settings)

    return asyncio.run(run())


async def _create(store: TokenStore, args: argparse.Namespace, settings: Settings) -> int:
    token, record = await issue(store, args.name, args.scopes)
    print(token)
    print(
        f"created token {record.name!r} with scope(s) {', '.join(sorted(record.scopes))}; it is shown only this once",
        file=sys.stderr,
    )
    return 0


async def _list(store: TokenStore, args: argparse.Namespace, settings: Settings) -> int:
    records = sorted(await store.tokens(), key=lambda record: record.name)
    if not records:
        print("no tokens", file=sys.stderr)
        return 0
    rows = [("NAME", "SCOPES", "CREATED")] + [
        (r.name, ",".join(sorted(r.scopes)), r.public()["created"]) for r in records
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    for name, scopes, created in rows:
        print(f"{name:<{widths[0]}}  {scopes:<{widths[1]}}  {created}")
    return 0


async def _revoke(store: TokenStore, args: argparse.Namespace, settings: Settings) -> int:
    if not await store.revoke(args.name):
        raise NotFound(f"no token named {args.name!r}")
    print(f"revoked token {args.name!r}; every instance refuses it within about {settings.auth.refresh_interval_s:g} s")
    return 0


async def _init(store: TokenStore, args: argparse.Namespace, settings: Settings) -> int:
    """Print a new admin token the first time, like a notebook server; the token is stored nowhere else."""
    if await store.tokens():
        print("API tokens exist already (`readings-service token list`); none created")
        return 0
    try:
        token, _ = await issue(store, LOCAL_ADMIN, [ADMIN])
    except Conflict:  # another init got there first
        print("API tokens exist already (`readings-service token list`); none created")
        return 0
    url = f"http://{settings.http.host}:{settings.http.port}"
    print(
        f"Created the admin API token {LOCAL_ADMIN!r}. It is shown only this once; keep it:\n\n    {token}\n\n"
        f"Send it with every request, e.g.  curl -H 'Authorization: Bearer {token}' {url}/metrics\n"
        "More tokens, with narrower scopes: readings-service token create --scope ingest --name NAME"
    )
    if not settings.auth.required:
        print("(auth.required is false: the service does not check tokens now)")
    return 0


ACTIONS = {"create": _create, "list": _list, "revoke": _revoke, "init": _init}

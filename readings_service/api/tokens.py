"""Token management over HTTP (admin scope): list, create, revoke.

A change is written to the shared table and this instance's set is re-read at once; other instances see it at
their next refresh, within `auth.refresh_interval_s`.
"""

from __future__ import annotations

import contextlib

import orjson
from aiohttp import web

from readings_service.api.bodies import read_body
from readings_service.core.tokens import TokenCache, TokenStore, issue
from readings_service.errors import BadRequest, NotFound, ServiceError

MAX_BODY_BYTES = 4096
TOKEN_STORE = web.AppKey("token_store", TokenStore)
TOKEN_CACHE = web.AppKey("token_cache", TokenCache)


async def list_tokens(request: web.Request) -> web.Response:
    """Every token's name, scopes and creation time (never a hash or a token)."""
    records = sorted(await request.app[TOKEN_STORE].tokens(), key=lambda record: record.name)
    return web.json_response({"tokens": [record.public() for record in records]})


async def create_token(request: web.Request) -> web.Response:
    """Create a token from `{"name": ..., "scopes": [...]}`; the answer is the only place its secret appears."""
    body = await read_body(request, MAX_BODY_BYTES)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"body is not JSON: {error}") from None
    if (
        not isinstance(document, dict)
        or set(document) != {"name", "scopes"}
        or not isinstance(document["scopes"], list)
    ):
        raise BadRequest('body must be exactly {"name": "<name>", "scopes": ["<scope>", ...]}')
    token, record = await issue(request.app[TOKEN_STORE], document["name"], document["scopes"])
    await _refresh(request)
    return web.json_response(record.public() | {"token": token}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    """Delete a token: 204, or 404 if there is none of that name."""
    name = request.match_info["name"]
    if not await request.app[TOKEN_STORE].revoke(name):
        raise NotFound(f"no token named {name!r}")
    await _refresh(request)
    return web.Response(status=204)


async def _refresh(request: web.Request) -> None:
    # The change is stored; if this re-read fails, the background refresh applies it a moment later.
    with contextlib.suppress(ServiceError):
        await request.app[TOKEN_CACHE].refresh()


def add_token_routes(app: web.Application) -> None:
    app.router.add_get("/tokens", list_tokens)
    app.router.add_post("/tokens", create_token)
    app.router.add_delete("/tokens/{name}", revoke_token)

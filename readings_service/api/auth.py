"""Bearer-token authentication: the middleware that checks every request's scope, and its set-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import hdrs, web

from readings_service.api.access_log import TOKEN_NAME
from readings_service.api.tokens import TOKEN_CACHE, TOKEN_STORE, add_token_routes
from readings_service.config import Settings
from readings_service.core.access import required_scope
from readings_service.core.tokens import TokenCache, TokenStore, grants
from readings_service.errors import Forbidden, Unauthorized
from readings_service.metrics import AUTH_REJECTED

log = logging.getLogger("readings_service")

TokenOpener = Callable[[Settings], contextlib.AbstractAsyncContextManager[TokenStore]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr](?:[ \t]+(.*))?")


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None if there is no Bearer header.

    The scheme is case-insensitive (RFC 9110); a Bearer header with nothing after it gives "", which is
    no valid token.
    """
    if header is None:
        return None
    match = _BEARER.fullmatch(header.strip())
    if match is None:
        return None
    return (match.group(1) or "").strip()


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Let a request through only with a valid token holding the scope its route needs (public routes aside)."""
    resource = request.match_info.route.resource
    needed = required_scope(request.method, resource.canonical if resource is not None else None)
    if needed is None:
        return await handler(request)
    token = bearer_token(request.headers.get(hdrs.AUTHORIZATION))
    if token is None:
        AUTH_REJECTED.labels("missing").inc()
        raise Unauthorized("this endpoint needs an `Authorization: Bearer <token>` header", invalid_token=False)
    record = request.app[TOKEN_CACHE].find(token)
    if record is None:
        AUTH_REJECTED.labels("invalid").inc()
        raise Unauthorized("the token is not valid (unknown or revoked)", invalid_token=True)
    request[TOKEN_NAME] = record.name  # the access log names the token, never prints it
    if not grants(record.scopes, needed):
        AUTH_REJECTED.labels("scope").inc()
        raise Forbidden(
            f"this token's scopes ({', '.join(sorted(record.scopes))}) do not include {needed!r}", scope=needed
        )
    return await handler(request)


def setup_auth(app: web.Application, settings: Settings, open_tokens: TokenOpener | None) -> None:
    """Check tokens on every request unless `auth.required` is false, and add the /tokens routes.

    At start-up the tokens are read once before the first request is served; a background task re-reads them
    every `auth.refresh_interval_s` until shutdown.
    """
    if not settings.auth.required:

        async def warn(app: web.Application) -> None:
            log.warning(
                "authentication is OFF (auth.required = false): every endpoint is open to anyone who "
                "can reach this port"
            )

        app.on_startup.append(warn)
        return
    if open_tokens is None:
        raise ValueError("auth.required is true but no token store was given")
    app.middlewares.append(auth_middleware)
    add_token_routes(app)

    async def tokens_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_tokens(settings) as store:
            cache = TokenCache(store, settings.auth.refresh_interval_s)
            await cache.refresh()
            app[TOKEN_STORE] = store
            app[TOKEN_CACHE] = cache
            if len(cache):
                log.info("authentication on: %d API tokens", len(cache))
            else:
                log.warning(
                    "authentication on, but no API token exists: every request is refused until one is "
                    "created (`readings-service token create --scope admin --name NAME`)"
                )
            refresher = asyncio.create_task(cache.keep_fresh(), name="refresh API tokens")
            try:
                yield
            finally:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher

    app.cleanup_ctx.append(tokens_ctx)

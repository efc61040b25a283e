"""Errors as RFC 9457 problem+json: one middleware maps every error to a status and a body."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from readings_service.errors import ServiceError, StoreFailure, Unavailable

log = logging.getLogger("readings_service")

PROBLEM_JSON = "application/problem+json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    """An RFC 9457 problem response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return web.Response(status=status, body=orjson.dumps(body), content_type=PROBLEM_JSON)


def error_response(error: ServiceError) -> web.Response:
    """The problem response of a ServiceError, with the headers it adds (Retry-After, WWW-Authenticate, ...)."""
    response = problem(error.status, error.title, error.detail, **error.extra)
    if isinstance(error, Unavailable):
        response.headers["Retry-After"] = str(error.retry_after_s)
    response.headers.update(error.headers())
    if error.close_connection:
        response.force_close()
    return response


def http_error_response(request: web.Request, error: web.HTTPException) -> web.Response:
    """aiohttp's own 4xx/5xx (no route, method not allowed, body too large) as problem+json."""
    if isinstance(error, web.HTTPNotFound):
        return problem(404, "Not found", f"no resource at {request.path}")
    if isinstance(error, web.HTTPMethodNotAllowed):
        allowed = sorted(error.allowed_methods)
        response = problem(
            405,
            "Method not allowed",
            f"{error.method} is not allowed on {request.path}; allowed: {', '.join(allowed)}",
            allowed=allowed,
        )
        response.headers["Allow"] = ", ".join(allowed)
        return response
    response = problem(error.status, error.reason, error.text or error.reason)
    # The headers the status needs go along; the body and its headers are ours.
    for name, value in error.headers.items():
        if name.lower() not in ("content-type", "content-length"):
            response.headers.add(name, value)
    return response


def internal_detail(error: Exception) -> str:
    """What a client is told of an unexpected error: its type only, as the message may hold hosts, queries, paths."""
    return f"unexpected {type(error).__name__}; the service logged the details"


def store_failure_detail(error: StoreFailure) -> str:
    """What a client is told when storage refused a request: the driver error's type, not its text."""
    cause = error.__cause__
    kind = type(cause).__name__ if cause is not None else "error"
    return f"storage refused the request ({kind}); the service logged the details"


def log_store_failure(request: web.Request, error: StoreFailure) -> None:
    log.error(
        "storage refused %s %s: %s",
        request.method,
        request.path,
        error.detail,
        exc_info=error.__cause__ if error.__cause__ is not None else error,
    )


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map ServiceError, aiohttp's own HTTP errors and any other exception to problem+json.

    Never once bytes of a response have gone out: streams end their own way (api.streaming).
    """
    try:
        return await handler(request)
    except StoreFailure as error:
        log_store_failure(request, error)
        return problem(error.status, error.title, store_failure_detail(error))
    except ServiceError as error:
        return error_response(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return http_error_response(request, error)
    except ConnectionResetError:
        raise  # the client went away: there is no one to answer
    except Exception as error:
        if request.writer.output_size > 0:
            raise  # aiohttp closes the connection; a second response cannot follow the first
        log.exception("unexpected error in %s %s", request.method, request.path)
        return problem(500, "Internal error", internal_detail(error))

"""The OpenAPI 3.1 description of the HTTP API, built as data and served at GET /openapi.json.

It is public: it says what the API accepts, not what is stored, and a client needs it before it has a token.
A test compares its operations with the application's routes, both ways, and a live fuzzer checks every answer
against it.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from aiohttp import web

from readings_service.api.bodies import SUPPORTED_ENCODINGS
from readings_service.core.timestamps import MAX_TS_MS, MIN_TS_MS
from readings_service.core.tokens import SCOPES

Json = dict[str, Any]

PROBLEM = "application/problem+json"
NDJSON = "application/x-ndjson"
EXAMPLE_DEVICE = "0191b2f4-65a3-7c3e-8a1b-2f6c1f0e9d42"
EXAMPLE_READING = {
    "device_id": EXAMPLE_DEVICE,
    "ts": "2026-01-02T03:04:05.000Z",
    "temperature": 20.5,
    "pressure": 1013.2,
}
UUID_PATTERN = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"

ERRORS = {
    400: "Bad request: a parameter, the body, its Content-Type or the HTTP message itself is malformed; "
    "`parameter` names the query parameter at fault. A query parameter the operation does not list, or one "
    "given twice, is refused too (`supported` then lists the operation's parameters).",
    401: "No valid bearer token (none, unknown or revoked); `WWW-Authenticate: Bearer` says which.",
    403: "The token lacks the scope this operation needs (`required_scope`).",
    404: "Not found.",
    405: "Method not allowed on this path; the `Allow` header lists the methods that are.",
    409: "A token of that name exists already.",
    413: "The body (measured after decompression) or its number of readings is over the configured limit.",
    414: "The request target (path and query) is longer than 8192 bytes.",
    415: "The body's Content-Encoding is not supported; `supported` and the `Accept-Encoding` header list those "
    "that are.",
    422: "Some readings are invalid; `problems` lists each as {index, field, reason} and nothing was written.",
    431: "A header line is longer than 8190 bytes, or there are more than 128 of them.",
    500: "An unexpected error; the detail names only the exception type, the log has the rest.",
    503: "Storage (or the token table) is unavailable or slow, this instance is at its concurrency limit, or it is "
    "shutting down. Retry after `Retry-After` seconds: every request is safe to retry.",
    505: "Streams need HTTP/1.1: HTTP/1.0 has no chunked framing, so a cut stream could pass for a complete one.",
}
# Answers any operation may give: the parser's, the router's and the last-resort ones.
COMMON = (400, 405, 414, 431, 500)
SECURED = (401, 403, 503)


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _responses(ok: dict[int, Json], *errors: int, secured: bool = True) -> Json:
    statuses = set(COMMON) | set(errors) | (set(SECURED) if secured else set())
    answers = {str(status): body for status, body in ok.items()}
    answers |= {str(status): _ref("responses", str(status)) for status in sorted(statuses)}
    return answers


def _json(description: str, schema: Json) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem_response(status: int) -> Json:
    response: Json = {"description": ERRORS[status], "content": {PROBLEM: {"schema": _ref("schemas", "Problem")}}}
    headers: Json = {}
    if status == 401:
        headers["WWW-Authenticate"] = {"schema": {"type": "string"}, "description": "A Bearer challenge."}
    if status == 403:
        headers["WWW-Authenticate"] = {
            "schema": {"type": "string"},
            "description": 'Bearer challenge with error="insufficient_scope".',
        }
    if status == 405:
        headers["Allow"] = {
            "schema": {"type": "string"},
            "required": True,
            "description": "The methods the path supports.",
        }
    if status == 415:
        headers["Accept-Encoding"] = {
            "schema": {"type": "string"},
            "required": True,
            "description": "The content codings accepted.",
        }
    if status == 503:
        headers["Retry-After"] = {
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
            "description": "Seconds to wait before retrying.",
        }
    if headers:
        response["headers"] = headers
    return response


RANGE_PARAMETERS = [
    {
        "name": "start",
        "in": "query",
        "required": True,
        "schema": _ref("schemas", "Timestamp"),
        "example": "2026-01-02T00:00:00Z",
        "description": "Inclusive start: RFC 3339 with an offset, or integer epoch milliseconds. A `+` that arrives "
        "unencoded (as a space) is understood.",
    },
    {
        "name": "end",
        "in": "query",
        "required": True,
        "schema": _ref("schemas", "Timestamp"),
        "example": "2026-01-03T00:00:00Z",
        "description": "Exclusive end, as `start`. After `start`, at most `query.max_range_days` (31) days later.",
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "pattern": "^[0-9]+$", "description": "A positive integer."},
        "example": "100",
        "description": "At most this many lines (and at most `query.max_limit` when that is set).",
    },
    {
        "name": "after",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "example": f"2026-01-02T03:04:05.000Z,{EXAMPLE_DEVICE}",
        "description": "Resume strictly after the line with this `<ts>,<device_id>` (as printed).",
    },
]
DEVICE_ID = {
    "name": "device_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
    "example": EXAMPLE_DEVICE,
    "description": "The device's UUID.",
}
STREAM = {
    "description": (
        "The readings of the range, one JSON object per line (`Reading`), ordered by `ts`, then `device_id` in "
        "Cassandra's uuid order; sent chunked while they are read. If the query fails after the first byte was "
        'sent, the last line is `{"error": {"status": <int>, "detail": <string>}}` (`StreamError`) and the '
        "connection is closed without the terminating chunk, so a cut stream never looks complete."
    ),
    "content": {
        NDJSON: {
            "schema": {
                "type": "string",
                "description": "NDJSON: `Reading` lines, possibly ended by one `StreamError` line.",
            },
            "x-ndjson-line": _ref("schemas", "Reading"),
            "x-ndjson-error-line": _ref("schemas", "StreamError"),
        }
    },
}


def _schemas() -> Json:
    number = {"type": "number"}
    token = {
        "name": {"type": "string"},
        "scopes": {"type": "array", "items": {"type": "string", "enum": list(SCOPES)}},
        "created": {"type": "string", "format": "date-time"},
    }
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details. Members beyond the standard ones depend on the error.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "const": "about:blank"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "parameter": {"type": "string", "description": "The query parameter or body member at fault."},
                "problems": {"type": "array", "items": _ref("schemas", "ItemProblem")},
                "limit": {"type": "integer", "description": "The limit that was exceeded (413)."},
                "supported": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "What would have been accepted: Content-Types (415), or the "
                    "operation's query parameters (400, unknown or repeated parameter).",
                },
                "encoding": {"type": "string", "description": "The refused Content-Encoding (415)."},
                "allowed": {"type": "array", "items": {"type": "string"}, "description": "Allowed methods (405)."},
                "required_scope": {"type": "string", "enum": list(SCOPES)},
            },
        },
        "ItemProblem": {
            "type": "object",
            "required": ["index", "field", "reason"],
            "properties": {
                "index": {"type": "integer", "description": "Array position (JSON) or 1-based line number (NDJSON)."},
                "field": {"type": ["string", "null"], "description": "The field at fault; null for the whole item."},
                "reason": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "Timestamp": {
            "description": "RFC 3339 date-time with an offset, or integer epoch milliseconds (years 0001-9999).",
            "oneOf": [
                {"type": "string", "pattern": "^-?[0-9]{1,16}$"},
                {"type": "string", "format": "date-time"},
            ],
        },
        "NewReading": {
            "type": "object",
            "required": ["device_id", "ts", "temperature", "pressure"],
            "properties": {
                "device_id": {"type": "string", "pattern": UUID_PATTERN},
                "ts": {
                    "oneOf": [
                        {
                            "type": "integer",
                            "minimum": MIN_TS_MS,
                            "maximum": MAX_TS_MS,
                            "description": "Epoch milliseconds.",
                        },
                        {"type": "string", "format": "date-time", "description": "RFC 3339 with an offset."},
                    ],
                    "description": (
                        "Not before `ingest.oldest_ts` (2000-01-01T00:00:00Z by default; an integer that would be "
                        "accepted as epoch seconds, microseconds or nanoseconds is reported as such), not more than "
                        "`storage.retention_days` old when that is set (the reading expires that long after its `ts`), "
                        "and not more than `ingest.max_future_skew_s` ahead of the server clock."
                    ),
                },
                "temperature": number,
                "pressure": number,
            },
            "additionalProperties": False,
            "examples": [EXAMPLE_READING],
        },
        "Reading": {
            "type": "object",
            "required": ["device_id", "ts", "temperature", "pressure"],
            "properties": {
                "device_id": {"type": "string", "format": "uuid", "description": "Lower-case."},
                "ts": {
                    "type": "string",
                    "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
                },
                "temperature": number,
                "pressure": number,
            },
            "additionalProperties": False,
        },
        "StreamError": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["status", "detail"],
                    "properties": {"status": {"type": "integer"}, "detail": {"type": "string"}},
                }
            },
        },
        "Token": {
            "type": "object",
            "required": ["name", "scopes", "created"],
            "properties": token,
            "additionalProperties": False,
        },
        "IssuedToken": {
            "type": "object",
            "required": ["name", "scopes", "created", "token"],
            "properties": token | {"token": {"type": "string", "description": "The secret, shown only here."}},
            "additionalProperties": False,
        },
    }


def _paths() -> Json:
    readings_body = {
        "required": True,
        "description": (
            "Readings as one JSON object, a JSON array of them, or NDJSON (one object per line). "
            f"Content-Encoding: {', '.join(SUPPORTED_ENCODINGS)}. Unknown fields, floats as `ts`, NaN and "
            "timestamps too far in the future are refused."
        ),
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [_ref("schemas", "NewReading"), {"type": "array", "items": _ref("schemas", "NewReading")}]
                }
            },
            NDJSON: {"schema": {"type": "string", "description": "One NewReading object per line."}},
        },
    }
    latest_ok = _json("The device's newest reading.", _ref("schemas", "Reading"))
    token_ok = _json("The token; `token` is its secret, shown only here.", _ref("schemas", "IssuedToken"))
    metrics_ok = {
        "description": "Prometheus text exposition.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    public: list[Json] = []
    return {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "The process is alive.",
                "security": public,
                "tags": ["operations"],
                "responses": _responses(
                    {
                        200: _json(
                            "Alive; `query_path` is the range-query path serving: `native` (compiled, on raw pages) or "
                            "`python` (the pure-Python fallback).",
                            {
                                "type": "object",
                                "required": ["status", "query_path"],
                                "properties": {"status": {"const": "ok"}, "query_path": {"enum": ["native", "python"]}},
                            },
                        )
                    },
                    secured=False,
                ),
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Cassandra answers: send traffic here.",
                "security": public,
                "tags": ["operations"],
                "responses": _responses(
                    {
                        200: _json(
                            "Ready.",
                            {"type": "object", "required": ["status"], "properties": {"status": {"const": "ready"}}},
                        )
                    },
                    503,
                    secured=False,
                ),
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (scope `metrics`).",
                "tags": ["operations"],
                "responses": _responses({200: metrics_ok}),
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": public,
                "tags": ["operations"],
                "responses": _responses({200: _json("OpenAPI 3.1.", {"type": "object"})}, secured=False),
            }
        },
        "/readings": {
            "post": {
                "operationId": "postReadings",
                "summary": "Write readings (scope `ingest`).",
                "tags": ["readings"],
                "description": "All-or-nothing unless `partial=true`. Answered only after Cassandra acknowledged "
                "every write; retrying is always safe (idempotent upserts, the later one wins).",
                "parameters": [
                    {
                        "name": "partial",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["true", "false", "1", "0"]},
                        "description": "Write the valid readings and report the invalid ones (207).",
                    }
                ],
                "requestBody": readings_body,
                "responses": _responses(
                    {
                        200: _json(
                            "Every reading was written.",
                            {
                                "type": "object",
                                "required": ["accepted"],
                                "properties": {"accepted": {"type": "integer", "minimum": 0}},
                                "additionalProperties": False,
                            },
                        ),
                        207: _json(
                            "partial=true: the valid readings were written, the others are listed.",
                            {
                                "type": "object",
                                "required": ["accepted", "rejected", "problems"],
                                "properties": {
                                    "accepted": {"type": "integer", "minimum": 0},
                                    "rejected": {"type": "integer", "minimum": 1},
                                    "problems": {"type": "array", "items": _ref("schemas", "ItemProblem")},
                                },
                                "additionalProperties": False,
                            },
                        ),
                    },
                    413,
                    415,
                    422,
                ),
            },
            "get": {
                "operationId": "getReadings",
                "summary": "Every device's readings of a range (scope `query`).",
                "tags": ["readings"],
                "parameters": RANGE_PARAMETERS,
                "responses": _responses({200: STREAM}, 505),
            },
        },
        "/devices/{device_id}/readings": {
            "get": {
                "operationId": "getDeviceReadings",
                "summary": "One device's readings of a range (scope `query`).",
                "tags": ["readings"],
                "parameters": [DEVICE_ID, *RANGE_PARAMETERS],
                "responses": _responses({200: STREAM}, 505),
            }
        },
        "/devices/{device_id}/latest": {
            "get": {
                "operationId": "getLatest",
                "summary": "One device's newest reading (scope `query`).",
                "tags": ["readings"],
                "parameters": [DEVICE_ID],
                "responses": _responses({200: latest_ok}, 404),
            }
        },
        "/tokens": {
            "get": {
                "operationId": "listTokens",
                "summary": "Every token's name, scopes and creation time (admin).",
                "tags": ["tokens"],
                "responses": _responses(
                    {
                        200: _json(
                            "The tokens, by name.",
                            {
                                "type": "object",
                                "required": ["tokens"],
                                "properties": {"tokens": {"type": "array", "items": _ref("schemas", "Token")}},
                            },
                        )
                    }
                ),
            },
            "post": {
                "operationId": "createToken",
                "summary": "Create a token (admin).",
                "tags": ["tokens"],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["name", "scopes"],
                                "additionalProperties": False,
                                "properties": {
                                    "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
                                    "scopes": {
                                        "type": "array",
                                        "minItems": 1,
                                        "items": {"type": "string", "enum": list(SCOPES)},
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": _responses({201: token_ok}, 409, 413, 415),
            },
        },
        "/tokens/{name}": {
            "delete": {
                "operationId": "revokeToken",
                "summary": "Revoke a token (admin).",
                "tags": ["tokens"],
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": _responses({204: {"description": "Revoked."}}, 404),
            }
        },
    }


@functools.cache
def document() -> Json:
    """The OpenAPI document (built once)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "readings-service",
            "version": "1",
            "description": (
                "IoT readings into Apache Cassandra; sorted time-range queries streamed as NDJSON.\n\n"
                "Every error is `application/problem+json` (RFC 9457). Every route except /health, /ready and "
                "/openapi.json needs `Authorization: Bearer <token>` with the scope it names, unless the service "
                "runs with `auth.required = false`; the /tokens routes exist only when authentication is on. "
                "Every GET also answers HEAD. Browsers may call the API from the origins in `http.cors_origins`."
            ),
        },
        "tags": [{"name": "readings"}, {"name": "tokens"}, {"name": "operations"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `readings-service token create`.",
                }
            },
            "schemas": _schemas(),
            "responses": {str(status): _problem_response(status) for status in ERRORS},
        },
    }


@functools.cache
def query_parameters(method: str, path: str) -> frozenset[str]:
    """The names of the query parameters the document gives the operation (`GET`, `/readings`); none for a path
    or method it does not describe."""
    operation = document()["paths"].get(path, {}).get(method.lower(), {})
    return frozenset(parameter["name"] for parameter in operation.get("parameters", ()) if parameter["in"] == "query")


@functools.cache
def _document_bytes() -> bytes:
    return orjson.dumps(document())


async def openapi_json(request: web.Request) -> web.Response:
    """This API's OpenAPI 3.1 description."""
    return web.Response(body=_document_bytes(), content_type="application/json")

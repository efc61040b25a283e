"""Request bodies: read with a size limit measured after decompression, and query flags."""

from __future__ import annotations

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestPayloadError

from readings_service.errors import BadRequest, TooLarge


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body after any gzip decoding, refusing more than `limit` bytes."""
    if request.content_length is not None and request.content_length > limit and not request.headers.get(
        "Content-Encoding"
    ):
        raise TooLarge(f"body of {request.content_length} bytes is over the limit of {limit}", limit=limit)
    parts: list[bytes] = []
    size = 0
    try:
        async for part in request.content.iter_chunked(65536):
            size += len(part)
            if size > limit:
                raise TooLarge(f"body is over the limit of {limit} bytes (after decompression)", limit=limit)
            parts.append(part)
    except (ContentEncodingError, RequestPayloadError) as error:
        reason = getattr(error, "message", str(error)).strip()
        raise BadRequest(f"body cannot be decoded: {reason}") from None
    return b"".join(parts)


def parse_flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise BadRequest(f"parameter {name}={raw!r} must be true or false", parameter=name)
    return raw in ("true", "1")

"""Request bodies: read with a size limit measured after decompression, and query flags."""

from __future__ import annotations

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestPayloadError

from readings_service.errors import BadRequest, TooLarge, UndecodableBody, UnsupportedEncoding

# What aiohttp decodes whatever else is installed (it also decodes br and zstd when their libraries happen to be
# there, which a deployment must not depend on). One coding only: a list of them is refused.
SUPPORTED_ENCODINGS = ("gzip", "deflate", "identity")


def content_encoding(request: web.Request) -> str:
    """The body's Content-Encoding, lower-cased; "identity" when none is named."""
    return request.headers.get("Content-Encoding", "").strip().lower() or "identity"


def check_encoding(request: web.Request) -> None:
    """Refuse a body whose Content-Encoding is not one of SUPPORTED_ENCODINGS (415)."""
    encoding = content_encoding(request)
    if encoding not in SUPPORTED_ENCODINGS:
        raise UnsupportedEncoding(request.headers.get("Content-Encoding", "").strip(), SUPPORTED_ENCODINGS)


async def read_body(request: web.Request, limit: int) -> bytearray:
    """The request body after any gzip decoding, refusing more than `limit` bytes."""
    check_encoding(request)
    compressed = content_encoding(request) != "identity"
    if request.content_length is not None and request.content_length > limit and not compressed:
        raise TooLarge(f"body of {request.content_length} bytes is over the limit of {limit}", limit=limit)
    # One growing buffer, handed on as it is: a list of chunks joined at the end held the body twice.
    body = bytearray()
    try:
        async for part in request.content.iter_chunked(65536):
            if len(body) + len(part) > limit:
                raise TooLarge(f"body is over the limit of {limit} bytes (after decompression)", limit=limit)
            body += part
    except (ContentEncodingError, RequestPayloadError) as error:
        # The rest of the body is not read (aiohttp would otherwise read it after the answer, and log the same
        # error again with a traceback); the connection closes after the answer.
        request.content.feed_eof()
        reason = getattr(error, "message", str(error)).strip()
        raise UndecodableBody(f"body cannot be decoded: {reason}") from None
    return body


def parse_flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise BadRequest(f"parameter {name}={raw!r} must be true or false", parameter=name)
    return raw in ("true", "1")

"""The service's exceptions; the HTTP layer maps each kind to one status code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ServiceError(Exception):
    """Base of every error the service reports to a client."""

    status = 500
    title = "Internal error"
    # The request's bytes cannot be trusted to end where the next request begins: answer, then close.
    close_connection = False

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def headers(self) -> dict[str, str]:
        """Response headers this error adds to its problem+json answer."""
        return {}


class BadRequest(ServiceError):
    """The request itself is malformed: unparseable body or parameters."""

    status = 400
    title = "Bad request"


class UndecodableBody(BadRequest):
    """The body cannot be decoded in its Content-Encoding (or its framing is broken)."""

    close_connection = True


class StreamNeedsHttp11(ServiceError):
    """A stream asked for over HTTP/1.0, which has no chunked framing to tell a cut stream from a complete one."""

    status = 505
    title = "HTTP version not supported"


class InvalidReadings(ServiceError):
    """Some readings failed validation; `problems` lists each with its index, field and reason."""

    status = 422
    title = "Invalid readings"

    def __init__(self, detail: str, problems: Sequence[dict[str, Any]]) -> None:
        super().__init__(detail, problems=list(problems))


class Unauthorized(ServiceError):
    """No valid token: none was given, or the one given is unknown or revoked (`invalid_token`)."""

    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str, invalid_token: bool) -> None:
        super().__init__(detail)
        self.invalid_token = invalid_token

    def headers(self) -> dict[str, str]:
        # RFC 6750: no error code when the request carried no token at all.
        error = ', error="invalid_token"' if self.invalid_token else ""
        return {"WWW-Authenticate": f'Bearer realm="readings-service"{error}'}


class Forbidden(ServiceError):
    """A valid token without the scope the request needs."""

    status = 403
    title = "Forbidden"

    def __init__(self, detail: str, scope: str) -> None:
        super().__init__(detail, required_scope=scope)
        self.scope = scope

    def headers(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": f'Bearer realm="readings-service", error="insufficient_scope", scope="{self.scope}"'
        }


class Conflict(ServiceError):
    """The thing to create exists already."""

    status = 409
    title = "Conflict"


class TooLarge(ServiceError):
    """The body or the number of items is over a configured limit."""

    status = 413
    title = "Request too large"


class UriTooLong(ServiceError):
    """The request target is longer than the server reads."""

    status = 414
    title = "URI too long"


class UnsupportedEncoding(ServiceError):
    """A body in a Content-Encoding the service does not decode."""

    status = 415
    title = "Unsupported content encoding"

    def __init__(self, encoding: str, supported: Sequence[str]) -> None:
        super().__init__(
            f"Content-Encoding {encoding!r} is not supported; use one of {', '.join(supported)}",
            encoding=encoding,
            supported=list(supported),
        )
        self.supported = tuple(supported)

    def headers(self) -> dict[str, str]:
        return {"Accept-Encoding": ", ".join(self.supported)}  # RFC 9110 section 12.5.3


class HeadersTooLarge(ServiceError):
    """A header line, or the number of them, is over what the server reads."""

    status = 431
    title = "Request header fields too large"


class NotFound(ServiceError):
    """The thing asked for does not exist."""

    status = 404
    title = "Not found"


class Unavailable(ServiceError):
    """Temporarily unable to serve; the client should retry after `retry_after_s` seconds."""

    status = 503
    title = "Service unavailable"
    retry_after_s = 1


class StoreUnavailable(Unavailable):
    """The store cannot answer now (no host, timeout, overload); retrying later may succeed."""

    title = "Storage unavailable"


class Overloaded(Unavailable):
    """This process already serves as many requests of the kind as it is configured to; shed, retry shortly."""

    title = "Overloaded"


class StoreFailure(ServiceError):
    """The store rejected a request for a reason retrying will not fix."""

    status = 500
    title = "Storage error"


class LayoutMismatch(Exception):
    """The configured data layout differs from the one recorded in the database."""

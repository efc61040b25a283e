"""The service's exceptions; the HTTP layer maps each kind to one status code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ServiceError(Exception):
    """Base of every error the service reports to a client."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BadRequest(ServiceError):
    """The request itself is malformed: unparseable body or parameters."""

    status = 400
    title = "Bad request"


class InvalidReadings(ServiceError):
    """Some readings failed validation; `problems` lists each with its index, field and reason."""

    status = 422
    title = "Invalid readings"

    def __init__(self, detail: str, problems: Sequence[dict[str, Any]]) -> None:
        super().__init__(detail, problems=list(problems))


class TooLarge(ServiceError):
    """The body or the number of items is over a configured limit."""

    status = 413
    title = "Request too large"


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

"""Which range-query path serves: the compiled one on raw pages, or the pure-Python reference. Chosen once.

`query.native` (env READINGS_QUERY_NATIVE) is `auto` (compiled when the `readings_native` extension imports
and the store hands over raw pages, else pure Python), `on` (compiled, or the service does not start) or
`off` (pure Python). Both paths send the same bytes for the same data; the differential tests prove it.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from readings_service.config import ConfigError, QuerySettings
from readings_service.core.ndjson import LineChunks
from readings_service.core.ranges import RangeRequest, as_lines, device_chunks, range_chunks, take, take_lines
from readings_service.core.store import RawPageStore, ReadingStore
from readings_service.metrics import QUERY_PATH

log = logging.getLogger("readings_service")

NATIVE = "native"
PYTHON = "python"
NATIVE_MODULE = "readings_native"
_BUILD_HINT = "scripts/bootstrap builds it when cargo is installed"


def native_version() -> tuple[str | None, str]:
    """(the compiled module's version, "") if it imports, else (None, why not)."""
    try:
        module = importlib.import_module(NATIVE_MODULE)
    except ImportError as error:
        return None, str(error)
    return str(module.__version__), ""


def wants_raw_pages(settings: QuerySettings) -> bool:
    """Whether the store should open its raw-page session: the compiled path may be chosen."""
    return settings.native != "off" and native_version()[0] is not None


RangeLines = Callable[[ReadingStore, RangeRequest, int, int], LineChunks]
DeviceLines = Callable[[ReadingStore, uuid.UUID, RangeRequest], LineChunks]


@dataclass(frozen=True, slots=True)
class QueryPath:
    """The chosen path: its name (`native` or `python`), why, and the two range readers."""

    name: str
    reason: str
    range_lines: RangeLines
    device_lines: DeviceLines


def _python_range(store: ReadingStore, request: RangeRequest, buckets: int, lookahead: int) -> LineChunks:
    return as_lines(take(range_chunks(store, request, buckets, lookahead), request.limit))


def _python_device(store: ReadingStore, device_id: uuid.UUID, request: RangeRequest) -> LineChunks:
    return as_lines(take(device_chunks(store, device_id, request), request.limit))


def _native_path(version: str) -> QueryPath:
    from readings_service.core.raw_ranges import native_device_lines, native_range_lines

    def range_lines(store: ReadingStore, request: RangeRequest, buckets: int, lookahead: int) -> LineChunks:
        assert isinstance(store, RawPageStore)  # checked when the path was chosen
        return take_lines(native_range_lines(store, request, buckets, lookahead), request.limit)

    def device_lines(store: ReadingStore, device_id: uuid.UUID, request: RangeRequest) -> LineChunks:
        assert isinstance(store, RawPageStore)
        return take_lines(native_device_lines(store, device_id, request), request.limit)

    return QueryPath(NATIVE, f"readings_native {version}, raw pages", range_lines, device_lines)


def select_query_path(settings: QuerySettings, store: ReadingStore) -> QueryPath:
    """The path for `settings.native` and this store; logs the choice once and sets the query_path metric."""
    version, why_not = native_version()
    if settings.native == "off":
        path = QueryPath(PYTHON, "query.native = off", _python_range, _python_device)
    elif version is None:
        if settings.native == "on":
            raise ConfigError(
                f"query.native = 'on' but the compiled module cannot be imported ({why_not}); {_BUILD_HINT}"
            )
        path = QueryPath(
            PYTHON, f"the compiled module is not installed ({why_not}); {_BUILD_HINT}", _python_range, _python_device
        )
    elif not isinstance(store, RawPageStore):
        if settings.native == "on":
            raise ConfigError(f"query.native = 'on' but the store ({type(store).__name__}) has no raw pages")
        path = QueryPath(PYTHON, f"the store ({type(store).__name__}) has no raw pages", _python_range, _python_device)
    else:
        path = _native_path(version)
    level = logging.WARNING if path.name == PYTHON and settings.native == "auto" else logging.INFO
    log.log(level, "range queries: %s path (%s)", path.name, path.reason)
    for name in (NATIVE, PYTHON):
        QUERY_PATH.labels(name).set(1 if name == path.name else 0)
    return path

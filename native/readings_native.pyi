"""Raw Cassandra row pages of readings, merged in clustering order and written as NDJSON (compiled)."""

__version__: str

class DayMerge:
    """The partitions of one day, merged page by page in clustering order (ts, then Cassandra's uuid order)."""

    def __init__(self, sources: int) -> None: ...
    def push(self, source: int, page: bytes) -> None:
        """Add one raw range-scan page of `source` (ValueError if it is malformed)."""
    def finish(self, source: int) -> None:
        """Say that `source` has delivered its last page."""
    def cut(self) -> tuple[bytes, int, bool, list[int]]:
        """(NDJSON bytes, lines, complete, sources whose next page is needed before the next cut)."""

def encode_device_page(page: bytes, device_id: bytes, min_ts: int) -> tuple[bytes, int, bool]:
    """(NDJSON bytes, lines, complete) of one device's raw page, rows with ts >= min_ts."""

def line_end(data: bytes, lines: int) -> int:
    """The offset just past the `lines`-th line break of `data` (its length if it has fewer)."""

def uuid_order_key(device_id: bytes) -> tuple[int, int]:
    """Cassandra's uuid order of 16 bytes as (version, value)."""

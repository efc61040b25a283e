"""Settings: defaults, a TOML file, then READINGS_<SECTION>_<KEY> environment overrides, validated once into frozen
dataclasses. The defaults are the values config.toml documents."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from readings_service.core.timestamps import TimestampError, TimestampRules, parse_timestamp

ENV_PREFIX = "READINGS_"
CONFIG_PATH_ENV = "READINGS_CONFIG"
# Read when neither --config nor READINGS_CONFIG names a file, if it exists in the working directory.
DEFAULT_PATH = Path("config.toml")
DEFAULT = "default"
CONSISTENCY_LEVELS = ("ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE")
REPLICATION_CLASSES = ("SimpleStrategy", "NetworkTopologyStrategy")
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")
# A web origin as a browser sends it: scheme, host, optional port; no path, no trailing slash.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the value."""


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _not_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 or greater"


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def _between(low: int, high: int) -> Callable[[Any], str | None]:
    return lambda value: None if low <= value <= high else f"must be between {low} and {high}"


def _identifier(value: Any) -> str | None:
    return None if _IDENTIFIER.fullmatch(value) else "must be a CQL identifier (a letter, then letters, digits, _)"


def _non_empty(value: Any) -> str | None:
    return None if value else "must not be empty"


def _origins(value: Any) -> str | None:
    bad = [origin for origin in value if not _ORIGIN.fullmatch(origin)]
    if bad:
        return f'must list origins such as "https://app.example.com" (scheme://host[:port]); not {bad[0]!r}'
    return None


def _instant(value: Any) -> str | None:
    try:
        parse_timestamp(value)
    except TimestampError as error:
        return f'must be an RFC 3339 date-time with an offset, e.g. "2000-01-01T00:00:00Z" ({error})'
    return None


def _setting(default: Any, rule: Callable[[Any], str | None]) -> Any:
    return field(default=default, metadata={"check": rule})


@dataclass(frozen=True, slots=True)
class CassandraSettings:
    contact_points: tuple[str, ...] = _setting(("127.0.0.1",), _non_empty)
    port: int = _setting(9042, _between(1, 65535))
    keyspace: str = _setting("readings", _identifier)
    replication_class: str = _setting("SimpleStrategy", _one_of(REPLICATION_CLASSES))
    replication_factor: int = _setting(1, _between(1, 9))
    local_dc: str = _setting("datacenter1", _non_empty)
    read_consistency: str = _setting("LOCAL_QUORUM", _one_of(CONSISTENCY_LEVELS))
    write_consistency: str = _setting("LOCAL_QUORUM", _one_of(CONSISTENCY_LEVELS))
    request_timeout_s: float = _setting(10.0, _positive)
    connect_timeout_s: float = _setting(10.0, _positive)
    fetch_size: int = _setting(2000, _between(10, 100_000))
    protocol_version: int = _setting(5, _between(4, 5))
    max_retries: int = _setting(2, _between(0, 10))
    reconnect_interval_s: float = _setting(0.5, _positive)


@dataclass(frozen=True, slots=True)
class StorageSettings:
    buckets: int = _setting(16, _between(1, 1024))
    # Ten years at most. Cassandra 5 in its default storage_compatibility_mode (CASSANDRA_4) refuses writes
    # that would expire after 2038-01-19, so keep retention short of that.
    retention_days: int = _setting(0, _between(0, 3650))


@dataclass(frozen=True, slots=True)
class IngestSettings:
    max_body_bytes: int = _setting(16 * 1024 * 1024, _positive)
    max_items: int = _setting(10_000, _positive)
    max_future_skew_s: int = _setting(300, _not_negative)
    oldest_ts: str = _setting("2000-01-01T00:00:00Z", _instant)
    batch_rows: int = _setting(40, _between(1, 1000))
    max_in_flight: int = _setting(64, _between(1, 4096))
    max_concurrent_requests: int = _setting(32, _between(1, 100_000))

    @property
    def oldest_ts_ms(self) -> int:
        """`oldest_ts` in epoch milliseconds."""
        return parse_timestamp(self.oldest_ts)


@dataclass(frozen=True, slots=True)
class QuerySettings:
    max_range_days: int = _setting(31, _between(1, 3660))
    max_limit: int = _setting(0, _not_negative)
    day_lookahead: int = _setting(1, _between(0, 31))
    chunk_bytes: int = _setting(64 * 1024, _between(512, 16 * 1024 * 1024))
    max_concurrent_streams: int = _setting(16, _between(1, 100_000))
    native: str = _setting("auto", _one_of(("auto", "on", "off")))


@dataclass(frozen=True, slots=True)
class HttpSettings:
    host: str = _setting("127.0.0.1", _non_empty)
    port: int = _setting(8080, _between(0, 65535))
    shutdown_timeout_s: float = _setting(30.0, _not_negative)
    queue_timeout_s: float = _setting(1.0, _not_negative)
    access_log: str = _setting("text", _one_of(("text", "json", "off")))
    cors_origins: tuple[str, ...] = _setting((), _origins)


def _any(value: Any) -> str | None:
    return None


def _refresh_interval(value: Any) -> str | None:
    return None if 0.1 <= value <= 3600 else "must be between 0.1 and 3600"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    required: bool = _setting(True, _any)
    refresh_interval_s: float = _setting(2.0, _refresh_interval)


@dataclass(frozen=True, slots=True)
class Settings:
    cassandra: CassandraSettings = field(default_factory=CassandraSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    query: QuerySettings = field(default_factory=QuerySettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)

    def timestamp_rules(self) -> TimestampRules:
        """Which reading timestamps ingest accepts (the API, `load` and `verify` alike)."""
        return TimestampRules(self.ingest.oldest_ts_ms, self.ingest.max_future_skew_s, self.storage.retention_days)


@dataclass(frozen=True, slots=True)
class LoadedSettings:
    """Settings with the origin of every value: "default", the file's path, or the READINGS_* variable."""

    settings: Settings
    origins: Mapping[str, str]  # "section.key" -> origin
    path: Path | None  # the file read, None when there was none


def config_path(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The file to read: `explicit` (--config), else $READINGS_CONFIG, else ./config.toml if it exists, else None.

    A file named by --config or READINGS_CONFIG must exist (load_settings says so if not); an empty
    READINGS_CONFIG counts as unset.
    """
    if explicit is not None:
        return explicit
    named = environ.get(CONFIG_PATH_ENV)
    if named:
        return Path(named)
    return DEFAULT_PATH if DEFAULT_PATH.exists() else None


def load_settings(path: Path | None, environ: Mapping[str, str]) -> Settings:
    """Read `path` (defaults alone if None), apply READINGS_* overrides, validate everything or raise ConfigError."""
    return load(path, environ).settings


def load(path: Path | None, environ: Mapping[str, str]) -> LoadedSettings:
    """load_settings, also telling where each value came from."""
    if path is None:
        return _resolve({}, environ, source="defaults", path=None)
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    return _resolve(document, environ, source=str(path), path=path)


def settings_from_document(document: Mapping[str, Any], environ: Mapping[str, str], source: str) -> Settings:
    """Build Settings from a parsed TOML document and environment overrides; keys it lacks take their defaults."""
    return _resolve(document, environ, source, path=None).settings


def _resolve(document: Mapping[str, Any], environ: Mapping[str, str], source: str, path: Path | None) -> LoadedSettings:
    sections: dict[str, Any] = {}
    origins: dict[str, str] = {}
    hints = get_type_hints(Settings)
    known_env = {_env_name(name, f) for name, cls in hints.items() for f in dataclasses.fields(cls)}
    for key in sorted(environ):
        if key.startswith(ENV_PREFIX) and key not in known_env and key != CONFIG_PATH_ENV:
            raise ConfigError(f"environment variable {key} names no setting")
    for name in document:
        if name not in hints:
            raise ConfigError(f"{source}: unknown section [{name}]")
    for name, cls in hints.items():
        table = document.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        sections[name] = _build_section(name, cls, table, environ, source, origins)
    return LoadedSettings(Settings(**sections), origins, path)


def _env_name(section: str, f: dataclasses.Field[Any]) -> str:
    return f"{ENV_PREFIX}{section}_{f.name}".upper()


def _build_section(
    section: str,
    cls: type,
    table: Mapping[str, Any],
    environ: Mapping[str, str],
    source: str,
    origins: dict[str, str],
) -> Any:
    hints = get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    for key in table:
        if key not in names:
            raise ConfigError(f"{source}: unknown key {section}.{key}")
    values: dict[str, Any] = {}
    for f in fields:
        env_name = _env_name(section, f)
        where = f"{section}.{f.name}"
        if env_name in environ:
            raw: Any = environ[env_name]
            value = _from_env(hints[f.name], raw, env_name)
            origin = where = env_name
        elif f.name in table:
            raw = table[f.name]
            value = _from_toml(hints[f.name], raw, f"{source}: {where}")
            origin = source
        else:
            values[f.name] = f.default
            origins[f"{section}.{f.name}"] = DEFAULT
            continue
        problem = f.metadata["check"](value)
        if problem is not None:
            raise ConfigError(f"{where} = {raw!r} {problem}")
        values[f.name] = value
        origins[f"{section}.{f.name}"] = origin
    return cls(**values)


def _from_toml(kind: Any, raw: Any, where: str) -> Any:
    if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if _is_str_tuple(kind):
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return tuple(raw)
        raise ConfigError(f"{where} = {raw!r} must be a list of strings")
    if type(raw) is not kind:
        raise ConfigError(f"{where} = {raw!r} must be of type {kind.__name__}")
    return raw


def _from_env(kind: Any, raw: str, where: str) -> Any:
    if _is_str_tuple(kind):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if kind is str:
        return raw
    if kind is bool:  # bool("false") is True: only these words count
        words = {"true": True, "1": True, "false": False, "0": False}
        if raw.strip().lower() not in words:
            raise ConfigError(f"{where} = {raw!r} must be true or false (or 1 or 0)")
        return words[raw.strip().lower()]
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{where} = {raw!r} must be of type {kind.__name__}") from None


def _is_str_tuple(kind: Any) -> bool:
    return isinstance(kind, types.GenericAlias) and kind.__origin__ is tuple


def render(loaded: LoadedSettings) -> str:
    """The settings as TOML (it parses back to the same values), each value followed by its origin as a comment."""
    lines = [f"# readings-service configuration in effect; file: {loaded.path or 'none (defaults)'}"]
    rows: list[tuple[str, str]] = []
    for name in get_type_hints(Settings):
        section = getattr(loaded.settings, name)
        rows.append(("", ""))
        rows.append((f"[{name}]", ""))
        rows.extend(
            (f"{f.name} = {_toml_value(getattr(section, f.name))}", loaded.origins[f"{name}.{f.name}"])
            for f in dataclasses.fields(section)
        )
    width = max(len(text) for text, origin in rows if origin)
    lines.extend(f"{text:<{width}}  # {origin}" if origin else text for text, origin in rows)
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    return repr(value)

"""Settings: a TOML file plus READINGS_<SECTION>_<KEY> environment overrides, validated once into frozen dataclasses."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "READINGS_"
CONFIG_PATH_ENV = "READINGS_CONFIG"
CONSISTENCY_LEVELS = ("ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE")
REPLICATION_CLASSES = ("SimpleStrategy", "NetworkTopologyStrategy")
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")


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


def _check(rule: Callable[[Any], str | None]) -> Any:
    return field(metadata={"check": rule})


@dataclass(frozen=True, slots=True)
class CassandraSettings:
    contact_points: tuple[str, ...] = _check(_non_empty)
    port: int = _check(_between(1, 65535))
    keyspace: str = _check(_identifier)
    replication_class: str = _check(_one_of(REPLICATION_CLASSES))
    replication_factor: int = _check(_between(1, 9))
    local_dc: str = _check(_non_empty)
    read_consistency: str = _check(_one_of(CONSISTENCY_LEVELS))
    write_consistency: str = _check(_one_of(CONSISTENCY_LEVELS))
    request_timeout_s: float = _check(_positive)
    connect_timeout_s: float = _check(_positive)
    fetch_size: int = _check(_between(10, 100_000))
    protocol_version: int = _check(_between(4, 5))
    max_retries: int = _check(_between(0, 10))
    reconnect_interval_s: float = _check(_positive)


@dataclass(frozen=True, slots=True)
class StorageSettings:
    buckets: int = _check(_between(1, 1024))


@dataclass(frozen=True, slots=True)
class IngestSettings:
    max_body_bytes: int = _check(_positive)
    max_items: int = _check(_positive)
    max_future_skew_s: int = _check(_not_negative)
    batch_rows: int = _check(_between(1, 1000))
    max_in_flight: int = _check(_between(1, 4096))
    max_concurrent_requests: int = _check(_between(1, 100_000))


@dataclass(frozen=True, slots=True)
class QuerySettings:
    max_range_days: int = _check(_between(1, 3660))
    max_limit: int = _check(_not_negative)
    day_lookahead: int = _check(_between(0, 31))
    chunk_bytes: int = _check(_between(512, 16 * 1024 * 1024))
    max_concurrent_streams: int = _check(_between(1, 100_000))


@dataclass(frozen=True, slots=True)
class HttpSettings:
    host: str = _check(_non_empty)
    port: int = _check(_between(0, 65535))
    shutdown_timeout_s: float = _check(_not_negative)
    queue_timeout_s: float = _check(_not_negative)
    access_log: str = _check(_one_of(("text", "json", "off")))


@dataclass(frozen=True, slots=True)
class Settings:
    cassandra: CassandraSettings
    storage: StorageSettings
    ingest: IngestSettings
    query: QuerySettings
    http: HttpSettings


def load_settings(path: Path, environ: Mapping[str, str]) -> Settings:
    """Read `path`, apply READINGS_* overrides from `environ`, validate everything or raise ConfigError."""
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    return settings_from_document(document, environ, source=str(path))


def settings_from_document(document: Mapping[str, Any], environ: Mapping[str, str], source: str) -> Settings:
    """Build Settings from a parsed TOML document and environment overrides."""
    sections: dict[str, Any] = {}
    hints = get_type_hints(Settings)
    known_env = {ENV_PREFIX + f"{name}_{f.name}".upper() for name, cls in hints.items() for f in _fields(cls)}
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
        sections[name] = _build_section(name, cls, table, environ, source)
    return Settings(**sections)


def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)


def _build_section(
    section: str, cls: type, table: Mapping[str, Any], environ: Mapping[str, str], source: str
) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in _fields(cls)}
    for key in table:
        if key not in names:
            raise ConfigError(f"{source}: unknown key {section}.{key}")
    values: dict[str, Any] = {}
    for f in _fields(cls):
        env_name = f"{ENV_PREFIX}{section}_{f.name}".upper()
        where = f"{section}.{f.name}"
        if env_name in environ:
            raw: Any = environ[env_name]
            value = _from_env(hints[f.name], raw, f"{env_name}")
            where = env_name
        elif f.name in table:
            raw = table[f.name]
            value = _from_toml(hints[f.name], raw, f"{source}: {where}")
        else:
            raise ConfigError(f"{source}: missing key {where}")
        problem = f.metadata["check"](value)
        if problem is not None:
            raise ConfigError(f"{where} = {raw!r} {problem}")
        values[f.name] = value
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
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{where} = {raw!r} must be of type {kind.__name__}") from None


def _is_str_tuple(kind: Any) -> bool:
    return isinstance(kind, types.GenericAlias) and kind.__origin__ is tuple

"""Configuration loading, overrides and errors."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import get_type_hints

import pytest

from readings_service.config import (
    ConfigError,
    Settings,
    config_path,
    load,
    load_settings,
    render,
    settings_from_document,
)

ROOT = Path(__file__).resolve().parent.parent.parent


class TestLoading:
    def test_shipped_file_loads(self) -> None:
        """The committed config.toml is valid and its values arrive typed."""
        settings = load_settings(ROOT / "config.toml", {})
        assert ("127.0.0.1",) == settings.cassandra.contact_points
        assert 16 == settings.storage.buckets
        assert isinstance(settings.cassandra.request_timeout_s, float)

    def test_environment_overrides_every_kind(self) -> None:
        """READINGS_<SECTION>_<KEY> overrides strings, ints, floats and lists."""
        env = {
            "READINGS_CASSANDRA_KEYSPACE": "other",
            "READINGS_HTTP_PORT": "9000",
            "READINGS_CASSANDRA_REQUEST_TIMEOUT_S": "2.5",
            "READINGS_CASSANDRA_CONTACT_POINTS": "10.0.0.1, 10.0.0.2",
        }
        settings = load_settings(ROOT / "config.toml", env)
        assert "other" == settings.cassandra.keyspace
        assert 9000 == settings.http.port
        assert 2.5 == settings.cassandra.request_timeout_s
        assert ("10.0.0.1", "10.0.0.2") == settings.cassandra.contact_points


class TestDefaults:
    def test_defaults_are_what_config_toml_documents(self) -> None:
        """The dataclass defaults equal config.toml, so running without a file behaves like running with it."""
        assert load_settings(ROOT / "config.toml", {}) == Settings()

    def test_config_toml_names_every_setting(self) -> None:
        """config.toml stays the complete, commented reference: every section and key appears in it."""
        with (ROOT / "config.toml").open("rb") as file:
            document = tomllib.load(file)
        defaults = Settings()
        expected = {
            section.name: sorted(f.name for f in dataclasses.fields(getattr(defaults, section.name)))
            for section in dataclasses.fields(defaults)
        }
        assert expected == {name: sorted(table) for name, table in document.items()}

    def test_no_file_gives_defaults(self) -> None:
        """With no file the defaults apply, environment overrides still do, and origins say which is which."""
        loaded = load(None, {"READINGS_HTTP_PORT": "9000"})
        assert dataclasses.replace(Settings(), http=dataclasses.replace(Settings().http, port=9000)) == loaded.settings
        assert "READINGS_HTTP_PORT" == loaded.origins["http.port"]
        assert "default" == loaded.origins["http.host"]
        assert loaded.path is None

    def test_missing_key_takes_its_default(self, tmp_path: Path) -> None:
        """A file may name only the keys it changes; the rest keep their defaults."""
        path = tmp_path / "c.toml"
        path.write_text("[storage]\nbuckets = 8\n")
        loaded = load(path, {})
        assert dataclasses.replace(Settings(), storage=dataclasses.replace(Settings().storage, buckets=8)) == (
            loaded.settings
        )
        assert str(path) == loaded.origins["storage.buckets"]
        assert "default" == loaded.origins["cassandra.keyspace"]


class TestConfigPath:
    def test_explicit_path_wins(self, tmp_path: Path) -> None:
        """--config comes before READINGS_CONFIG, even when it does not exist (loading it then fails)."""
        assert tmp_path / "a.toml" == config_path(tmp_path / "a.toml", {"READINGS_CONFIG": "b.toml"})

    def test_environment_names_the_file(self) -> None:
        """READINGS_CONFIG is used as given; an empty one counts as unset."""
        assert Path("b.toml") == config_path(None, {"READINGS_CONFIG": "b.toml"})

    def test_working_directory_file_if_it_exists(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without --config or READINGS_CONFIG, ./config.toml is read if present, else no file at all."""
        monkeypatch.chdir(tmp_path)
        assert config_path(None, {"READINGS_CONFIG": ""}) is None
        (tmp_path / "config.toml").write_text("")
        assert Path("config.toml") == config_path(None, {})


class TestRender:
    def test_round_trips_through_toml(self) -> None:
        """The rendered text is TOML that parses back to the same settings, lists and quotes included."""
        env = {"READINGS_CASSANDRA_CONTACT_POINTS": "10.0.0.1,10.0.0.2", "READINGS_CASSANDRA_LOCAL_DC": 'dc "1"'}
        loaded = load(ROOT / "config.toml", env)
        assert loaded.settings == settings_from_document(tomllib.loads(render(loaded)), {}, "rendered")

    def test_each_value_names_its_origin(self, tmp_path: Path) -> None:
        """Each value is followed by its origin: default, the file's path, or the variable; the file heads it."""
        path = tmp_path / "c.toml"
        path.write_text("[http]\nport = 8181\n")
        lines = render(load(path, {"READINGS_STORAGE_BUCKETS": "4"})).splitlines()
        assert f"# readings-service configuration in effect; file: {path}" == lines[0]
        section, origins = "", {}
        for line in lines[1:]:
            if line.startswith("["):
                section = line.strip("[]")
            elif line:
                key, rest = line.split(" = ", 1)
                origins[f"{section}.{key}"] = rest.split("  # ")[1]
        assert str(path) == origins["http.port"]
        assert "READINGS_STORAGE_BUCKETS" == origins["storage.buckets"]
        assert "default" == origins["cassandra.port"]
        fields = {
            f"{name}.{f.name}"
            for name, section in get_type_hints(Settings).items()
            for f in dataclasses.fields(section)
        }
        assert fields == set(origins)


class TestAuth:
    def test_shipped_defaults(self) -> None:
        """Authentication is required by default; tokens are re-read every 2 s."""
        settings = load_settings(ROOT / "config.toml", {})
        assert settings.auth.required is True
        assert 2.0 == settings.auth.refresh_interval_s

    def test_section_may_be_left_out(self, tmp_path: Path) -> None:
        """Without [auth] in the file, its defaults apply."""
        path = tmp_path / "c.toml"
        text = (ROOT / "config.toml").read_text()
        path.write_text(text[: text.index("[auth]")])
        settings = load_settings(path, {})
        assert (True, 2.0) == (settings.auth.required, settings.auth.refresh_interval_s)

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [("false", False), ("FALSE", False), ("0", False), ("true", True), ("True", True), ("1", True)],
    )
    def test_boolean_environment_values(self, raw: str, expected: bool) -> None:
        """Booleans from the environment are true/false/1/0, any case."""
        settings = load_settings(ROOT / "config.toml", {"READINGS_AUTH_REQUIRED": raw})
        assert expected is settings.auth.required

    @pytest.mark.parametrize("raw", ["yes", "no", "off", "", "2"])
    def test_other_boolean_words_are_refused(self, raw: str) -> None:
        """Anything else is refused naming the variable (bool("false") would have been True)."""
        with pytest.raises(ConfigError) as caught:
            load_settings(ROOT / "config.toml", {"READINGS_AUTH_REQUIRED": raw})
        assert f"READINGS_AUTH_REQUIRED = {raw!r} must be true or false (or 1 or 0)" == str(caught.value)

    @pytest.mark.parametrize("value", ['"false"', "0", "1"])
    def test_toml_booleans_must_be_booleans(self, tmp_path: Path, value: str) -> None:
        """In the file, only a TOML boolean will do."""
        path = tmp_path / "c.toml"
        path.write_text((ROOT / "config.toml").read_text().replace("required = true", f"required = {value}"))
        with pytest.raises(ConfigError, match=r"auth\.required = .* must be of type bool"):
            load_settings(path, {})

    def test_refresh_interval_bounds(self) -> None:
        """The refresh interval is a number of seconds between 0.1 and 3600."""
        with pytest.raises(ConfigError, match=r"READINGS_AUTH_REFRESH_INTERVAL_S = .0. must be between 0\.1 and 3600"):
            load_settings(ROOT / "config.toml", {"READINGS_AUTH_REFRESH_INTERVAL_S": "0"})


class TestOldestTimestamp:
    def test_default_is_2000(self) -> None:
        """ingest.oldest_ts defaults to 2000-01-01 UTC, and the rules ingest applies carry it in epoch ms."""
        settings = load_settings(None, {})
        assert "2000-01-01T00:00:00Z" == settings.ingest.oldest_ts
        assert 946_684_800_000 == settings.timestamp_rules().oldest_ms

    def test_from_environment(self) -> None:
        """Any RFC 3339 date-time with an offset will do; it is converted to UTC."""
        settings = load_settings(None, {"READINGS_INGEST_OLDEST_TS": "2020-01-01T01:00:00+01:00"})
        assert 1_577_836_800_000 == settings.timestamp_rules().oldest_ms

    def test_shown_by_config_show(self) -> None:
        """`config show` lists the key with its value and origin."""
        rendered = render(load(None, {}))
        assert re.search(r'^oldest_ts = "2000-01-01T00:00:00Z" +# default$', rendered, re.MULTILINE)

    @pytest.mark.parametrize("value", ["2000-01-01", "2000-01-01T00:00:00", "yesterday", "946684800000"])
    def test_bad_value_names_key_and_value(self, value: str) -> None:
        """A date without a time or offset, or a number, is refused with the key and the value."""
        with pytest.raises(ConfigError, match=r"READINGS_INGEST_OLDEST_TS = .* must be an RFC 3339 date-time"):
            load_settings(None, {"READINGS_INGEST_OLDEST_TS": value})


class TestRetention:
    def test_kept_forever_by_default(self) -> None:
        assert 0 == load_settings(None, {}).storage.retention_days

    def test_carried_into_timestamp_rules(self) -> None:
        """The rules ingest applies refuse readings older than retention_days, counted from the clock."""
        settings = load_settings(None, {"READINGS_STORAGE_RETENTION_DAYS": "30"})
        limits = settings.timestamp_rules().limits(now_s=1_800_000_000)
        assert (30, 1_800_000_000_000 - 30 * 86_400_000) == (limits.retention_days, limits.retained_from_ms)

    @pytest.mark.parametrize("value", ["-1", "3651"])
    def test_bounds(self, value: str) -> None:
        with pytest.raises(ConfigError, match=r"READINGS_STORAGE_RETENTION_DAYS = .* must be between 0 and 3650"):
            load_settings(None, {"READINGS_STORAGE_RETENTION_DAYS": value})


class TestCorsOrigins:
    def test_none_by_default(self) -> None:
        assert () == load_settings(None, {}).http.cors_origins
        assert () == load_settings(ROOT / "config.toml", {}).http.cors_origins

    def test_from_file_and_environment(self, tmp_path: Path) -> None:
        """A TOML list, or a comma-separated variable; `config show` prints them as a TOML list."""
        path = tmp_path / "c.toml"
        path.write_text('[http]\ncors_origins = ["https://app.example.com", "http://localhost:3000"]\n')
        loaded = load(path, {})
        assert ("https://app.example.com", "http://localhost:3000") == loaded.settings.http.cors_origins
        assert 'cors_origins = ["https://app.example.com", "http://localhost:3000"]' in render(loaded)
        env = {"READINGS_HTTP_CORS_ORIGINS": "https://a.example.com, http://[::1]:8000"}
        assert ("https://a.example.com", "http://[::1]:8000") == load_settings(None, env).http.cors_origins

    @pytest.mark.parametrize(
        "origin", ["*", "https://app.example.com/", "app.example.com", "https://a.com/path", "ftp://a.com", ""]
    )
    def test_only_origins(self, tmp_path: Path, origin: str) -> None:
        """Exact origins only: no wildcard, no path, no trailing slash; the message names the bad entry."""
        path = tmp_path / "c.toml"
        path.write_text(f'[http]\ncors_origins = ["https://ok.example.com", "{origin}"]\n')
        expected = r"http\.cors_origins = .* must list origins.*not " + re.escape(repr(origin))
        with pytest.raises(ConfigError, match=expected):
            load_settings(path, {})


class TestErrors:
    @pytest.mark.parametrize(
        ("env", "expected"),
        [
            ({"READINGS_HTTP_PORT": "eighty"}, "READINGS_HTTP_PORT = 'eighty' must be of type int"),
            ({"READINGS_HTTP_PORT": "70000"}, "READINGS_HTTP_PORT = '70000' must be between 0 and 65535"),
            ({"READINGS_STORAGE_BUCKETS": "0"}, "must be between 1 and 1024"),
            ({"READINGS_CASSANDRA_WRITE_CONSISTENCY": "MOST"}, "must be one of ONE"),
            ({"READINGS_CASSANDRA_KEYSPACE": "drop table"}, "must be a CQL identifier"),
            ({"READINGS_HTTP_PROT": "1"}, "READINGS_HTTP_PROT names no setting"),
        ],
    )
    def test_bad_environment_value_names_key_and_value(self, env: dict[str, str], expected: str) -> None:
        """A bad override fails with the variable and the value in the message."""
        with pytest.raises(ConfigError) as caught:
            load_settings(ROOT / "config.toml", env)
        assert expected in str(caught.value)

    @pytest.mark.parametrize(
        ("old", "new", "expected"),
        [
            ("port = 8080", "port = 'x'", "http.port = 'x' must be of type int"),
            ("[http]", "[htp]\n[http]", "unknown section [htp]"),
            ("port = 8080", "port = 8080\nportt = 1", "unknown key http.portt"),
            ("[http]", "[http", "is not valid TOML"),
            ("buckets = 16", "buckets = 16.5", "storage.buckets = 16.5 must be of type int"),
        ],
    )
    def test_bad_file_names_key(self, tmp_path: Path, old: str, new: str, expected: str) -> None:
        """A bad file fails with the file, the key and the value."""
        path = tmp_path / "bad.toml"
        path.write_text((ROOT / "config.toml").read_text().replace(old, new))
        with pytest.raises(ConfigError) as caught:
            load_settings(path, {})
        assert expected in str(caught.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A config path that does not exist is named."""
        with pytest.raises(ConfigError) as caught:
            load_settings(tmp_path / "nope.toml", {})
        assert "nope.toml does not exist" in str(caught.value)

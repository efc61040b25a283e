"""Configuration loading, overrides and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from readings_service.config import ConfigError, load_settings

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

    def test_missing_key(self, tmp_path: Path) -> None:
        """A key left out is named."""
        path = tmp_path / "c.toml"
        path.write_text((ROOT / "config.toml").read_text().replace("buckets = 16\n", ""))
        with pytest.raises(ConfigError) as caught:
            load_settings(path, {})
        assert "missing key storage.buckets" in str(caught.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A config path that does not exist is named."""
        with pytest.raises(ConfigError) as caught:
            load_settings(tmp_path / "nope.toml", {})
        assert "nope.toml does not exist" in str(caught.value)

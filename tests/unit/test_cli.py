"""The command line without a database: version, configuration display and configuration errors."""

from __future__ import annotations

import dataclasses
import os
from importlib import metadata
from pathlib import Path
from typing import get_type_hints

import pytest

from readings_service.cli import main
from readings_service.config import Settings
from tests.conftest import ROOT, run_cli


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory without config.toml and an environment without READINGS_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("READINGS_"):
            monkeypatch.delenv(name)
    return tmp_path


class TestVersion:
    def test_prints_installed_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--version prints the version the package was installed with, and exits 0."""
        with pytest.raises(SystemExit) as exited:
            main(["--version"])
        assert 0 == exited.value.code
        assert f"readings-service {metadata.version('readings-service')}\n" == capsys.readouterr().out


class TestConfigShow:
    def test_defaults_without_any_file(self, bare: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """With no file anywhere, every value is the default."""
        main(["config", "show"])
        out = capsys.readouterr().out
        assert out.startswith("# readings-service configuration in effect; file: none (defaults)\n")
        values = [line for line in out.splitlines() if " = " in line]
        settings = Settings.__dataclass_fields__
        assert sum(len(dataclasses.fields(get_type_hints(Settings)[name])) for name in settings) == len(values)
        assert all(line.endswith("  # default") for line in values)
        assert 'keyspace = "readings"' in out

    def test_working_directory_file_and_environment(
        self, bare: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """./config.toml is read when present; a READINGS_* variable overrides it; each line says which."""
        (bare / "config.toml").write_text('[cassandra]\nkeyspace = "site"\nport = 9142\n')
        monkeypatch.setenv("READINGS_CASSANDRA_PORT", "9242")
        main(["config", "show"])
        lines = capsys.readouterr().out.splitlines()
        assert "# readings-service configuration in effect; file: config.toml" == lines[0]
        assert any(line.startswith('keyspace = "site" ') and line.endswith("# config.toml") for line in lines)
        assert any(line.startswith("port = 9242 ") and line.endswith("# READINGS_CASSANDRA_PORT") for line in lines)

    @pytest.mark.parametrize("how", ["option", "environment"])
    def test_named_file_must_exist(
        self, bare: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, how: str
    ) -> None:
        """A file named by --config or READINGS_CONFIG that is missing stops with its path, not defaults."""
        (bare / "config.toml").write_text("")  # present, but not the file that was asked for
        argv = ["config", "show"]
        if how == "option":
            argv = ["--config", "other.toml", *argv]
        else:
            monkeypatch.setenv("READINGS_CONFIG", "other.toml")
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert "readings-service: configuration error: config file other.toml does not exist" == exited.value.code
        assert "" == capsys.readouterr().out

    def test_unknown_variable_is_an_error(self, bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A READINGS_* variable that names no setting stops the command, with or without a file."""
        monkeypatch.setenv("READINGS_HTTP_PROT", "1")
        with pytest.raises(SystemExit) as exited:
            main(["config", "show"])
        assert "environment variable READINGS_HTTP_PROT names no setting" in str(exited.value.code)


class TestCliConfigErrors:
    """Errors found before any connection is opened: a whole process, exit status and stderr."""

    def test_bad_environment_value(self) -> None:
        """A bad override stops start-up naming the key and value, exit non-zero, no traceback."""
        result = run_cli("serve", env={"READINGS_HTTP_PORT": "eighty"})
        assert 1 == result.returncode
        assert "READINGS_HTTP_PORT = 'eighty' must be of type int" in result.stderr
        assert "Traceback" not in result.stderr

    def test_config_flag_selects_file(self, tmp_path: Path) -> None:
        """--config PATH is the file read; a bad value in it is named with the file."""
        path = tmp_path / "other.toml"
        path.write_text((ROOT / "config.toml").read_text().replace("buckets = 16", "buckets = -1"))
        result = run_cli("--config", str(path), "schema", "apply")
        assert 1 == result.returncode
        assert "storage.buckets = -1 must be between 1 and 1024" in result.stderr
        assert "Traceback" not in result.stderr

"""The package as a user gets it: a wheel installed into a fresh virtual environment outside the repository,
run from a directory with no config.toml against the test node."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from readings_service.store.schema import recorded_buckets
from tests.conftest import ROOT, env_without_readings, run_keyspace, settings_for

KEYSPACE = run_keyspace("readings_test_install")
# Everything the build must not see: local environments, caches and earlier build output.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    ".state",
    ".bench-state",
)


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )
    assert 0 == done.returncode, f"{' '.join(map(str, command))}:\n{done.stdout}{done.stderr}"
    return done.stdout


def build_wheel(tmp_path: Path) -> Path:
    """A wheel built from a copy of the working tree, so no stale build/ directory can leak into it."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_SOURCE)
    # Build isolation fetches the build backend pyproject.toml asks for (from pip's cache after the first run).
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--disable-pip-version-check",
        "--quiet",
        "--wheel-dir",
        tmp_path / "dist",
        source,
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("readings_service-*.whl")
    return wheel


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_of(url: str) -> int | None:
    """The HTTP status `url` answers with, or None while nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError):
        return None


@contextlib.contextmanager
def serving(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`command` running until the block ends; then SIGTERM (killed if it does not stop within 30 s)."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class TestInstalledWheel:
    def test_wheel_serves_without_a_config_file(self, tmp_path: Path, cassandra_session: Any) -> None:
        """Built, installed elsewhere and run with defaults plus READINGS_* only: schema apply, then serve."""
        wheel = build_wheel(tmp_path)
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
        assert {"readings_service/store/cql/readings.cql", "readings_service/py.typed"} <= names

        venv = tmp_path / "venv"
        run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
        run(
            venv / "bin" / "python",
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
            wheel,
            cwd=tmp_path,
        )

        work = tmp_path / "work"  # empty: no config.toml to find
        work.mkdir()
        port = free_port()
        env = {key: value for key, value in env_without_readings().items() if key != "PYTHONPATH"} | {
            "READINGS_CASSANDRA_KEYSPACE": KEYSPACE,
            "READINGS_CASSANDRA_CONTACT_POINTS": ",".join(settings_for().cassandra.contact_points),
            "READINGS_HTTP_PORT": str(port),
        }
        where = run(
            venv / "bin" / "python",
            "-c",
            "import readings_service; print(readings_service.__file__)",
            cwd=work,
            env=env,
        )
        assert Path(where.strip()).is_relative_to(venv)

        command = str(venv / "bin" / "readings-service")
        applied = run(command, "schema", "apply", cwd=work, env=env)
        assert f"schema applied to keyspace {KEYSPACE} (16 buckets)" in applied
        assert 16 == recorded_buckets(cassandra_session, KEYSPACE)

        log = tmp_path / "serve.log"
        with serving([command, "serve"], work, env, log) as process:
            deadline = time.monotonic() + 30
            while status_of(f"http://127.0.0.1:{port}/health") is None:
                assert process.poll() is None, f"serve exited:\n{log.read_text()}"
                if time.monotonic() > deadline:
                    pytest.fail(f"serve did not answer within 30 s:\n{log.read_text()}")
                time.sleep(0.1)
            assert 200 == status_of(f"http://127.0.0.1:{port}/health")
            assert 200 == status_of(f"http://127.0.0.1:{port}/ready")
        assert 0 == process.returncode, log.read_text()

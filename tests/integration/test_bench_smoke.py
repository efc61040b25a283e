"""The benchmark script still runs end to end (a seconds-long smoke run; timings are not asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, env_without_readings


class TestBenchSmoke:
    def test_smoke_run_reports_every_section(self, tmp_path: Path, cassandra_session: object) -> None:
        """`scripts/bench.py --smoke` measures every side and writes the report."""
        env = env_without_readings() | {"TMPDIR": str(tmp_path)}
        result = subprocess.run(
            [sys.executable, "scripts/bench.py", "--smoke", "--keyspace", "bench_smoke"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert 0 == result.returncode, result.stderr[-3000:]
        report = (tmp_path / "BENCHMARKS.smoke.md").read_text()
        for heading in ("## Ingest", "## Range query", "## Small queries", "## Merge kernel"):
            assert heading in report
        assert re.search(r"\| service \(HTTP\) \| [\d,]+ \|", report)
        assert re.search(r"\| 2,000 \| [\d,]+ \| [\d,]+ \| [\d,]+ \|", report)

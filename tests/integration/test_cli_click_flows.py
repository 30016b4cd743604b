"""-q, -v and --json on a verb that runs a Prefect flow, in a fresh `keel` process (issue 16.5, ADR 0030).

In a fresh process Prefect configures its loggers from the level `keel` sets, and Great Expectations
logs through its own handler: only a real subprocess shows what a user's terminal would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamflow_churn.yaml")
SMALL = ["data.rows=500", "contract.ge_sample_rows=0"]

pytestmark = pytest.mark.slow


def keel(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GX_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),  # its own ephemeral API, not ~/.prefect
        "KEEL_WARM": "0",
    }
    env.pop("PREFECT_API_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_quiet_json_flow_prints_the_json_line_and_nothing_else(tmp_path: Path) -> None:
    done = keel(tmp_path, "-q", "validate", SPEC, *SMALL, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = done.stdout.splitlines()
    assert json.loads(line)["status"] == "ok"
    assert done.stderr == ""  # no Prefect, Great Expectations or warning lines


def test_verbose_flow_shows_prefect_debug_lines(tmp_path: Path) -> None:
    done = keel(tmp_path, "-v", "validate", SPEC, *SMALL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "validation passed" in done.stdout
    assert " DEBUG prefect" in done.stderr and "DEBUG keel.cli: keel validate: exit 0" in done.stderr

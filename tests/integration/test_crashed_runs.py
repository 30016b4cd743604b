"""A `keel run` killed with SIGKILL stays Running in Prefect; the next run of the spec marks it Crashed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamflow_churn.yaml")

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def test_a_killed_run_is_marked_crashed_by_the_next_run(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    runs = tmp_path / "runs"
    overrides = [f"runtime.runs_dir={runs}", f"runtime.bentoml_home={tmp_path / 'store'}"]
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "GX_ANALYTICS_ENABLED": "false"}
    keel = str(Path(sys.executable).parent / "keel")
    proc = subprocess.Popen([keel, "run", SPEC, "data.rows=200000", *overrides], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    record = None
    while record is None:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        found = list(runs.glob("streamflow-churn/*-run-*/run.json"))
        record = json.loads(found[0].read_text()) if found else None
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(record["flow_run_id"]).state.is_running()  # Prefect cannot know

    from pipeline.cli import main

    assert main(["validate", SPEC, "data.rows=500", *overrides]) == 0  # the next keel verb of this spec
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(record["flow_run_id"]).state
    assert state.is_crashed() and "process died" in (state.message or "")
    [validate] = runs.glob("streamflow-churn/*-validate-*/run.json")
    assert json.loads(validate.read_text())["marked_crashed"] == [record["flow_run_id"]]

"""The warm runner (ADR 0034): a flow verb handed to a pre-imported process behaves as a cold `keel`.

Real processes throughout: the runner is started as `keel server start` starts it, and `keel` is the
installed console script talking to it over its Unix socket.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.processes import pid_alive
from pipeline.warm.control import runner_running, start_runner, stop_runner

KEEL = str(Path(sys.executable).parent / "keel")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    env_before = os.environ.get("KEEL_WARM")
    os.environ.pop("KEEL_WARM", None)
    start_runner(tmp_path)
    try:
        yield tmp_path
    finally:
        stop_runner(tmp_path)
        if env_before is not None:
            os.environ["KEEL_WARM"] = env_before


def keel(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "KEEL_WARM"} | {"GX_ANALYTICS_ENABLED": "false"} | env
    return subprocess.run([KEEL, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


def served(project: Path) -> list[str]:
    """The runner log's lines for the commands it forked."""
    log = (project / ".keel" / "runner" / "runner.log").read_text(encoding="utf-8")
    return [line for line in log.splitlines() if " pid " in line and ": keel " in line]


def _gone(pid: int, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


def test_a_flow_verb_is_served_warm_with_the_callers_directory_streams_and_exit_status(project: Path) -> None:
    (project / "specs").mkdir()
    (project / "specs" / "broken.yaml").write_text("name: broken\ntask: binary_classification\nnot_a_key: 1\n")
    done = keel(project, "run", "specs/broken.yaml", "--json")  # relative: resolved in the caller's directory
    assert done.returncode == 2, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])  # stdout: the JSON alone
    assert report["status"] == "error" and "not_a_key" in json.dumps(report)
    assert "not_a_key" in done.stderr and "Traceback" not in done.stderr
    [line] = served(project)
    assert f"in {project}: keel run specs/broken.yaml" in line
    child = int(re.search(r" pid (\d+) ", line).group(1))
    assert _gone(child)  # the child exits (and is reaped) with the command


def test_cheap_verbs_and_keel_warm_0_stay_in_the_callers_process(project: Path) -> None:
    assert keel(project, "show", "missing.yaml").returncode == 2
    assert keel(project, "run", "missing.yaml", KEEL_WARM="0").returncode == 2
    assert served(project) == []


def test_a_runner_that_would_import_differently_hands_the_command_back(project: Path) -> None:
    # OpenMP sized its pool at import; a value other than the runner's (a LocalCluster's nanny sets 1 in its process)
    other = str(int(os.environ.get("OMP_NUM_THREADS") or "1") + 1)
    done = keel(project, "validate", "missing.yaml", OMP_NUM_THREADS=other)
    assert done.returncode == 2
    assert "warm runner cannot serve this (OMP_NUM_THREADS differs" in done.stderr and "file not found" in done.stderr
    assert served(project) == []


def test_ctrl_c_reaches_the_child_and_the_runner_survives(project: Path) -> None:
    spec = Path(__file__).resolve().parents[2] / "specs" / "streamflow_churn.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {"GX_ANALYTICS_ENABLED": "false"}
    env["PREFECT_HOME"] = str(project / "prefect-home")  # no server: a long start, time to interrupt it
    client = subprocess.Popen([KEEL, "run", str(spec), "data.rows=500"], cwd=project, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not served(project) and time.monotonic() < deadline:
        time.sleep(0.1)
    [line] = served(project)
    child = int(re.search(r" pid (\d+) ", line).group(1))
    time.sleep(1.0)
    client.send_signal(signal.SIGINT)
    code = client.wait(timeout=60)
    # 130: interrupted before the CLI started; 1: click's own "Aborted!" once it runs, as a cold keel exits
    assert code in (1, 130), client.stderr.read().decode()[-2000:]
    assert _gone(child)
    assert runner_running(project) is not None  # the next command is still served warm
    assert keel(project, "run", "missing.yaml").returncode == 2 and len(served(project)) == 2


def test_a_caller_killed_outright_takes_its_command_with_it(project: Path) -> None:
    spec = Path(__file__).resolve().parents[2] / "specs" / "streamflow_churn.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {"GX_ANALYTICS_ENABLED": "false"}
    env["PREFECT_HOME"] = str(project / "prefect-home")
    client = subprocess.Popen([KEEL, "run", str(spec), "data.rows=500"], cwd=project, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not served(project) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(re.search(r" pid (\d+) ", served(project)[0]).group(1))
    time.sleep(1.0)
    client.kill()  # SIGKILL: nothing the client can forward
    client.wait(timeout=10)
    assert _gone(child)


def test_stop_removes_the_socket_and_commands_run_cold_again(tmp_path: Path) -> None:
    info, started = start_runner(tmp_path)
    assert started and start_runner(tmp_path) == (info, False)  # idempotent
    stop_runner(tmp_path)
    assert not pid_alive(info.pid) and not Path(info.socket).exists()
    assert keel(tmp_path, "run", "missing.yaml").returncode == 2  # no runner: cold, same answer

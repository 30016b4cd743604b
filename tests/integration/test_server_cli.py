"""`keel server start|status|stop`: a real Prefect server in the background that every verb then reports to."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KEEL = str(Path(sys.executable).parent / "keel")
SPEC = str(REPO / "specs" / "streamflow_churn.yaml")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keel(cwd: Path, env: dict[str, str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([KEEL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_server_runs_in_the_background_and_every_verb_uses_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}  # nothing names a server
    env |= {"PREFECT_HOME": str(tmp_path / "client-home"), "GX_ANALYTICS_ENABLED": "false"}
    database = f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
    started = keel(tmp_path, env, "server", "start", "--port", str(_free_port()), "--database", database, "--json")
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        info = json.loads(started.stdout.strip().splitlines()[-1])
        assert info["started"] and (tmp_path / ".keel" / "prefect" / "server.json").is_file()
        assert info["runner"]["socket"].endswith("runner.sock")  # the warm runner beside it (ADR 0034)
        status = keel(tmp_path, env, "server", "status", "--json")
        assert status.returncode == 0 and json.loads(status.stdout.splitlines()[-1])["url"] == info["url"]
        again = keel(tmp_path, env, "server", "start", "--json")  # idempotent: the running one is reused
        assert json.loads(again.stdout.splitlines()[-1])["started"] is False

        validated = keel(tmp_path, env, "validate", SPEC, "data.rows=500")
        assert validated.returncode == 0, validated.stderr[-3000:]
        assert "temporary server" not in validated.stdout + validated.stderr  # no 10-15 s ephemeral server
        served = (tmp_path / ".keel" / "runner" / "runner.log").read_text()  # the warm runner forked it (ADR 0034)
        assert f"in {tmp_path}: keel validate {SPEC}" in served
        request = urllib.request.Request(
            info["url"] + "/flow_runs/filter", data=b"{}", headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            runs = json.loads(answer.read())
        assert [r["state_name"] for r in runs] == ["Completed"], runs
    finally:
        stopped = keel(tmp_path, env, "server", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not (tmp_path / ".keel" / "runner" / "runner.sock").exists()  # the runner stopped with the server
    assert keel(tmp_path, env, "server", "status").returncode == 1
    assert keel(tmp_path, env, "server", "start", "data.rows=5").returncode == 2  # no overrides here

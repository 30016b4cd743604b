"""`keel schedule` against a real Prefect server on loopback: deployments, schedules, a run from the API.

The server gets a fresh PostgreSQL database (dropped at the end) when 127.0.0.1:5432 takes one,
else SQLite in a temporary directory. The runner is `keel schedule SPEC` itself (serve mode),
started here and killed at the end, like an operator's long-running process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SPEC = REPO / "specs" / "streamflow_churn.yaml"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _database(tmp: Path) -> Iterator[str]:
    name = f"keel_test_{os.getpid()}"
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
    except Exception:  # no PostgreSQL here: SQLite still exercises the same API
        yield f"sqlite+aiosqlite:///{tmp / 'prefect.db'}"
        return
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Path]]:
    tmp = tmp_path_factory.mktemp("schedule")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        # the scheduler visits deployments every 5 s instead of 60 s, so a test waits for one cron minute only
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "GX_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PYTHONPATH": str(REPO),
    }
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    with _database(tmp) as db, open(tmp / "server.log", "w") as log:
        cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        proc = subprocess.Popen(
            cmd,
            env=env | {"PREFECT_API_DATABASE_CONNECTION_URL": db},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                assert proc.poll() is None, (tmp / "server.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "prefect server not healthy in 180 s"
                with contextlib.suppress(OSError), urllib.request.urlopen(f"{api}/health", timeout=2) as r:
                    if r.status == 200:
                        break
                time.sleep(0.5)
            yield api, env | {"PREFECT_API_URL": api}, tmp
        finally:
            _stop(proc)


EVERY_MINUTE = "* * * * *"


def _wait_for_scheduled_run(client, deployment_id, runner, log: Path, after: set, timeout_s: float = 300):
    """The next run the server's scheduler created (auto_scheduled) for the deployment, once it is final."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
    from prefect.client.schemas.sorting import FlowRunSort

    deadline = time.monotonic() + timeout_s
    seen = None
    while True:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )
        fresh = [r for r in runs if r.auto_scheduled and r.id not in after]
        final = [r for r in fresh if r.state is not None and r.state.is_final()]
        if final:
            return final[0]
        seen = [(str(r.expected_start_time), r.state_name) for r in fresh] or seen
        assert runner.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no scheduled run finished in {timeout_s} s; runs seen: {seen}"
        time.sleep(2)


def test_schedule_fires_on_the_server_and_the_runner_executes_it(server) -> None:
    """The operator's path: keel schedule with a cron; the server's scheduler creates runs; keel executes them."""
    api, env, tmp = server
    overrides = [
        "data.rows=2000",
        f"runtime.runs_dir={tmp / 'runs'}",
        f"runtime.bentoml_home={tmp / 'bentoml'}",
        f"triggers.schedule.cron='{EVERY_MINUTE}'",
    ]
    keel = [str(BIN / "keel"), "schedule", str(SPEC), *overrides]
    done = subprocess.run([*keel, "--register-only", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    registered = {d["name"]: d["cron"] for d in json.loads(done.stdout.strip().splitlines()[-1])["deployments"]}
    assert registered == {
        "keel-retrain/streamflow-churn-retrain": [EVERY_MINUTE],
        "keel-monitor/streamflow-churn-monitor": ["30 0 * * *"],
        "keel-rollout-stage/streamflow-churn-rollout": ["15 * * * *"],
    }

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    settings = {PREFECT_API_URL: api, PREFECT_HOME: tmp / "client-home"}
    with temporary_settings(settings), get_client(sync_client=True) as client:
        retrain = client.read_deployment_by_name("keel-retrain/streamflow-churn-retrain")
        monitor = client.read_deployment_by_name("keel-monitor/streamflow-churn-monitor")
        [schedule] = retrain.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (EVERY_MINUTE, "UTC", True)
        assert retrain.global_concurrency_limit.limit == 1  # two retrains of one spec would race for the champion alias
        assert monitor.parameters["start_retrain"] is True  # a scheduled monitor acts on what it finds
        assert retrain.parameters["spec_path"] == str(SPEC) and retrain.parameters["overrides"] == overrides
        # the UI shows typed, described parameters: the trigger is a choice, not free text
        trigger = retrain.parameter_openapi_schema["properties"]["trigger"]
        assert trigger["enum"] == ["schedule", "drift", "performance", "manual"] and trigger["description"]

        log = tmp / "runner.log"
        with open(log, "w") as out:
            runner = subprocess.Popen(
                keel, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            # nobody starts a run here: the server's scheduler creates it from the cron, the runner executes it
            first = _wait_for_scheduled_run(client, retrain.id, runner, log, set())
            assert first.state.is_completed() and first.state_name == "Completed", log.read_text()[-3000:]
            assert first.parameters.get("trigger", "schedule") == "schedule"
            artifacts = {a.key for a in client.read_artifacts() if a.flow_run_id == first.id}
            assert "streamflow-churn-retrain" in artifacts, artifacts
            # the next minute's run is deduplicated against the retrain that ran, and says so in its state name
            second = _wait_for_scheduled_run(client, retrain.id, runner, log, {first.id})
            assert second.state.is_completed() and second.state_name == "No retrain", second.state
            # why: min_interval, or, when a loaded box started the first run late, the same minute as it
            message = second.state.message or ""
            assert "min_interval" in message or "started this minute" in message, message
        finally:
            _stop(runner)

        # a drift trigger firing starts the retrain deployment (the runner is gone: the run waits, scheduled)
        from flows.schedule import start_retrain
        from pipeline.spec.load import load_spec
        from pipeline.triggers import TriggerEngine
        from pipeline.triggers.facts import DayFacts

        loaded = load_spec(SPEC, overrides)
        decision = TriggerEngine.for_spec(loaded.spec).on_facts(DayFacts(date(2026, 3, 1), {"sessions_last_30d": 0.4}))
        started = start_retrain(loaded, decision)
        assert started["started"] == "deployment"
        queued = client.read_flow_run(started["flow_run_id"])
        assert queued.deployment_id == retrain.id and queued.parameters["trigger"] == "drift"
        # the drift trigger's approval flag travels with the run: its rollout's canary will wait for a person
        assert queued.parameters["approval"] is True and "sessions_last_30d" in queued.parameters["reason"]
    # the scheduled retrain really ran keel run: a run directory with its gate report
    assert list((tmp / "runs" / "streamflow-churn").glob("*-run-*/gate_report.md"))
    # no champion before it: the first model is promoted directly (a rollout needs a champion to compare with)
    from pipeline.registry import BundleStore
    from pipeline.registry.aliases import aliases

    assert aliases("streamflow-churn", store=BundleStore(tmp / "bentoml"))["champion"] is not None

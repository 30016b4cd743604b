"""The stage-evaluation flow on the real (ephemeral) Prefect API: a stage report, approvals from the pause form
and from the CLI, and a flow killed while it waits, restarted from the recorded state.

The request and outcome logs are written here (no service needed: the flow only reads them), for a
canary that has met its duration and samples, so the next stage (ramp-50, `approval: true` in
tests/integration/conf_sim/rollout/sim_small.yaml) needs an approval.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.registry import BundleStore
from pipeline.rollout import advance, read_rollout, start
from pipeline.rollout.outcomes import append_outcomes, outcomes_dir, requests_dir
from pipeline.rollout.state import history
from pipeline.serving.request_log import Entry, RequestLog
from pipeline.spec.load import load_spec
from tests.integration.serving_fixtures import SPEC_PATH
from tests.rollout_fixtures import champion_and_challenger

pytestmark = pytest.mark.slow
CONF = Path(__file__).parent / "conf_sim"
REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2030, 1, 1, tzinfo=UTC)
NOW = (T0 + timedelta(days=3)).isoformat()  # shadow 1d + canary 2d: the canary is due


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api) -> dict[str, Any]:
    home = tmp_path / "home"
    monkeypatch.setenv("BENTOML_HOME", str(home))
    monkeypatch.chdir(tmp_path)  # the test's Prefect API, not a `keel server` the checkout may have up
    overrides = ["rollout=sim_small", f"runtime.runs_dir={tmp_path / 'runs'}"]
    loaded = load_spec(SPEC_PATH, overrides, [CONF])
    name, store = loaded.spec.name, BundleStore(home)
    tags = champion_and_challenger(store, name, tmp_path)
    start(name, tags[1], loaded.spec.rollout, "test", store=store, clock=lambda: T0)
    state = advance(name, store=store, clock=lambda: T0 + timedelta(days=1))
    log, rng, clicks = RequestLog(requests_dir(store.keel_dir, name)), np.random.default_rng(0), []
    for i in range(600):
        side = "challenger" if i % 5 == 0 else "champion"
        log.log(Entry(f"r{i}", f"u{i}", tags[side == "challenger"], side, "canary", state.rollout_id, 2.0, "ok"))
        if rng.random() < 0.1:
            clicks.append((f"r{i}", "ctr", 1.0))
    log.flush()
    append_outcomes(outcomes_dir(store.keel_dir, name), clicks)
    argv = [str(SPEC_PATH), *overrides, "--conf", str(CONF)]
    return {"name": name, "store": store, "overrides": overrides, "argv": argv, "tmp": tmp_path}


def _flow(world: dict, out: dict) -> None:
    from flows.rollout import rollout_stage_flow

    out["report"] = rollout_stage_flow(str(SPEC_PATH), world["overrides"], [str(CONF)], NOW, 60, 1)


def _waiting_run(world: dict, after: int = 0, timeout_s: float = 60) -> str:
    """The flow run id the flow noted in the rollout history when it paused (the `after`-th request or later)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        asked = [e for e in history(world["name"], store=world["store"]) if e["action"] == "approval_requested"]
        if len(asked) > after:
            run_id = asked[-1]["flow_run_id"]
            if _state(run_id).is_paused():
                return run_id
        time.sleep(0.2)
    raise AssertionError("the flow never paused for an approval")


def _state(run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id)).state


def test_approval_from_the_pause_form(world) -> None:
    from prefect.flow_runs import resume_flow_run

    out: dict = {}
    thread = threading.Thread(target=_flow, args=(world, out))
    thread.start()
    run_id = _waiting_run(world)
    state = read_rollout(world["store"].keel_dir, world["name"])
    assert state.status == "awaiting_approval" and state.stage == "canary"
    assert _state(run_id).state_details.run_input_keyset  # Prefect renders the StageApproval form from this
    # what the UI's Resume form posts: the StageApproval fields
    resume_flow_run(UUID(run_id), run_input={"approve": True, "comment": "fairness review done", "approver": "alice"})
    thread.join(60)
    assert not thread.is_alive()
    report = out["report"]
    assert report["decision"] == "advance" and report["applied"]["stage"] == "ramp-50"
    assert report["approval"]["by"] == "alice" and report["approval"]["via"] == "prefect-ui"
    md = Path(report["report"]["markdown"]).read_text()
    assert "Decision: advance" in md and "Approval: approve by alice (prefect-ui)" in md
    assert json.loads(Path(report["report"]["json"]).read_text())["applied"]["stage"] == "ramp-50"
    approval = [e for e in history(world["name"], store=world["store"]) if e["action"] == "approval"]
    assert approval[-1]["comment"] == "fairness review done" and approval[-1]["for_stage"] == "ramp-50"
    assert read_rollout(world["store"].keel_dir, world["name"]).stage == "ramp-50"


def test_killed_while_waiting_then_restarted_and_approved_from_the_cli(world, capsys) -> None:
    from prefect.settings import PREFECT_API_URL

    code = (
        "import sys; from flows.rollout import rollout_stage_flow; "
        f"rollout_stage_flow({str(SPEC_PATH)!r}, {world['overrides']!r}, [{str(CONF)!r}], {NOW!r}, 600, 1)"
    )
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        killed_run = _waiting_run(world, timeout_s=90)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    state = read_rollout(world["store"].keel_dir, world["name"])
    assert state.status == "awaiting_approval" and state.stage == "canary"  # the record kept where it was

    out: dict = {}
    thread = threading.Thread(target=_flow, args=(world, out))  # restart: a new run, from the record alone
    thread.start()
    new_run = _waiting_run(world, after=1)
    assert new_run != killed_run
    capsys.readouterr()
    assert main(["rollout", "approve", *world["argv"], "--comment", "ok from the cli", "--approved-by", "bob",
                 "--json"]) == 0  # fmt: skip
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["approval"]
    assert got["via"] == "prefect" and got["flow_run_id"] == new_run
    thread.join(60)
    report = out["report"]
    assert report["decision"] == "advance" and report["approval"]["via"] == "cli" and report["approval"]["by"] == "bob"
    assert read_rollout(world["store"].keel_dir, world["name"]).stage == "ramp-50"


def test_cli_approval_without_a_paused_flow_is_recorded_and_the_next_run_advances(world, capsys) -> None:
    from flows.rollout import rollout_stage_flow

    report = rollout_stage_flow(str(SPEC_PATH), world["overrides"], [str(CONF)], NOW, 1, 1)  # nobody answers in 1 s
    assert report["decision"] == "await_approval" and "no answer within 1 s" in report["reason"]
    capsys.readouterr()
    assert main(["rollout", "approve", *world["argv"], "--reject", "--comment", "not this week", "--json"]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["approval"]
    assert got["via"] == "record" and got["decision"] == "reject"
    report = rollout_stage_flow(str(SPEC_PATH), world["overrides"], [str(CONF)], NOW, 1, 1)
    assert report["decision"] == "rollback" and "not this week" in report["reason"]
    assert read_rollout(world["store"].keel_dir, world["name"]).status == "rolled_back"

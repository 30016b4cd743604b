"""Two real BentoML services on two BentoML homes (two "hosts") follow one rollout record in real Redis.

The spec selects `runtime.rollout_state: redis` through a runtime config on KEEL_CONF_PATH (as a
deployment would); the second home is a copy of the first store. A rollout started from the CLI
reaches both services, and a CLI rollback is served by both within a second.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from pipeline.cli import main
from pipeline.rollout.record import rollout_path
from tests.integration.serving_fixtures import SPEC_PATH, build_bundle, running_service

pytestmark = [pytest.mark.slow, pytest.mark.redis]  # skipped, saying so, without Redis (tests/services.py)
REDIS_URL = "redis://127.0.0.1:6379/14"
KEYS = "keel:rollout:streamflow-churn*"


def _clean() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(KEYS))
    if keys:
        client.delete(*keys)


def _cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _until(clients: list[httpx.Client], done: Callable[[dict], bool], timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        bodies = [c.get("/status").json() for c in clients]
        if all(done(b) for b in bodies) or time.monotonic() > deadline:
            return bodies
        time.sleep(0.01)


def test_two_hosts_follow_one_redis_rollout_and_serve_a_rollback_within_a_second(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "conf"
    (conf / "runtime").mkdir(parents=True)
    (conf / "runtime" / "local.yaml").write_text(f"runs_dir: runs\nredis_url: {REDIS_URL}\nrollout_state: redis\n")
    home_a, home_b = tmp_path / "a" / "home", tmp_path / "b" / "home"
    champion = build_bundle(home_a, rows=2000)
    challenger = build_bundle(home_a, rows=2000, champion=False, overrides=["model.params.num_leaves=7"]).tag
    shutil.copytree(home_a, home_b)  # the other host holds the same bundles in its own store
    _clean()
    env = {"KEEL_CONF_PATH": str(conf), "KEEL_WORKERS": "1", "KEEL_REQUEST_LOG": "0"}
    monkeypatch.setenv("KEEL_CONF_PATH", str(conf))
    monkeypatch.setenv("BENTOML_HOME", str(home_a))  # the CLI runs "on host a"
    try:
        with contextlib.ExitStack() as stack:
            urls = [stack.enter_context(running_service(home, env))[0] for home in (home_a, home_b)]
            clients = [stack.enter_context(httpx.Client(base_url=u, timeout=5)) for u in urls]

            code, payload = _cli(capsys, "rollout", "start", str(SPEC_PATH), "--tag", challenger)
            assert code == 0, payload
            code, payload = _cli(capsys, "rollout", "advance", str(SPEC_PATH))
            assert code == 0 and payload["rollout"]["traffic"] == 0.1, payload
            rollout_id = payload["rollout"]["rollout_id"]
            assert not rollout_path(home_a / "keel", champion.name).exists()  # in Redis, not beside the store
            bodies = _until(
                clients, lambda s: (s["rollout"] or {}).get("traffic") == 0.1 and s["rollout"]["routing"], 10
            )
            for body in bodies:
                assert body["rollout"]["rollout_id"] == rollout_id and body["rollout"]["traffic"] == 0.1, body
                assert body["rollout_error"] is None, body
            sides = {
                r.headers["x-keel-side"]
                for c in clients
                for i in range(200)
                for r in [c.post("/score?explain=false", json={**champion.sample[i % 50], "subscriber_id": f"s{i}"})]
            }
            assert sides == {"champion", "challenger"}  # both hosts route the canary share

            code, payload = _cli(capsys, "rollout", "rollback", str(SPEC_PATH), "--reason", "two-host test")
            written = time.monotonic()
            assert code == 0 and payload["rollout"]["status"] == "rolled_back", payload
            bodies = _until(
                clients, lambda s: s["rollout"]["status"] == "rolled_back" and not s["rollout"]["routing"], 1
            )
            assert time.monotonic() - written < 1.0, bodies
            for c in clients:
                for i in range(50):
                    r = c.post("/score?explain=false", json={**champion.sample[i], "subscriber_id": f"s{i}"})
                    assert r.status_code == 200 and r.json()["bundle"] == champion.tag, r.text

            code, payload = _cli(capsys, "rollout", "status", str(SPEC_PATH))
            assert code == 0 and payload["rollout"]["revision"] == 3, payload
    finally:
        _clean()

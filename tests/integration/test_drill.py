"""`keel rollout drill` against the real churn service: back and forth to the warm standby under steady load."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.registry import BundleStore
from pipeline.registry.aliases import aliases, history
from tests.integration.serving_fixtures import SPEC_PATH, build_bundle, running_service

pytestmark = pytest.mark.slow


def _drill(capsys, *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["rollout", "drill", str(SPEC_PATH), *argv, "--json"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_drill_switches_to_the_standby_and_back_without_a_failed_request(tmp_path, capsys, monkeypatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("BENTOML_HOME", str(home))
    first = build_bundle(home, rows=2000)
    code, payload = _drill(capsys, "--url", "http://127.0.0.1:9")  # a champion but no standby yet
    assert code == 1 and "warm standby" in payload["reason"]
    second = build_bundle(home, rows=2000, overrides=["model.params.num_leaves=7"])  # promoted: first is standby
    store = BundleStore(home)
    before = aliases(second.name, store=store)
    assert before["standby"] == first.tag
    with running_service(home, {"KEEL_WORKERS": "1"}) as (url, _):
        code, payload = _drill(capsys, "--url", url, "--cycles", "2", "--rate", "100", "--gap", "0.8")
    drill = payload["drill"]
    assert code == 0 and drill["ok"], drill
    assert drill["failed"] == 0 and drill["third_bundle"] == 0 and drill["requests"] >= 300
    assert [s["direction"] for s in drill["switches"]] == ["to standby", "back"] * 2
    for s in drill["switches"]:
        assert s["first_new_ms"] is not None and s["old_after_target"] == 0  # the service did switch, each time
        assert s["new"] == (first.tag if s["direction"] == "to standby" else second.tag)
    assert aliases(second.name, store=store) == before  # the drill leaves the aliases as it found them
    drills = [e for e in history(second.name, store=store) if "drill" in e.get("reason", "")]
    assert len(drills) >= 4

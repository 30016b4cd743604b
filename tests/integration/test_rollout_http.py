"""Staged rollout through the real BentoML service: routing share, shadow faults, rollbacks, refusals, damaged state.

One service per xdist worker (module fixture) over one BentoML home holding a champion and three
challengers: a good one, one whose gates failed, and one that needs a field the champion's
requests never carry (age_band), so it raises on every request it sees. Each test starts from
"champion serving, no live rollout" and leaves it that way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.cli import main
from pipeline.registry import BundleStore
from pipeline.registry.aliases import aliases
from pipeline.rollout import rollback, status
from pipeline.rollout.record import rollout_path
from pipeline.serving.request_log import read_request_log
from pipeline.serving.router import bucket
from pipeline.spec.load import load_spec
from tests.integration.serving_fixtures import SPEC_PATH, BuiltBundle, build_bundle, running_service

pytestmark = pytest.mark.slow


@dataclass
class World:
    home: Path
    url: str
    client: httpx.Client
    champion: BuiltBundle
    good: str
    failed: str
    raising: str

    @property
    def store(self) -> BundleStore:
        return BundleStore(self.home)

    @property
    def name(self) -> str:
        return self.champion.name


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("rollout") / "home"
    champion = build_bundle(home, rows=3000)
    good = build_bundle(home, rows=3000, champion=False, overrides=["model.params.num_leaves=7"]).tag
    failed = build_bundle(home, rows=3000, champion=False, gate_passed=False).tag
    features = [*load_spec(SPEC_PATH).spec.model.features, "age_band"]
    raising = build_bundle(home, rows=3000, champion=False, overrides=[f"model.features=[{','.join(features)}]"]).tag
    env = {"KEEL_TRIGGER_MIN_SAMPLES": "30", "KEEL_WORKERS": "1"}
    with running_service(home, env) as (url, _), httpx.Client(base_url=url, timeout=10) as client:
        yield World(home, url, client, champion, good, failed, raising)


@pytest.fixture
def w(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("BENTOML_HOME", str(world.home))
    _settle(world)
    yield world
    _settle(world)


def _settle(w: World) -> None:
    """No live rollout, the original champion serving, the service caught up."""
    state = status(w.name, store=w.store)
    if state is not None and state.live:
        rollback(w.name, "test cleanup", store=w.store)
    assert aliases(w.name, store=w.store)["champion"] == w.champion.tag
    _wait(w, lambda s: s["bundle"] == w.champion.tag and not (s["rollout"] or {}).get("routing"))


def _wait(w: World, done: Callable[[dict], bool], timeout_s: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        body = w.client.get("/status").json()
        if done(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def _cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main([*argv, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


def _record(w: World, i: int) -> dict[str, Any]:
    return {**w.champion.sample[i % len(w.champion.sample)], "subscriber_id": f"sub-{i:05d}"}


def _canary(w: World, capsys: pytest.CaptureFixture, tag: str) -> dict:
    code, payload = _cli(capsys, "rollout", "start", str(SPEC_PATH), "--tag", tag)
    assert code == 0, payload
    code, payload = _cli(capsys, "rollout", "advance", str(SPEC_PATH))
    assert code == 0 and payload["rollout"]["stage"] == "canary" and payload["rollout"]["traffic"] == 0.1
    status_body = _wait(w, lambda s: (s["rollout"] or {}).get("traffic") == 0.1 and s["rollout"]["routing"])
    assert status_body["rollout"]["routing"], status_body
    return payload["rollout"]


def test_canary_share_is_sticky_logged_and_a_cli_rollback_is_served_within_a_second(
    w: World, capsys: pytest.CaptureFixture
) -> None:
    rollout = _canary(w, capsys, w.good)
    answered: dict[int, str] = {}
    request_ids: dict[str, str] = {}
    for i in range(1000):
        extra = {"age_band": "50+"} if i % 2 == 0 else {}  # a fairness group field: accepted, logged, not a model input
        r = w.client.post("/score?explain=false", json={**_record(w, i), **extra})
        assert r.status_code == 200, r.text
        answered[i] = r.json()["bundle"]
        request_ids[r.headers["x-request-id"]] = answered[i]
        assert r.headers["x-keel-side"] == ("challenger" if answered[i] == w.good else "champion")
    share = sum(b == w.good for b in answered.values()) / len(answered)
    assert share == pytest.approx(0.10, abs=0.03)
    assert set(answered.values()) == {w.good, w.champion.tag}
    on_challenger = [i for i, b in answered.items() if b == w.good]
    for i in on_challenger[:20] + list(range(20)):  # the same subscriber gets the same side again
        assert w.client.post("/score?explain=false", json=_record(w, i)).json()["bundle"] == answered[i]

    code, payload = _cli(capsys, "rollout", "rollback", str(SPEC_PATH), "--reason", "test")
    written = time.monotonic()
    assert code == 0 and payload["rollout"]["status"] == "rolled_back"
    probe = _record(w, on_challenger[0])
    while w.client.post("/score?explain=false", json=probe).json()["bundle"] != w.champion.tag:
        assert time.monotonic() - written < 1.0, "rollback not served within 1 s"
    assert time.monotonic() - written < 1.0
    assert all(
        w.client.post("/score?explain=false", json=_record(w, i)).json()["bundle"] == w.champion.tag
        for i in on_challenger[:20]
    )

    log_dir = w.home / "keel" / w.name / "requests"
    deadline = time.monotonic() + 5
    while not set(request_ids) <= set(read_request_log(log_dir)["request_id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    frame = read_request_log(log_dir)
    ours = frame[frame["request_id"].isin(request_ids)].set_index("request_id")
    assert len(ours) == 1000 and (ours["status"] == "ok").all()
    assert (ours["rollout_id"] == rollout["rollout_id"]).all() and (ours["stage"] == "canary").all()
    assert all(ours.loc[rid, "bundle"] == bundle for rid, bundle in request_ids.items())
    assert set(ours["side"]) == {"champion", "challenger"} and ours["entity_id"].str.startswith("sub-").all()
    groups = ours["groups"].map(json.loads)
    assert groups.map(lambda g: "plan_type" in g).all()
    assert (groups.map(lambda g: g.get("age_band")) == "50+").sum() == 500
    metrics = w.client.get("/metrics").text
    assert 'keel_scored_records_total{side="challenger",status="ok"}' in metrics
    assert "keel_request_log_rows_total" in metrics and "keel_side_latency_seconds_bucket" in metrics


def test_a_raising_shadow_never_changes_the_response_and_its_errors_roll_it_back(
    w: World, capsys: pytest.CaptureFixture
) -> None:
    records = [_record(w, i) for i in range(200)]  # the shadow stage shadows a share (0.25) of subscribers
    before = [w.client.post("/score", json=r).json() for r in records]
    code, payload = _cli(capsys, "rollout", "start", str(SPEC_PATH), "--tag", w.raising)
    assert code == 0 and payload["rollout"]["stage"] == "shadow"
    rollout_id = payload["rollout"]["rollout_id"]
    share = load_spec(SPEC_PATH).spec.rollout.stages[0].shadow_share
    expected = {r["subscriber_id"] for r in records if bucket(f"{rollout_id}:shadow", r["subscriber_id"]) < share}
    _wait(w, lambda s: (s["rollout"] or {}).get("shadow") is True)
    after = [w.client.post("/score", json=r) for r in records]
    assert [r.status_code for r in after] == [200] * len(records)
    assert [r.json() for r in after] == before  # byte for byte the champion's answers, reasons included
    # the shadow scores off the response path: on a loaded CI box its errors can take more than 10 s to count
    state = _wait(w, lambda s: s["triggered"] is not None and rollout_id in s["triggered"], timeout_s=60.0)
    assert state["triggered"] is not None and "error rate" in state["triggered"], state
    record = status(w.name, store=w.store)
    assert record.status == "rolled_back" and "immediate trigger" in record.events[-1]["reason"]
    assert record.events[-1]["actor"].startswith("keel-serving:")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        frame = read_request_log(w.home / "keel" / w.name / "requests")
        shadow = frame[(frame["rollout_id"] == rollout_id) & frame["shadow"]]
        if len(shadow) >= 30:
            break
        time.sleep(0.2)
    assert (shadow["status"] == "error").all() and shadow["error"].str.contains("age_band").all()
    assert (shadow["bundle"] == w.raising).all()
    assert set(shadow["entity_id"]) <= expected and len(expected) < 0.4 * len(records)  # only the shadowed share


def test_a_damaged_rollout_record_keeps_the_champion_serving_and_status_says_why(
    w: World, capsys: pytest.CaptureFixture
) -> None:
    _canary(w, capsys, w.good)
    path = rollout_path(w.home / "keel", w.name)
    good = path.read_bytes()
    path.write_text('{"rollout_id": "half a reco')
    body = _wait(w, lambda s: s["rollout_error"] is not None)
    assert "damaged" in body["rollout_error"] and body["bundle"] == w.champion.tag, body
    assert body["ready"] and w.client.get("/readyz").status_code == 200
    bundles = {w.client.post("/score?explain=false", json=_record(w, i)).json()["bundle"] for i in range(200)}
    assert bundles == {w.champion.tag}
    path.write_bytes(good)
    body = _wait(w, lambda s: (s["rollout"] or {}).get("routing") is True)
    assert body["rollout_error"] is None, body


def test_a_gate_failed_challenger_is_refused_by_the_cli_and_never_routed_by_the_service(
    w: World, capsys: pytest.CaptureFixture
) -> None:
    path = rollout_path(w.home / "keel", w.name)
    before = path.read_bytes() if path.exists() else None
    code, payload = _cli(capsys, "rollout", "start", str(SPEC_PATH), "--tag", w.failed)
    assert code == 1 and "failed its gates" in payload["reason"] and "auc_floor" in payload["reason"], payload
    assert (path.read_bytes() if path.exists() else None) == before
    # someone writes the record by hand: the service still refuses to route to it
    _canary(w, capsys, w.good)
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "challenger": w.failed, "rollout_id": "ro-by-hand"}))
    body = _wait(w, lambda s: s["rollout_error"] is not None)
    assert "gate" in body["rollout_error"] and not body["rollout"]["routing"], body
    bundles = {w.client.post("/score?explain=false", json=_record(w, i)).json()["bundle"] for i in range(100)}
    assert bundles == {w.champion.tag}


def test_a_second_rollout_is_refused_and_rollbacks_without_standby_are_clear_refusals(
    w: World, capsys: pytest.CaptureFixture
) -> None:
    code, first = _cli(capsys, "rollout", "start", str(SPEC_PATH), "--tag", w.good)
    assert code == 0
    code, payload = _cli(capsys, "rollout", "start", str(SPEC_PATH), "--tag", w.raising)
    assert code == 1 and "already active" in payload["reason"] and first["rollout"]["rollout_id"] in payload["reason"]
    code, payload = _cli(capsys, "rollout", "status", str(SPEC_PATH))
    assert code == 0 and payload["rollout"]["challenger"] == w.good
    assert _cli(capsys, "rollout", "rollback", str(SPEC_PATH))[0] == 0
    before = aliases(w.name, store=w.store)
    assert before["standby"] is None
    code, payload = _cli(capsys, "models", "rollback", str(SPEC_PATH))
    assert code == 1 and "no standby" in payload["reason"]
    assert aliases(w.name, store=w.store) == before
    assert w.client.post("/score", json=_record(w, 0)).json()["bundle"] == w.champion.tag


def test_completion_promotes_keeps_the_old_champion_warm_and_rolls_back_to_it(
    w: World, capsys: pytest.CaptureFixture
) -> None:
    _canary(w, capsys, w.good)
    for stage in ("ramp-25", "ramp-50", "full"):
        code, payload = _cli(capsys, "rollout", "advance", str(SPEC_PATH))
        assert code == 0 and payload["rollout"]["stage"] == stage
    code, payload = _cli(capsys, "rollout", "advance", str(SPEC_PATH))
    assert code == 0 and payload["rollout"]["status"] == "completed"
    body = _wait(w, lambda s: s["bundle"] == w.good and s["standby"] == w.champion.tag)
    assert body["bundle"] == w.good and body["standby"] == w.champion.tag, body
    code, payload = _cli(capsys, "rollout", "rollback", str(SPEC_PATH))
    written = time.monotonic()
    assert code == 0 and payload["rollout"]["status"] == "rolled_back"
    while w.client.post("/score?explain=false", json=_record(w, 1)).json()["bundle"] != w.champion.tag:
        assert time.monotonic() - written < 1.0, "rollback to the warm standby not served within 1 s"
    assert aliases(w.name, store=w.store)["champion"] == w.champion.tag

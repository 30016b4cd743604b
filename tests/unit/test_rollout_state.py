"""Rollout record: stage transitions, completion via promotion, rollbacks, and every refusal leaving state as it was."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.registry import BundleStore, RollbackUnavailable, promote, save_bundle
from pipeline.registry.aliases import aliases
from pipeline.registry.aliases import rollback as alias_rollback
from pipeline.rollout import RolloutRefused, RolloutStateError, advance, read_rollout, rollback, start, status
from pipeline.rollout.record import rollout_path
from pipeline.rollout.state import history
from pipeline.spec.schema import RolloutSpec, StageSpec

NAME = "churn"
T0 = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
SPEC = RolloutSpec(
    name="test",
    stages=[
        StageSpec(name="shadow", traffic=0.0),
        StageSpec(name="canary", traffic=0.1),
        StageSpec(name="fairness", traffic=0.25, approval=True),
        StageSpec(name="full", traffic=1.0),
    ],
)
GATES = {
    "passed": False,
    "gates": [
        {"name": "auc_floor", "passed": False, "reason": "auc 0.61 is below the minimum 0.7"},
        {"name": "psi", "passed": True, "reason": "ok"},
    ],
}


def clock() -> datetime:
    return T0


@pytest.fixture
def store(tmp_path: Path) -> BundleStore:
    return BundleStore(tmp_path / "bentoml")


@pytest.fixture
def make(tmp_path: Path, store: BundleStore):
    def _make(payload: str, gate_passed: bool = True) -> str:
        src = tmp_path / f"src-{payload}"
        src.mkdir()
        (src / "model.txt").write_text(payload)
        (src / "metrics.json").write_text(json.dumps({"test": {"auc": 0.6}, "gates": GATES}))
        ref = save_bundle(
            NAME,
            src,
            spec_sha256="0" * 64,
            data_fingerprint="fp",
            code_version="t",
            metrics={"auc": 0.6},
            gate_passed=gate_passed,
            store=store,
        )
        return ref.tag

    return _make


@pytest.fixture
def pair(store: BundleStore, make) -> tuple[str, str]:
    champion, challenger = make("champion"), make("challenger")
    promote(NAME, champion, "first", store=store)
    return champion, challenger


def _snapshot(store: BundleStore) -> tuple[bytes | None, dict]:
    path = rollout_path(store.keel_dir, NAME)
    return (path.read_bytes() if path.exists() else None), aliases(NAME, store=store)


def test_stages_advance_wait_for_approval_and_complete_by_promotion(store: BundleStore, pair) -> None:
    champion, challenger = pair
    state = start(NAME, challenger, SPEC, "try it", store=store, clock=clock)
    assert (state.status, state.stage, state.traffic, state.champion) == ("active", "shadow", 0.0, champion)
    assert aliases(NAME, store=store)["challenger"] == challenger
    assert advance(NAME, store=store).stage == "canary"
    waiting = advance(NAME, store=store)
    assert (waiting.status, waiting.stage, waiting.traffic) == ("awaiting_approval", "canary", 0.1)
    with pytest.raises(RolloutRefused, match="needs an approval"):
        advance(NAME, store=store)
    approved = advance(NAME, approved_by="alice", store=store)
    assert (approved.status, approved.stage, approved.traffic) == ("active", "fairness", 0.25)
    assert advance(NAME, store=store).stage == "full"
    assert aliases(NAME, store=store)["champion"] == champion  # 100% traffic, not yet promoted
    done = advance(NAME, store=store)
    assert done.status == "completed" and not done.live
    assert aliases(NAME, store=store) == {"champion": challenger, "challenger": None, "standby": champion}
    actions = [e["action"] for e in history(NAME, store=store)]
    assert actions == ["start", "advance", "awaiting_approval", "advance", "advance", "complete"]
    assert [e["action"] for e in status(NAME, store=store).events] == actions
    with pytest.raises(RolloutRefused, match="completed"):
        advance(NAME, store=store)


def test_rollback_takes_the_challenger_out_and_keeps_the_champion(store: BundleStore, pair) -> None:
    champion, challenger = pair
    started = start(NAME, challenger, SPEC, store=store)
    advance(NAME, store=store)
    state = rollback(NAME, "error rate", store=store)
    assert (state.status, state.traffic, state.challenger) == ("rolled_back", 0.0, challenger)
    assert aliases(NAME, store=store) == {"champion": champion, "challenger": None, "standby": None}
    assert rollback(NAME, "again", store=store).revision == state.revision  # idempotent: a second worker's trigger
    with pytest.raises(RolloutRefused, match="not current"):
        rollback(NAME, "stale", rollout_id="ro-other", store=store)
    again = start(NAME, challenger, SPEC, store=store)  # a finished rollout does not block the next one
    assert again.rollout_id != started.rollout_id and again.revision > state.revision


def test_rollback_after_completion_restores_the_standby_and_without_one_refuses(store: BundleStore, pair) -> None:
    champion, challenger = pair
    start(NAME, challenger, SPEC, store=store)
    for _ in range(4):
        advance(NAME, approved_by="bob", store=store)
    assert status(NAME, store=store).status == "completed"
    state = rollback(NAME, "bad week", store=store)
    assert state.status == "rolled_back"
    assert aliases(NAME, store=store)["champion"] == champion
    assert history(NAME, store=store)[-1]["action"] == "rollback_after_completion"


def test_failed_gate_challenger_is_refused_quoting_its_gates(store: BundleStore, pair, make) -> None:
    failed = make("failed", gate_passed=False)
    before = _snapshot(store)
    with pytest.raises(RolloutRefused, match=r"auc_floor: auc 0\.61 is below the minimum 0\.7") as info:
        start(NAME, failed, SPEC, store=store)
    assert "psi" not in str(info.value)
    assert _snapshot(store) == before


def test_a_second_rollout_is_refused_while_one_is_live(store: BundleStore, pair, make) -> None:
    _, challenger = pair
    other = make("other")
    first = start(NAME, challenger, SPEC, store=store)
    before = _snapshot(store)
    with pytest.raises(RolloutRefused, match=f"{first.rollout_id} .* already active"):
        start(NAME, other, SPEC, store=store)
    assert _snapshot(store) == before


@pytest.mark.parametrize("case", ["no champion", "challenger is champion", "foreign tag"])
def test_start_refusals_change_nothing(store: BundleStore, make, case: str) -> None:
    tag = make("x")
    if case != "no champion":
        promote(NAME, tag, "c", store=store)
    if case == "foreign tag":
        tag = "other:20261123t101500-ab12cd34"
    before = _snapshot(store)
    with pytest.raises(RolloutRefused):
        start(NAME, tag, SPEC, store=store)
    assert _snapshot(store) == before


def test_damaged_record_is_an_error_not_no_rollout(store: BundleStore, pair) -> None:
    _, challenger = pair
    start(NAME, challenger, SPEC, store=store)
    path = rollout_path(store.keel_dir, NAME)
    good = json.loads(path.read_text())
    for bad in ["{ not json", json.dumps({**good, "traffic": 2}), json.dumps({**good, "status": "??"}), "[]"]:
        path.write_text(bad)
        with pytest.raises(RolloutStateError, match="rollout record"):
            read_rollout(store.keel_dir, NAME)
        with pytest.raises(RolloutStateError):
            start(NAME, challenger, SPEC, store=store)  # never starts over a record nobody can read


def test_nothing_to_roll_back_is_a_clear_refusal(store: BundleStore, pair) -> None:
    before = _snapshot(store)
    with pytest.raises(RolloutRefused, match="no rollout"):
        rollback(NAME, "nothing", store=store)
    with pytest.raises(RolloutRefused, match="no rollout"):
        advance(NAME, store=store)
    assert _snapshot(store) == before


def test_champion_rollback_without_a_standby_refuses_and_changes_nothing(store: BundleStore, pair) -> None:
    champion, challenger = pair  # promoted once: no standby yet
    history_before = (store.keel_dir / NAME / "history.jsonl").read_bytes()
    with pytest.raises(RollbackUnavailable, match="no standby"):
        alias_rollback(NAME, "try", store=store)
    assert aliases(NAME, store=store) == {"champion": champion, "challenger": None, "standby": None}
    assert (store.keel_dir / NAME / "history.jsonl").read_bytes() == history_before
    # a completed rollout whose champion was changed since is not the rollout's to roll back
    start(NAME, challenger, SPEC, store=store)
    for _ in range(4):
        advance(NAME, approved_by="bob", store=store)
    alias_rollback(NAME, "manual", store=store)  # champion again, standby used up
    before = _snapshot(store)
    with pytest.raises(RolloutRefused, match="keel models rollback"):
        rollback(NAME, "late", store=store)
    assert _snapshot(store) == before

"""A triggered retrain rolls out instead of promoting: the trigger's approval flag gates the canary.

Real Prefect (the session's ephemeral API has no retrain deployment, so start_retrain runs the
flow here), a real BentoML store, the real rollout record. Tiny data: 3,000 rows.
"""

from __future__ import annotations

import contextlib
import io
import json
from datetime import date
from pathlib import Path

import pytest

from flows.schedule import retrain_and_roll_out, start_retrain
from pipeline.cli import main
from pipeline.registry import BundleStore
from pipeline.registry.aliases import aliases
from pipeline.rollout import RolloutRefused, advance, status
from pipeline.rollout.state import history
from pipeline.spec.load import LoadedSpec, load_spec
from pipeline.triggers import TriggerEngine
from pipeline.triggers.facts import DayFacts

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "streamflow_churn.yaml"
NAME = "streamflow-churn"

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def _overrides(tmp: Path) -> list[str]:
    return ["data.rows=3000", f"runtime.runs_dir={tmp / 'runs'}", f"runtime.bentoml_home={tmp / 'bentoml'}"]


def _loaded(tmp: Path, *extra: str) -> LoadedSpec:
    return load_spec(SPEC, [*_overrides(tmp), *extra])


def keel(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def _drift(loaded: LoadedSpec):
    """A day with the sessions feature shifted: the drift trigger fires, and it asks for an approval."""
    decision = TriggerEngine.for_spec(loaded.spec).on_facts(DayFacts(date(2026, 3, 1), {"sessions_last_30d": 0.4}))
    assert [e.trigger for e in decision.fired] == ["drift"] and decision.approval
    return decision


def test_drift_retrain_starts_a_rollout_whose_canary_waits_for_an_approval(tmp_path: Path) -> None:
    loaded = _loaded(tmp_path)
    store = BundleStore(tmp_path / "bentoml")
    first = retrain_and_roll_out(loaded, "manual")  # no champion yet: promoted directly, nothing to roll out against
    assert first["promoted"] and first["rollout"] is None
    champion = first["bundle"]
    assert aliases(NAME, store=store)["champion"] == champion

    started = start_retrain(loaded, _drift(loaded))
    assert started["started"] == "in-process" and started["status"] == "ok", started
    challenger = started["bundle"]
    assert challenger != champion and started["promoted"] is False
    assert started["rollout"]["status"] == "started" and started["rollout"]["approval_stage"] == "canary"
    assert aliases(NAME, store=store)["champion"] == champion  # the rollout, not the retrain, promotes
    assert aliases(NAME, store=store)["challenger"] == challenger

    state = status(NAME, store=store)
    assert state is not None and state.live and (state.stage, state.traffic) == ("shadow", 0.0)
    assert state.challenger == challenger and state.champion == champion
    spec_canary = next(s for s in loaded.spec.rollout.stages if s.name == "canary")
    assert spec_canary.approval is False  # the spec does not ask; the drift trigger does, for this rollout
    canary = state.stages[1]
    assert canary["approval"] is True and "drift" in canary["approval_reason"] and "PSI" in canary["approval_reason"]
    [start_event] = [e for e in history(NAME, store=store) if e["action"] == "start"]
    assert start_event["approval_required"]["stage"] == "canary"
    assert "sessions_last_30d" in start_event["approval_required"]["reason"]

    waiting = advance(NAME, "stage checks passed", store=store)  # no approval: waits, still in shadow
    assert (waiting.status, waiting.stage, waiting.traffic) == ("awaiting_approval", "shadow", 0.0)
    with pytest.raises(RolloutRefused, match="needs an approval"):
        advance(NAME, "again", store=store)
    entered = advance(NAME, "reviewed", approved_by="alice", store=store)
    assert (entered.status, entered.stage, entered.traffic) == ("active", "canary", 0.10)
    assert aliases(NAME, store=store)["champion"] == champion

    # another retrain while this rollout is live (`keel run --rollout` does what a trigger does):
    # the bundle is registered, the rollout refused (exit 1), no crash
    code, again = keel("run", str(SPEC), *_overrides(tmp_path), "--rollout")
    assert code == 1 and again["status"] == "ok" and again["promoted"] is False
    assert again["rollout"]["status"] == "refused" and again["trigger"] == "manual"
    assert "already active" in again["rollout"]["reason"]
    store.get(again["bundle"]).verify()
    assert status(NAME, store=store).challenger == challenger
    assert aliases(NAME, store=store)["champion"] == champion


def test_spec_without_rollout_is_promoted_as_before(tmp_path: Path) -> None:
    loaded = _loaded(tmp_path, "~rollout")
    assert loaded.spec.rollout is None
    store = BundleStore(tmp_path / "bentoml")
    code, first = keel("run", str(SPEC), *_overrides(tmp_path), "~rollout")  # plain keel run: promote on pass
    assert code == 0 and first["promoted"] is True
    code, refused = keel("run", str(SPEC), *_overrides(tmp_path), "~rollout", "--rollout")
    assert code == 2 and "no rollout section" in refused["problems"][0]["reason"]
    started = start_retrain(loaded, _drift(loaded))
    assert started["started"] == "in-process" and started["promoted"] is True and started["rollout"] is None
    assert aliases(NAME, store=store)["champion"] == started["bundle"] != first["bundle"]
    assert status(NAME, store=store) is None


def test_an_approval_cannot_hold_back_a_first_stage_that_already_routes_traffic() -> None:
    from pipeline.rollout.state import _require_canary_approval

    stages = [{"name": "canary", "traffic": 0.1, "approval": False}, {"name": "full", "traffic": 1.0}]
    with pytest.raises(RolloutRefused, match="start the rollout by hand"):
        _require_canary_approval(stages, "drift retrain: PSI x 0.4")
    shadow_first = [{"name": "shadow", "traffic": 0.0}, *stages]
    assert _require_canary_approval(shadow_first, "drift retrain: PSI x 0.4") == "canary"
    assert shadow_first[1]["approval"] is True and shadow_first[2].get("approval") is None


def test_a_streamrec_retrain_rolls_out_too(tmp_path: Path) -> None:
    spec = REPO / "specs" / "streamrec.yaml"
    small = ["data.rows=8000", "data.scenario.items=600", "model.params.epochs=1"]
    loaded = load_spec(spec, [*small, *_overrides(tmp_path)[1:]])
    store = BundleStore(tmp_path / "bentoml")
    first = retrain_and_roll_out(loaded, "manual")  # the first model: promoted, with its batch top-K
    assert first["status"] == "ok" and first["promoted"] and first["rollout"] is None, first["text"]
    champion = aliases("streamrec", store=store)["champion"]
    second = retrain_and_roll_out(loaded, "performance", reason="ndcg@10 below its 28-day mean")
    assert second["status"] == "ok" and not second["promoted"], second["text"]
    assert second["promotion"] == "gates passed, held for the staged rollout"
    assert aliases("streamrec", store=store)["champion"] == champion  # the rollout, not the retrain, promotes
    state = status("streamrec", store=store)
    assert state is not None and state.live and state.challenger == second["bundle"] != champion
    assert (state.stage, state.traffic) == ("shadow", 0.0)

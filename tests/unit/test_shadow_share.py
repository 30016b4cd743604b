"""Shadow share: a sticky hashed share of entities is shadowed; spec, record, router, dispatch and evaluation agree."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.registry import BundleStore
from pipeline.rollout import start
from pipeline.rollout.errors import RolloutStateError
from pipeline.rollout.evaluate import evaluate_stage
from pipeline.rollout.record import parse_record, read_rollout, rollout_path
from pipeline.serving.dispatch import shadow_job
from pipeline.serving.request_log import SCHEMA
from pipeline.serving.router import Routing, assign
from pipeline.spec.errors import SpecError
from pipeline.spec.load import load_spec
from pipeline.spec.schema import EvaluationRollback, RollbackSpec, RolloutSpec, StageSpec
from tests.rollout_fixtures import champion_and_challenger

IDS = [f"sub-{i:06d}" for i in range(10_000)]
NAME = "churn"
T0 = datetime(2026, 11, 23, tzinfo=UTC)


def _routing(share: float, traffic: float = 0.0, rollout_id: str = "r-1") -> Routing:
    return Routing(rollout_id, "shadow", traffic, challenger=object(), shadow_share=share)  # type: ignore[arg-type]


def _shadowed(routing: Routing, ids: list[str] = IDS) -> set[str]:
    return {key for key in ids if routing.shadowed(key, f"req-{key}")}


@pytest.mark.parametrize("share", [0.05, 0.25, 0.5])
def test_the_share_of_entities_shadowed_matches_the_stage(share: float) -> None:
    measured = len(_shadowed(_routing(share))) / len(IDS)
    assert abs(measured - share) < 0.02, measured  # binomial sd at 10k ids is <= 0.005


def test_shadowing_is_sticky_per_entity_and_reshuffled_by_a_new_rollout() -> None:
    first = _shadowed(_routing(0.25))
    again = {k for k in IDS if _routing(0.25).shadowed(k, "another-request-id")}
    assert first == again  # the request id plays no part when the entity id is known
    other = _shadowed(_routing(0.25, rollout_id="r-2"))
    assert 0.03 < len(first & other) / len(IDS) < 0.10  # independent draws: ~0.25 * 0.25


def test_the_shadow_salt_is_independent_of_the_traffic_split() -> None:
    shadowed = _shadowed(_routing(0.25))
    canary = {k for k in IDS if assign("r-1", k, 0.25) == "challenger"}
    assert 0.03 < len(shadowed & canary) / len(IDS) < 0.10  # not the same users (would be 0.25)


def test_share_one_shadows_everyone_and_routed_stages_shadow_nobody() -> None:
    assert _shadowed(_routing(1.0)) == set(IDS)
    assert _shadowed(_routing(0.25, traffic=0.1)) == set()


def test_requests_without_an_entity_id_are_drawn_on_their_request_id() -> None:
    routing = _routing(0.25)
    picked = sum(routing.shadowed(None, f"anon-{i}") for i in range(10_000)) / 10_000
    assert abs(picked - 0.25) < 0.02


def test_the_shadow_job_copies_only_the_shadowed_records_with_their_groups() -> None:
    routing = _routing(0.25)
    keys = IDS[:400]
    records = [{"subscriber_id": k, "x": i} for i, k in enumerate(keys)]
    rids = [f"q/{i}" for i in range(len(keys))]
    groups = [json.dumps({"age_band": "50+"})] * len(keys)
    job = shadow_job(routing, records, rids, keys, groups)
    expected = [i for i, k in enumerate(keys) if routing.shadowed(k, rids[i])]
    assert job is not None and [r["x"] for r in job.records] == expected
    assert job.request_ids == [rids[i] for i in expected] and job.entity_ids == [keys[i] for i in expected]
    assert job.groups == [groups[i] for i in expected]
    assert all(r is not records[i] for r, i in zip(job.records, expected, strict=True))  # copies
    nobody = [k for k in keys if not routing.shadowed(k, "x")][:3]
    assert shadow_job(routing, [{"subscriber_id": k} for k in nobody], ["a", "b", "c"], nobody) is None
    everyone = shadow_job(_routing(1.0), records, rids, keys)
    assert everyone is not None and len(everyone.records) == len(records) and everyone.groups is None


# ---------------------------------------------------------------- spec and rollout record


GOOD = """\
defaults:
  - contract: streamflow
  - model: lightgbm
  - gates: churn
  - rollout: standard
  - _self_
name: good-spec
task: binary_classification
data:
  source: synthetic:streamflow
  entity_id: subscriber_id
  timestamp: snapshot_date
  label: churned
model:
  features: [sessions_last_30d, plan_type]
"""


def test_the_spec_defaults_to_one_and_refuses_a_share_on_a_routed_stage(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(GOOD)
    stages = load_spec(path).spec.rollout.stages
    assert stages[0].traffic == 0 and stages[0].shadow_share == 0.25  # conf/rollout/standard.yaml
    assert all(s.shadow_share == 1.0 for s in stages[1:])
    with pytest.raises(SpecError) as info:
        load_spec(path, ["rollout.stages.1.shadow_share=0.5"])
    assert "rollout.stages.1.shadow_share" in info.value.render() and "traffic 0" in info.value.render()
    for bad in ("0", "1.5"):
        with pytest.raises(SpecError):
            load_spec(path, [f"rollout.stages.0.shadow_share={bad}"])


@pytest.fixture
def store(tmp_path: Path) -> tuple[BundleStore, list[str]]:
    store = BundleStore(tmp_path / "bentoml")
    tags = champion_and_challenger(store, NAME, tmp_path)
    return store, tags


SPEC = RolloutSpec(
    name="t",
    stages=[
        StageSpec(
            name="shadow", traffic=0.0, shadow_share=0.25, duration="1d", min_samples=100, checks=["rank_correlation"]
        ),
        StageSpec(name="full", traffic=1.0, duration="1d"),
    ],
    rollback=RollbackSpec(evaluation=EvaluationRollback(metric="ctr", min_rank_correlation=0.5)),
)


def test_the_record_carries_the_share_and_old_records_read_as_one(store) -> None:
    store, tags = store
    state = start(NAME, tags[1], SPEC, "test", store=store, clock=lambda: T0)
    assert state.shadow_share == 0.25 and read_rollout(store.keel_dir, NAME).shadow_share == 0.25
    data = json.loads(rollout_path(store.keel_dir, NAME).read_text())
    for stage in data["stages"]:
        del stage["shadow_share"]  # a record written before the key existed
    assert parse_record("old", NAME, data).shadow_share == 1.0
    data["stages"][0]["shadow_share"] = 2
    with pytest.raises(RolloutStateError, match="shadow_share"):
        parse_record("bad", NAME, data)


def test_min_samples_counts_shadowed_requests_and_rank_correlation_uses_the_shadowed_pairs(store) -> None:
    store, tags = store
    state = start(NAME, tags[1], SPEC, "test", store=store, clock=lambda: T0)
    routing = _routing(state.shadow_share, rollout_id=state.rollout_id)
    rng = np.random.default_rng(3)
    rows = []
    for i, key in enumerate(IDS[:300]):
        p = float(rng.random())
        rid = f"r{i}"
        rows.append(_row(rid, key, "champion", state, p, shadow=False))
        if routing.shadowed(key, rid):
            rows.append(_row(rid, key, "challenger", state, float(np.clip(p + rng.normal(0, 0.05), 0, 1)), True))
    frame = pd.DataFrame(rows, columns=SCHEMA.names)
    shadowed = sum(r[11] for r in rows)
    assert 50 < shadowed < 100  # about a quarter of 300
    report = evaluate_stage(state, SPEC, frame, _no_outcomes(), T0 + timedelta(days=2))
    assert report.samples == shadowed and report.rank_correlation["pairs"] == shadowed
    assert report.decision == "hold" and f"{shadowed} of 100 requests" in report.reason
    more = [_row(f"x{i}", f"new-{i}", "champion", state, 0.5, False) for i in range(500)]  # nobody shadowed
    frame = pd.DataFrame(rows + more, columns=SCHEMA.names)
    report = evaluate_stage(state, SPEC, frame, _no_outcomes(), T0 + timedelta(days=2))
    assert report.samples == shadowed and report.decision == "hold"  # champion-only traffic is no evidence


def _row(rid: str, key: str, side: str, state, p: float, shadow: bool) -> tuple:
    bundle = state.challenger if side == "challenger" else state.champion
    return (rid, T0, key, bundle, side, state.stage, state.rollout_id, 2.0, "ok", None, p, shadow, None, None, None)


def _no_outcomes() -> pd.DataFrame:
    return pd.DataFrame({"request_id": pd.Series(dtype=str), "outcome": pd.Series(dtype=str),
                         "value": pd.Series(dtype=float)})  # fmt: skip

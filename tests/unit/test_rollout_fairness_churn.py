"""Churn stage fairness: group values logged with /score requests, labels from the outcomes log, the spec's TPR gate.

Logs are written and read back through the real RequestLog / outcomes parts, the context comes from the
real churn spec (specs/streamflow_churn.yaml: tpr_gap[age_band] <= 0.15, threshold 0.20, label `churned`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.registry import BundleStore
from pipeline.rollout import start
from pipeline.rollout.cycle import load_logs
from pipeline.rollout.evaluate import evaluate_stage
from pipeline.rollout.fairness_checks import build_context, request_group_fields
from pipeline.rollout.outcomes import append_outcomes, outcomes_dir, requests_dir
from pipeline.serving.errors import RequestError
from pipeline.serving.records import RecordChecker
from pipeline.serving.request_log import SCHEMA, Entry, RequestLog, read_request_log
from pipeline.spec.load import load_spec
from pipeline.spec.schema import ColumnContract, RollbackSpec, RolloutSpec, StageSpec
from tests.rollout_fixtures import champion_and_challenger

REPO = Path(__file__).resolve().parents[2]
NAME = "streamflow-churn"
T0 = datetime(2026, 11, 23, tzinfo=UTC)
BANDS = ("18-24", "25-34", "35-49", "50+")
PLAN = RolloutSpec(
    name="t",
    stages=[
        StageSpec(name="canary-fairness", traffic=0.5, duration="1d", checks=["error_rate", "tpr_gap"]),
        StageSpec(name="full", traffic=1.0, duration="1d"),
    ],
    rollback=RollbackSpec(),
)


@pytest.fixture(scope="module")
def churn_spec():
    return load_spec(REPO / "specs" / "streamflow_churn.yaml").spec


@pytest.fixture
def world(tmp_path: Path):
    store = BundleStore(tmp_path / "bentoml")
    tags = champion_and_challenger(store, NAME, tmp_path)
    state = start(NAME, tags[1], PLAN, "test", store=store, clock=lambda: T0)
    return store, state


def _traffic(store, state, per_band: int, missed: dict[str, float], rng, unlabelled: int = 0) -> None:
    """Challenger requests per age band; a churner of band b is scored below the 0.20 threshold with prob missed[b]."""
    log = RequestLog(requests_dir(store.keel_dir, NAME))
    labels = []
    n = 0
    for band in BANDS:
        for _ in range(per_band):
            rid, n = f"q{n}", n + 1
            churned = rng.random() < 0.3
            p = (0.1 if rng.random() < missed[band] else 0.6) if churned else float(rng.uniform(0.0, 0.3))
            groups = json.dumps({"age_band": band, "plan_type": "basic"})
            side = "challenger" if n % 2 else "champion"
            log.log(Entry(rid, f"s{n}", side, side, state.stage, state.rollout_id, 2.0, "ok", probability=p,
                          groups=groups))  # fmt: skip
            labels.append((rid, "churned", 1.0 if churned else 0.0))
    for i in range(unlabelled):  # no label yet: left out, never counted as "did not churn"
        groups = json.dumps({"age_band": BANDS[0]})
        log.log(Entry(f"u{i}", f"u{i}", "challenger", "challenger", state.stage, state.rollout_id, 2.0, "ok",
                      probability=0.05, groups=groups))  # fmt: skip
    log.flush()
    append_outcomes(outcomes_dir(store.keel_dir, NAME), labels)


def _evaluate(store, state, spec, days: float = 1.5):
    frame, outcomes = load_logs(store, NAME)
    context = build_context(spec, None, REPO)
    return evaluate_stage(state, PLAN, frame, outcomes, T0 + timedelta(days=days), fairness=context)


def _check(report, name: str = "tpr_gap"):
    return next(c for c in report.checks if c.name == name)


def test_the_churn_spec_declares_its_group_fields_and_tpr_bound(churn_spec) -> None:
    assert request_group_fields(churn_spec) == ("age_band", "plan_type")
    context = build_context(churn_spec, None, REPO)
    assert (context.label, context.threshold, context.min_group_events) == ("churned", 0.2, 100)
    assert ["age_band"] in context.user_groupings


def test_a_challenger_with_a_tpr_gap_above_its_gate_rolls_back(world, churn_spec) -> None:
    store, state = world
    # 1,400 requests a band, half to the challenger at 30% churn: ~210 churners a band, over min_group_events 100
    _traffic(store, state, 1400, {"18-24": 0.05, "25-34": 0.05, "35-49": 0.05, "50+": 0.6}, np.random.default_rng(1))
    report = _evaluate(store, state, churn_spec)
    check = _check(report)
    assert check.passed is False and check.value > 0.15 and "tpr_gap[age_band]" in check.detail
    assert report.decision == "rollback" and "tpr_gap" in report.reason


def test_a_fair_challenger_passes_and_advances(world, churn_spec) -> None:
    store, state = world
    fair = dict.fromkeys(BANDS, 0.1)
    _traffic(store, state, 1400, fair, np.random.default_rng(2), unlabelled=400)
    report = _evaluate(store, state, churn_spec)
    check = _check(report)
    assert check.passed is True and check.value <= 0.15, check.detail
    assert "18-24 700," in check.detail  # the 700 labelled challenger requests; the 400 unlabelled ones are not rows
    assert report.decision == "advance", report.reason


def test_tiny_groups_hold_the_stage(world, churn_spec) -> None:
    store, state = world
    _traffic(store, state, 60, {"18-24": 0.0, "25-34": 0.0, "35-49": 0.0, "50+": 0.9}, np.random.default_rng(3))
    report = _evaluate(store, state, churn_spec, days=3)
    check = _check(report)
    assert check.passed is None and "insufficient" in check.detail
    assert report.decision == "hold" and "not measured yet" in report.reason


def test_a_log_without_group_values_holds_and_says_what_to_send(world, churn_spec) -> None:
    store, state = world
    log = RequestLog(requests_dir(store.keel_dir, NAME))
    for i in range(100):
        log.log(Entry(f"q{i}", f"s{i}", "c", "challenger", state.stage, state.rollout_id, 2.0, "ok", probability=0.5))
    log.flush()
    report = _evaluate(store, state, churn_spec)
    check = _check(report)
    assert check.passed is None and "age_band" in check.detail and "/score" in check.detail
    assert report.decision == "hold"


def test_old_request_log_parts_read_back_with_null_groups(tmp_path: Path) -> None:
    old = pa.schema([f for f in SCHEMA if f.name != "groups"])
    row = {"request_id": ["r1"], "ts": [T0], "entity_id": ["s1"], "bundle": ["b"], "side": ["champion"],
           "stage": [None], "rollout_id": [None], "latency_ms": [1.0], "status": ["ok"], "error": [None],
           "probability": [0.4], "shadow": [False], "items": [None], "level": [None]}  # fmt: skip
    pq.write_table(pa.table(row, schema=old), tmp_path / "part-old-000001.parquet")
    frame = read_request_log(tmp_path)
    assert list(frame.columns) == SCHEMA.names and frame["groups"].isna().all()


def test_group_fields_are_validated_optional_and_never_model_inputs() -> None:
    columns = {"sessions": ColumnContract(dtype="int", min=0)}
    extras = {"age_band": ColumnContract(dtype="category", allowed=list(BANDS), nullable=True)}
    checker = RecordChecker(columns, "subscriber_id", extras)
    out = checker.check([{"sessions": 3, "subscriber_id": "s1", "age_band": "50+"}, {"sessions": 4}])
    assert out == {"sessions": [3.0, 4.0]}  # the group value is not a model column
    with pytest.raises(RequestError) as info:
        checker.check([{"sessions": 3, "age_band": "90+"}])
    assert "age_band" in str(info.value.problems) and "not one of" in str(info.value.problems)
    with pytest.raises(RequestError, match="unexpected field"):
        RecordChecker(columns, "subscriber_id").check([{"sessions": 3, "age_band": "50+"}])


def test_group_values_are_logged_only_when_groups_are_declared() -> None:
    from pipeline.serving.dispatch import group_values

    records = [{"age_band": "50+", "plan_type": "basic", "sessions": 3}, {"sessions": 2, "age_band": None}, "junk"]
    assert group_values(records, ("age_band", "plan_type")) == ['{"age_band": "50+", "plan_type": "basic"}', None, None]
    assert group_values(records, ()) is None

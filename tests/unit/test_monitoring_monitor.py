"""monitor() on StreamFlow data: the seed's drift picture, a uniform bug, a unit change, missing inputs."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data.derived import add_derived
from pipeline.data.synthetic.streamflow import generate
from pipeline.monitoring import MonitorReference, build_reference, monitor
from pipeline.monitoring.drift import MISSING
from pipeline.spec.load import load_spec
from pipeline.spec.schema import ScenarioSpec, Spec

SPEC = Path(__file__).resolve().parents[2] / "specs" / "streamflow_churn.yaml"
ROWS = 10_000
TIER_SHIFT = {"premium": {"sessions_last_30d": 4.0}, "family": {"sessions_last_30d": 4.0}}
DAY = date(2026, 3, 1)


@pytest.fixture(scope="module")
def spec() -> Spec:
    return load_spec(SPEC).spec


@pytest.fixture(scope="module")
def reference(spec: Spec) -> MonitorReference:
    frame = add_derived(generate(ROWS, 7, ScenarioSpec()), spec.features.derived)
    return build_reference(frame, spec.contract, spec.features.derived, 10, "plan_type", "training data")


def current(**scenario) -> pd.DataFrame:
    return generate(ROWS, 8, ScenarioSpec(**scenario))


def test_tier_correlated_drift_is_one_shift_in_alert_pointing_at_premium_and_family(spec, reference) -> None:
    report = monitor(spec, current(segment_shift=TIER_SHIFT), reference, as_of=DAY)
    assert report.features["sessions_last_30d"].level == "ALERT"
    assert report.features["engagement_intensity"].level == "ALERT"
    unrelated = ("avg_session_minutes", "monthly_charges", "tenure_months", "days_since_last_activity", "plan_type")
    assert all(report.features[f].level == "OK" for f in unrelated)
    assert len(report.groups) == 1, [g.explanation for g in report.groups]
    group = report.groups[0]
    assert group.sources == ["sessions_last_30d"]
    assert {"sessions_last_30d", "engagement_intensity"} <= set(group.features)
    assert "engagement_intensity" in group.explanation and "derived from sessions_last_30d" in group.explanation
    assert "one shift" in group.explanation
    seg = report.segment_for("sessions_last_30d")
    assert seg is not None and seg.pattern == "segment-correlated"
    assert set(seg.shifted_segments) == {"premium", "family"}
    assert set(seg.stable_segments) == {"basic", "standard"}
    assert "product-change-like" in seg.likely and "per-segment PSI" in seg.statistic
    assert report.level == "ALERT" and report.unit_changes == []


def test_a_uniform_shift_is_diagnosed_as_pipeline_bug_like(spec, reference) -> None:
    report = monitor(spec, current(drift={"avg_session_minutes": 1.0}), reference, as_of=DAY)
    assert report.features["avg_session_minutes"].level in ("ALERT", "CRITICAL")
    seg = report.segment_for("avg_session_minutes")
    assert seg is not None and seg.pattern == "uniform", seg
    assert set(seg.shifted_segments) == {"basic", "standard", "premium", "family"}
    assert "pipeline-bug-like" in seg.likely and seg.min_max_ratio >= 1 / 3


def test_a_times_60_unit_change_is_named(spec, reference) -> None:
    day = current()
    day["days_since_last_activity"] = (
        day["days_since_last_activity"] * 60
    )  # a x60 unit mix-up (e.g. hours logged as minutes)
    report = monitor(spec, day, reference, as_of=DAY)
    assert report.features["days_since_last_activity"].level == "CRITICAL"
    changes = {u.feature: u for u in report.unit_changes}
    assert changes["days_since_last_activity"].factor == "x60"
    assert "x60" in report.features["days_since_last_activity"].message
    assert "x60" in report.to_markdown()


def test_a_missing_feature_is_reported_with_its_derived_features_and_the_rest_still_measured(spec, reference) -> None:
    day = current().drop(columns=["sessions_last_30d"])
    report = monitor(spec, day, reference, as_of=DAY)
    assert report.features["sessions_last_30d"].level == MISSING
    for derived in ("engagement_intensity", "charges_per_session", "content_diversity_ratio"):
        assert report.features[derived].level == MISSING
        assert "derived from sessions_last_30d, absent" in report.features[derived].message
    assert report.features["avg_session_minutes"].level == "OK"
    assert any("sessions_last_30d" in p for p in report.problems)
    assert report.to_dict()["levels"]["sessions_last_30d"] == MISSING


def test_report_json_is_valid_and_carries_the_facts_triggers_need(spec, reference) -> None:
    import json

    day = current()
    day["tenure_months"] = np.nan  # an all-null day for one feature
    report = monitor(spec, day, reference, as_of=DAY)
    data = json.loads(report.to_json())
    assert data["as_of"] == "2026-03-01" and data["levels"]["tenure_months"] == "NO_DATA"
    assert data["psi"]["sessions_last_30d"] < 0.1 and "tenure_months" not in data["psi"]

"""Lineage grouping: features sharing a shifted source are one shift; unrelated shifts stay apart."""

from __future__ import annotations

from pipeline.monitoring.drift import FeatureDrift
from pipeline.monitoring.lineage import group_shifts
from pipeline.spec.schema import DerivedFeature

DERIVED = {
    "engagement_intensity": DerivedFeature(expr="sessions * minutes / 30"),
    "per_session": DerivedFeature(expr="safe_div(charges, sessions, 0)"),
    "burden": DerivedFeature(expr="tickets / (1 + tenure)"),
}


def drifts(**psi: float) -> dict[str, FeatureDrift]:
    def level(v: float) -> str:
        return "CRITICAL" if v >= 0.5 else "ALERT" if v >= 0.25 else "WARNING" if v >= 0.1 else "OK"

    return {n: FeatureDrift(n, "numeric", v, level(v), 1000, 0.0, 0.0) for n, v in psi.items()}


def test_derived_features_join_their_shifted_source() -> None:
    groups = group_shifts(
        drifts(sessions=0.4, minutes=0.01, engagement_intensity=0.3, per_session=0.35, charges=0.0), DERIVED
    )
    assert len(groups) == 1
    g = groups[0]
    assert g.sources == ["sessions"] and g.level == "ALERT"
    assert g.features[0] == "sessions" and set(g.features) == {"sessions", "engagement_intensity", "per_session"}
    assert "derived from sessions" in g.explanation and "one shift, 3 alerts" in g.explanation


def test_unrelated_shifts_stay_separate_and_worst_comes_first() -> None:
    groups = group_shifts(drifts(sessions=0.3, engagement_intensity=0.3, tenure=0.6, burden=0.2, minutes=0.0), DERIVED)
    assert [g.sources for g in groups] == [["tenure"], ["sessions"]]
    assert groups[0].level == "CRITICAL" and set(groups[0].features) == {"tenure", "burden"}


def test_a_derived_feature_shifting_alone_names_all_its_inputs() -> None:
    groups = group_shifts(drifts(engagement_intensity=0.3, sessions=0.02, minutes=0.03), DERIVED)
    assert len(groups) == 1 and groups[0].sources == ["minutes", "sessions"]
    assert groups[0].features == ["engagement_intensity"]


def test_nothing_shifted_means_no_groups() -> None:
    assert group_shifts(drifts(sessions=0.05, engagement_intensity=0.01), DERIVED) == []

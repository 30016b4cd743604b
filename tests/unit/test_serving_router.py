"""Router: a stable share per rollout, sticky per entity across requests and growing stages."""

from __future__ import annotations

import pytest

from pipeline.serving.router import assign, bucket

IDS = [f"sub-{i:06d}" for i in range(10_000)]


@pytest.mark.parametrize("traffic", [0.1, 0.25, 0.5])
def test_share_matches_the_stage_traffic(traffic: float) -> None:
    share = sum(assign("ro-1", i, traffic) == "challenger" for i in IDS) / len(IDS)
    assert share == pytest.approx(traffic, abs=0.01)


def test_an_entity_stays_on_its_side_and_only_moves_to_the_challenger_as_traffic_grows() -> None:
    canary = {i for i in IDS if assign("ro-1", i, 0.10) == "challenger"}
    assert canary == {i for i in IDS if assign("ro-1", i, 0.10) == "challenger"}  # same answer every time
    wider = {i for i in IDS if assign("ro-1", i, 0.25) == "challenger"}
    assert canary <= wider


def test_edges_and_a_new_rollout_reshuffles() -> None:
    assert all(assign("ro-1", i, 0.0) == "champion" for i in IDS[:500])
    assert all(assign("ro-1", i, 1.0) == "challenger" for i in IDS[:500])
    first = {i for i in IDS if assign("ro-1", i, 0.1) == "challenger"}
    second = {i for i in IDS if assign("ro-2", i, 0.1) == "challenger"}
    assert len(first & second) < 0.2 * len(first)  # independent draws overlap ~10%
    assert all(0.0 <= bucket("ro-1", i) < 1.0 for i in IDS[:100])

"""Re-ranking: MMR against a brute-force reference, exposure floors, the latency budget, ties and speed."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from pipeline.recsys.rerank import (
    SKIPPED_LATENCY,
    LatencyBudget,
    _greedy_small,
    _greedy_vectorised,
    rerank,
    reserved_slots,
)

LANGS = np.array(["en", "es", "pt", "hi"], dtype=object)


def _brute_force(scores: np.ndarray, groups: np.ndarray, k: int, w: float, quota: dict[object, int]) -> list[int]:
    """MMR as specified, over every remaining candidate at every step (no group-head shortcut)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    rank = {i: r for r, i in enumerate(order)}
    high, low = max(scores), min(scores)
    rel = [(s - low) / (high - low) if high > low else 0.0 for s in scores]
    owed = dict(quota)
    chosen: list[int] = []
    for step in range(min(k, len(scores))):
        must = sum(owed.values()) >= min(k, len(scores)) - step
        best = None
        for i in order:
            if i in chosen or (must and owed.get(groups[i], 0) == 0):
                continue
            same = sum(groups[j] == groups[i] for j in chosen)
            value = (1 - w) * rel[i] - (w * same / step if step else 0.0)
            if best is None or value > best[0] or (value == best[0] and rank[i] < rank[best[1]]):
                best = (value, i)
        chosen.append(best[1])
        if owed.get(groups[best[1]], 0):
            owed[groups[best[1]]] -= 1
    return chosen


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force_mmr_with_and_without_floors(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    scores = np.round(rng.random(n), 1 if seed % 3 == 0 else 6)  # coarse rounding makes many ties
    groups = LANGS[rng.integers(0, 4, n)]
    k = int(rng.integers(1, n + 5))
    w = float(rng.choice([0.0, 0.3, 0.7, 1.0]))
    share = float(rng.choice([0.0, 0.1, 0.25]))
    exposure = {"en": 100, "es": 40, "pt": 10}  # hi never shown: the most under-exposed
    result = rerank(np.arange(n) + 1000, scores, groups, k, w, share, exposure)
    quota = dict(result.report.reserved)
    assert sum(quota.values()) <= reserved_slots(share, k)
    expected = _brute_force(scores, groups, k, w, quota)
    np.testing.assert_array_equal(result.positions, expected)
    np.testing.assert_array_equal(result.items, np.asarray(expected) + 1000)


def test_weight_zero_is_the_plain_top_k_by_score() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(500)
    groups = LANGS[rng.integers(0, 4, 500)]
    result = rerank(np.arange(500), scores, groups, 20, 0.0, 0.0)
    np.testing.assert_array_equal(result.items, np.argsort(-scores)[:20])
    assert result.report.ran and result.report.skipped is None and result.report.reserved == {}


def test_weight_one_alternates_groups() -> None:
    scores = np.linspace(1.0, 0.0, 12)
    two = np.array(["a"] * 6 + ["b"] * 6)  # every "a" outscores every "b"
    picked = rerank(np.arange(12), scores, two, 8, 1.0, 0.0)
    assert two[picked.items].tolist() == ["a", "b"] * 4
    np.testing.assert_array_equal(picked.items, [0, 6, 1, 7, 2, 8, 3, 9])  # best of each group in turn
    three = np.array(list("aaaabbbbcccc"))
    assert three[rerank(np.arange(12), scores, three, 9, 1.0, 0.0).items].tolist() == list("abc" * 3)


def test_intermediate_weight_trades_relevance_for_diversity() -> None:
    scores = np.array([1.0, 0.99, 0.98, 0.97, 0.5, 0.1])
    groups = np.array(["a", "a", "a", "a", "b", "c"])
    assert rerank(np.arange(6), scores, groups, 4, 0.0, 0.0).items.tolist() == [0, 1, 2, 3]
    # relevance (s - 0.1) / 0.9: a-items ~0.99, b 0.44, c 0.
    # At w=0.3 a second "a" still wins (0.7*0.99 - 0.3 > 0.7*0.44)
    assert rerank(np.arange(6), scores, groups, 4, 0.3, 0.0).items.tolist() == [0, 1, 2, 3]
    # at w=0.5 "b" comes second (0.5*0.99 - 0.5 < 0.5*0.44), then "a" again (redundancy 1/2)
    assert rerank(np.arange(6), scores, groups, 4, 0.5, 0.0).items.tolist() == [0, 4, 1, 2]
    # at w=0.6 even the zero-relevance "c" beats a third "a" (0.4*0.99 - 0.6*2/3 < 0)
    assert rerank(np.arange(6), scores, groups, 4, 0.6, 0.0).items.tolist() == [0, 4, 1, 5]


def test_min_exposure_reserves_exactly_the_declared_slots_for_the_least_exposed_groups() -> None:
    # "hi" and "pt" score below every "en"/"es" item, so without floors they get no slot
    scores = np.r_[np.linspace(1.0, 0.5, 30), np.linspace(0.4, 0.3, 5), np.linspace(0.2, 0.1, 5)]
    groups = np.array(["en", "es"] * 15 + ["pt"] * 5 + ["hi"] * 5, dtype=object)
    exposure = {"en": 9000, "es": 3000, "pt": 200, "hi": 50}
    top = rerank(np.arange(40), scores, groups, 20, 0.0, 0.0)
    assert set(groups[top.items]) == {"en", "es"}

    one = rerank(np.arange(40), scores, groups, 20, 0.0, 0.05, exposure)  # ceil(0.05 * 20) = 1 slot
    assert one.report.reserved == {"hi": 1} and one.report.filled_by_guarantee == 1
    np.testing.assert_array_equal(one.items[:19], top.items[:19])
    assert one.items[19] == 35  # the best "hi" item, in the last slot

    three = rerank(np.arange(40), scores, groups, 20, 0.0, 0.15, exposure)  # 3 slots: hi, pt, then hi again
    assert three.report.reserved == {"hi": 2, "pt": 1} and three.report.filled_by_guarantee == 3
    np.testing.assert_array_equal(three.items[:17], top.items[:17])
    assert sorted(three.items[17:].tolist()) == [30, 35, 36]  # the best "pt" and the two best "hi"


def test_a_floor_is_met_by_merit_first() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    groups = np.array(["en", "hi", "en", "en", "en"])
    result = rerank(np.arange(5), scores, groups, 3, 0.0, 0.3, {"en": 10})  # "hi" missing from the log: never shown
    assert result.items.tolist() == [0, 1, 2] and result.report.reserved == {"hi": 1}
    assert result.report.filled_by_guarantee == 0


def test_without_exposure_counts_the_smallest_catalog_groups_are_reserved_for() -> None:
    scores = np.linspace(1, 0, 10)
    groups = np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 2)
    by_candidates = rerank(np.arange(10), scores, groups, 4, 0.0, 0.25)
    assert by_candidates.report.reserved == {"c": 1} and by_candidates.items.tolist() == [0, 1, 2, 8]
    by_catalog = rerank(np.arange(10), scores, groups, 4, 0.0, 0.25, catalog_counts={"a": 50, "b": 5, "c": 500})
    assert by_catalog.report.reserved == {"b": 1} and by_catalog.items.tolist() == [0, 1, 2, 5]
    per_item = rerank(
        np.arange(10),
        scores,
        groups,
        4,
        0.0,
        0.25,
        {"a": 100, "b": 90, "c": 120},
        catalog_counts={"a": 10, "b": 1, "c": 60},
    )
    assert per_item.report.reserved == {"c": 1}  # 2 impressions per catalog item, against 10 and 90


def test_the_latency_budget_skips_reranking_and_says_so() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    groups = np.array(["b", "a", "a", "a"])
    late = LatencyBudget(sla_ms=100.0, share=0.8, start=time.perf_counter() - 0.081)
    assert late.exceeded() and late.limit_ms == pytest.approx(80.0)
    skipped = rerank(np.array([10, 11, 12, 13]), scores, groups, 3, 1.0, 0.5, deadline=late)
    assert skipped.items.tolist() == [11, 13, 12]  # plain top-k by score
    assert not skipped.report.ran and skipped.report.skipped == SKIPPED_LATENCY == "latency_budget"
    assert skipped.report.as_dict()["skipped"] == "latency_budget" and skipped.report.reserved == {}
    fresh = LatencyBudget(sla_ms=100.0, share=0.8)
    assert not fresh.exceeded()
    ran = rerank(np.array([10, 11, 12, 13]), scores, groups, 3, 1.0, 0.0, deadline=fresh)
    assert ran.report.ran and ran.report.skipped is None and ran.items.tolist() == [11, 10, 13]
    with pytest.raises(ValueError, match="share"):
        LatencyBudget(100.0, 0.0)


def test_ties_are_deterministic() -> None:
    scores = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    groups = np.array(["b", "a", "b", "a", "c", "c"])
    plain = rerank(np.arange(6), scores, groups, 6, 0.0, 0.0)
    assert plain.items.tolist() == [0, 1, 2, 3, 4, 5]  # equal scores keep input order
    diverse = rerank(np.arange(6), scores, groups, 6, 1.0, 0.0)
    assert diverse.items.tolist() == [0, 1, 4, 2, 3, 5]  # equal objectives: the group whose head comes first
    for _ in range(3):
        assert (
            rerank(np.arange(6), scores, groups, 6, 0.5, 0.2).items.tolist()
            == rerank(np.arange(6), scores, groups, 6, 0.5, 0.2).items.tolist()
        )


@pytest.mark.parametrize("seed", range(20))
def test_the_python_and_numpy_greedy_loops_agree(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, n_groups = int(rng.integers(10, 400)), int(rng.integers(1, 40))
    codes = rng.integers(0, n_groups, n)
    codes = np.unique(codes, return_inverse=True)[1]  # dense 0..G-1
    relevance = np.sort(np.round(rng.random(n), 2))[::-1]  # in score order, with ties
    by_group = np.argsort(codes, kind="stable")
    size = np.bincount(codes)
    start = np.cumsum(size) - size
    quota = np.minimum(rng.integers(0, 3, len(size)), size)
    width = int(rng.integers(int(quota.sum()), n + 1))
    w = float(rng.choice([0.0, 0.25, 0.5, 1.0]))
    small = _greedy_small(relevance, by_group, start, size, quota, w, width)
    vectorised = _greedy_vectorised(relevance, by_group, start, size, quota, w, width)
    np.testing.assert_array_equal(small[0], vectorised[0])
    assert small[1] == vectorised[1]


def test_missing_values_are_a_group_and_integer_codes_work() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    with_missing = np.array(["en", "en", None, np.nan], dtype=object)
    assert rerank(np.arange(4), scores, with_missing, 2, 1.0, 0.0).items.tolist() == [0, 2]
    assert rerank(np.arange(4), scores, np.array([3, 3, 7, 7]), 2, 1.0, 0.0).items.tolist() == [0, 2]
    assert rerank(np.arange(4), scores, [3, 3, 7, 7], 4, 0.0, 0.25, {3: 10, 7: 0}).report.reserved == {"7": 1}


def test_reserved_slots_round_up_without_float_noise() -> None:
    assert 0.07 * 100 > 7 and reserved_slots(0.07, 100) == 7
    assert reserved_slots(0.05, 10) == 1 and reserved_slots(0.0, 10) == 0 and reserved_slots(1.0, 7) == 7
    assert reserved_slots(0.05, 500) == math.ceil(25)


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="finite"):
        rerank([1, 2], [0.1, np.nan], ["a", "b"], 1, 0.3, 0.0)
    with pytest.raises(ValueError, match="one per candidate"):
        rerank([1, 2], [0.1, 0.2], ["a"], 1, 0.3, 0.0)
    with pytest.raises(ValueError, match="k must be at least 1"):
        rerank([1, 2], [0.1, 0.2], ["a", "b"], 0, 0.3, 0.0)
    with pytest.raises(ValueError, match="diversity_weight"):
        rerank([1, 2], [0.1, 0.2], ["a", "b"], 1, 1.5, 0.0)
    with pytest.raises(ValueError, match="no candidates"):
        rerank([], [], [], 1, 0.3, 0.0)


@pytest.mark.parametrize(("n_groups", "as_text"), [(4, True), (4, False), (200, False)])
def test_a_request_reranks_500_candidates_well_within_a_millisecond_budget(n_groups: int, as_text: bool) -> None:
    # measured on the shared 2-core dev box, k=100: ~0.2-0.4 ms (4 languages), ~0.9 ms (200 creators);
    # the bound below only catches an accidental per-candidate loop (that costs > 10 ms)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, n_groups, 500)
    values = LANGS[codes % 4] if as_text else codes
    scores = rng.random(500)
    rerank(np.arange(500), scores, values, 100, 0.3, 0.05)
    times = []
    for _ in range(30):
        start = time.perf_counter()
        rerank(np.arange(500), scores, values, 100, 0.3, 0.05, {"en": 10})
        times.append(time.perf_counter() - start)
    assert float(np.median(times)) < 0.010

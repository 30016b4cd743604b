"""Ranking metrics and seen-excluding top-K against brute-force references and hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.recsys.metrics import (
    NO_ITEM,
    PER_USER,
    evaluate_scores,
    per_user_metrics,
    ranking_metrics,
    top_k_excluding_seen,
)
from pipeline.spec.catalog import metric_info


def _random_csr(rng: np.random.Generator, n_users: int, n_items: int, density: float) -> sp.csr_matrix:
    dense = rng.random((n_users, n_items)) < density
    return sp.csr_matrix(dense.astype(np.float32))


def _brute_top_k(scores: np.ndarray, seen: sp.csr_matrix, users: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(users), k), NO_ITEM)
    for row, user in enumerate(users):
        excluded = set(seen[user].indices.tolist())
        ranked = sorted(
            (j for j in range(scores.shape[1]) if j not in excluded and scores[row, j] != -np.inf),
            key=lambda j: (-scores[row, j], j),
        )[:k]
        out[row, : len(ranked)] = ranked
    return out


def _brute_metrics(top_k: np.ndarray, relevant: sp.csr_matrix, ks: list[int]) -> dict[str, float]:
    sums = {f"{m}@{k}": 0.0 for k in ks for m in PER_USER}
    users = 0
    for row in range(top_k.shape[0]):
        rel = set(relevant[row].indices.tolist())
        if not rel:
            continue
        users += 1
        for k in ks:
            ranked = [int(j) for j in top_k[row, :k]]
            gains = [1.0 if j in rel else 0.0 for j in ranked]
            dcg = sum(g / math.log2(r + 2) for r, g in enumerate(gains))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(rel), k)))
            first = next((r + 1 for r, g in enumerate(gains) if g), None)
            sums[f"recall@{k}"] += sum(gains) / len(rel)
            sums[f"hit@{k}"] += float(any(gains))
            sums[f"ndcg@{k}"] += dcg / idcg
            sums[f"precision@{k}"] += sum(gains) / k
            sums[f"mrr@{k}"] += 1 / first if first else 0.0
    out = {name: total / users if users else math.nan for name, total in sums.items()}
    for k in ks:
        shown = {int(j) for j in top_k[:, :k].ravel() if j >= 0}
        out[f"coverage@{k}"] = len(shown) / relevant.shape[1]
    return out


@pytest.mark.parametrize("seed", range(8))
def test_top_k_and_metrics_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items, k = int(rng.integers(1, 30)), int(rng.integers(1, 40)), int(rng.integers(1, 15))
    # rounded scores force ties, which must go to the lower item index
    scores = np.round(rng.normal(size=(n_users, n_items)), 1)
    scores[rng.random(scores.shape) < 0.1] = -np.inf  # a model may rule items out
    seen = _random_csr(rng, n_users, n_items, rng.uniform(0, 0.6))
    relevant = _random_csr(rng, n_users, n_items, rng.uniform(0, 0.3))
    users = np.arange(n_users)
    chunk = int(rng.integers(1, n_users + 2))

    top = top_k_excluding_seen(scores, seen, k, chunk)
    np.testing.assert_array_equal(top, _brute_top_k(scores, seen, users, k))

    ks = sorted({1, k, max(1, k // 2)})
    got = ranking_metrics(top, relevant, ks)
    want = _brute_metrics(top, relevant, ks)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == pytest.approx(want[name], nan_ok=True), name


@pytest.mark.parametrize("seed", range(4))
def test_score_function_subset_of_users_matches_precomputed_scores(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n_users, n_items = 50, 30
    table = rng.normal(size=(n_users, n_items))
    seen = _random_csr(rng, n_users, n_items, 0.3)
    users = rng.choice(n_users, size=20, replace=False)

    def score_fn(batch: np.ndarray) -> np.ndarray:
        return table[batch]

    via_fn = top_k_excluding_seen(score_fn, seen, 7, 3, users=users)
    via_array = top_k_excluding_seen(table[users], seen, 7, users=users)
    np.testing.assert_array_equal(via_fn, via_array)
    np.testing.assert_array_equal(via_fn, _brute_top_k(table[users], seen, users, 7))


def test_seen_items_never_recommended_and_short_lists_are_padded() -> None:
    scores = np.array([[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    seen = sp.csr_matrix(np.array([[1, 0, 1, 1], [0, 0, 0, 0]], dtype=np.float32))
    top = top_k_excluding_seen(scores, seen, 3)
    np.testing.assert_array_equal(top, [[1, NO_ITEM, NO_ITEM], [3, 2, 1]])
    # k above the catalogue size pads as well
    np.testing.assert_array_equal(top_k_excluding_seen(scores, seen, 6)[1], [3, 2, 1, 0, -1, -1])


def test_scores_are_not_modified_in_place() -> None:
    scores = np.array([[1.0, 2.0, 3.0]])
    seen = sp.csr_matrix(np.array([[0, 0, 1]], dtype=np.float32))
    top_k_excluding_seen(scores, seen, 2)
    np.testing.assert_array_equal(scores, [[1.0, 2.0, 3.0]])


def test_hand_computed_ranking() -> None:
    # relevant {2, 5}; ranking [2, 0, 5, 1]: hits at ranks 1 and 3
    top = np.array([[2, 0, 5, 1]])
    relevant = sp.csr_matrix(([1.0, 1.0], ([0, 0], [2, 5])), shape=(1, 8))
    got = ranking_metrics(top, relevant, [1, 2, 4])
    assert got["ndcg@4"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert got["ndcg@2"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert got["ndcg@1"] == 1.0
    assert got["recall@2"] == 0.5 and got["recall@4"] == 1.0
    assert got["precision@4"] == 0.5
    assert got["mrr@4"] == 1.0
    assert got["coverage@4"] == 4 / 8


def test_ideal_dcg_uses_min_of_relevant_and_k() -> None:
    # five relevant items, K=2 and both slots hit: a perfect list, NDCG 1 (not 2 hits / 5 ideal)
    top = np.array([[0, 1, 9]])
    relevant = sp.csr_matrix(np.array([[1, 1, 1, 1, 1, 0, 0, 0, 0, 0]], dtype=np.float32))
    got = ranking_metrics(top, relevant, [2, 3])
    assert got["ndcg@2"] == 1.0
    assert got["recall@2"] == pytest.approx(2 / 5)
    assert got["ndcg@3"] == pytest.approx((1 + 1 / math.log2(3)) / (1 + 1 / math.log2(3) + 0.5))


def test_mrr_counts_only_hits_within_k() -> None:
    top = np.array([[7, 8, 3], [3, 7, 8]])
    relevant = sp.csr_matrix(([1.0, 1.0], ([0, 1], [3, 3])), shape=(2, 10))
    got = per_user_metrics(top, relevant, [2, 3])
    np.testing.assert_allclose(got["mrr@2"], [0.0, 1.0])
    np.testing.assert_allclose(got["mrr@3"], [1 / 3, 1.0])


def test_users_without_relevant_items_are_left_out_of_averages() -> None:
    top = np.array([[1, 2], [1, 2]])
    relevant = sp.csr_matrix(([1.0], ([0], [1])), shape=(2, 4))
    got = ranking_metrics(top, relevant, [2])
    assert got["hit@2"] == 1.0
    nothing = ranking_metrics(top, sp.csr_matrix((2, 4)), [2])
    assert math.isnan(nothing["hit@2"]) and nothing["coverage@2"] == 0.5


def test_bad_inputs_are_refused() -> None:
    relevant = sp.csr_matrix((1, 5))
    with pytest.raises(ValueError, match="more than once"):
        ranking_metrics(np.array([[1, 1]]), relevant, [2])
    with pytest.raises(ValueError, match="between 1 and"):
        ranking_metrics(np.array([[1, 2]]), relevant, [3])
    with pytest.raises(ValueError, match="outside"):
        ranking_metrics(np.array([[1, 5]]), relevant, [2])
    with pytest.raises(ValueError, match="NaN"):
        top_k_excluding_seen(np.array([[np.nan, 1.0]]), sp.csr_matrix((1, 2)), 1)
    with pytest.raises(ValueError, match="shape"):
        top_k_excluding_seen(np.zeros((2, 3)), sp.csr_matrix((1, 3)), 1)


@pytest.mark.parametrize("seed", range(3))
def test_evaluate_scores_equals_ranking_metrics_on_the_whole_list(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    n_users, n_items = 40, 25
    table = rng.normal(size=(n_users, n_items))
    seen = _random_csr(rng, n_users, n_items, 0.2)
    relevant = _random_csr(rng, n_users, n_items, 0.15)
    users = rng.choice(n_users, size=30, replace=False)

    def score_fn(batch: np.ndarray) -> np.ndarray:
        return table[batch]

    streamed = evaluate_scores(score_fn, users, seen, relevant, ks=[10, 3], chunk=7)
    whole = ranking_metrics(top_k_excluding_seen(score_fn, seen, 10, users=users), relevant[users], [3, 10])
    assert streamed.keys() == whole.keys()
    for name in whole:
        assert streamed[name] == pytest.approx(whole[name]), name


def test_metric_names_are_known_to_the_spec_catalogue() -> None:
    top = np.array([[0, 1]])
    names = ranking_metrics(top, sp.csr_matrix(([1.0], ([0], [1])), shape=(1, 3)), [2])
    # coverage@K has no @K entry in the catalogue (only plain "coverage"); see the recsys report
    assert all(metric_info(n, "recommendation") is not None for n in names if not n.startswith("coverage"))

"""Baselines: hand-worked scores, EASE against its closed form, and real lift on synthetic StreamRec."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.data.synthetic import streamrec
from pipeline.recsys.baselines import BASELINES, CoOccurrence, Ease, ItemScorer, Popularity
from pipeline.recsys.examples import FeedbackColumns, RecExamples, build_examples
from pipeline.recsys.metrics import per_user_metrics, top_k_excluding_seen
from pipeline.spec.schema import ScenarioSpec

TRIANGLE = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=np.float32))


@pytest.fixture(scope="module")
def examples() -> RecExamples:
    data = streamrec.generate(20_000, 11, ScenarioSpec())
    cols = FeedbackColumns("user_id", "item_id", "timestamp", label="clicked", positive=1)
    return build_examples(data["interactions"], data["items"]["item_id"], cols, 0.1, 0.2)


def test_popularity_counts_positive_interactions() -> None:
    model = Popularity().fit(sp.csr_matrix(np.array([[2, 1, 0], [1, 0, 0]], dtype=np.float32)))
    np.testing.assert_array_equal(model.scores(np.array([1, 0, 1])), [[3, 1, 0]] * 3)


def test_cooccurrence_sums_rows_of_the_users_items_without_self_pairs() -> None:
    plain = CoOccurrence().fit(TRIANGLE)
    np.testing.assert_array_equal(plain.scores(np.array([0])), [[1, 1, 2]])
    cosine = CoOccurrence("cosine").fit(TRIANGLE)
    np.testing.assert_allclose(cosine.scores(np.array([0, 2])), [[0.5, 0.5, 1.0], [1.0, 0.5, 0.5]])


@pytest.mark.parametrize("seed", range(3))
def test_ease_matches_its_closed_form(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.random((60, 15)) < 0.3).astype(np.float64)
    lam = float(rng.uniform(0.5, 50))
    p = np.linalg.inv(x.T @ x + lam * np.eye(15))
    b = np.eye(15) - p / np.diag(p)
    model = Ease(lam).fit(sp.csr_matrix(x))
    np.testing.assert_allclose(model.weights, b, atol=1e-10)
    assert np.all(np.diag(model.weights) == 0)
    np.testing.assert_allclose(model.scores(np.arange(60)), x @ b, atol=1e-10)


def test_ease_weights_stay_c_ordered_after_fit_and_after_a_bundle_restores_them(tmp_path) -> None:
    """A sparse history row times Fortran-ordered weights cost ~600 ms a user at 9k items (EASE timed out of
    /recommend); cho_solve returns Fortran order and np.load keeps it, so both ways in must reorder."""
    from pipeline.recsys.source_state import restore_sources

    rng = np.random.default_rng(3)
    x = sp.csr_matrix((rng.random((50, 30)) < 0.3).astype(np.float64))
    model = Ease(20.0).fit(x)
    assert model.weights.flags.c_contiguous
    np.save(tmp_path / "w.npy", np.asfortranarray(model.weights), allow_pickle=False)  # as an older bundle holds it
    old = np.load(tmp_path / "w.npy", allow_pickle=False)
    assert not old.flags.c_contiguous
    declared = [{"name": "ease", "type": "ease", "params": {"lam": 20.0}}]
    restored = restore_sources(declared, {"ease": {"weights": old}}, x)["ease"]
    assert restored.scorer.weights.flags.c_contiguous
    np.testing.assert_array_equal(restored.scorer.scores(np.arange(50)), model.scores(np.arange(50)))


def test_ease_with_huge_lambda_approaches_cooccurrence() -> None:
    # (G + lam I)^-1 = (I - G / lam) / lam + O(lam^-3), so lam * B -> G off the diagonal
    rng = np.random.default_rng(5)
    x = sp.csr_matrix((rng.random((40, 12)) < 0.3).astype(np.float32))
    lam = 1e6
    ease = Ease(lam).fit(x).scores(np.arange(40))
    cooc = CoOccurrence().fit(x).scores(np.arange(40))
    np.testing.assert_allclose(ease * lam, cooc, rtol=1e-3, atol=1e-3)


def test_ease_refuses_catalogues_above_its_limit() -> None:
    with pytest.raises(ValueError, match=r"max_items=2.*co-occurrence"):
        Ease(10.0, max_items=2).fit(TRIANGLE)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_shares_the_interface(name: str) -> None:
    model: ItemScorer = BASELINES[name]()
    with pytest.raises(ValueError, match="not fitted"):
        model.scores(np.array([0]))
    model.fit(TRIANGLE)
    assert model.name == name and model.n_items == 3
    top = model.recommend(np.array([2, 0, 1]), 3, TRIANGLE, chunk=2)
    np.testing.assert_array_equal(top, top_k_excluding_seen(model.scores(np.array([2, 0, 1])), TRIANGLE[[2, 0, 1]], 3))
    assert top.shape == (3, 3) and (top[:, 1:] == -1).all()  # two of three items are seen by each user
    assert all(not TRIANGLE[u, top[i, 0]] for i, u in enumerate([2, 0, 1]))


def _per_user(model: ItemScorer, ex: RecExamples, k: int = 10) -> dict[str, np.ndarray]:
    top = model.recommend(ex.test_users, k, ex.seen)
    return per_user_metrics(top, ex.test_relevant[ex.test_users], [k])


def _random_hit_rate(ex: RecExamples, k: int = 10) -> np.ndarray:
    """Expected Hit@k per user of a uniformly random ranking of the unseen items: 1 - C(m-r, k) / C(m, k)."""
    users = ex.test_users
    unseen = ex.n_items - np.diff(ex.seen.indptr)[users]
    rel = np.diff(ex.test_relevant.indptr)[users]
    steps = np.arange(k)[None, :]
    miss = np.prod(np.clip((unseen - rel)[:, None] - steps, 0, None) / (unseen[:, None] - steps), axis=1)
    return 1.0 - miss


def _beats(better: np.ndarray, worse: np.ndarray | float, z: float = 3.0) -> bool:
    """Mean per-user lift above z standard errors of that lift (paired when both are per-user arrays)."""
    diff = better - worse
    return float(diff.mean()) > z * float(diff.std(ddof=1)) / np.sqrt(len(diff))


def test_baselines_beat_random_and_ease_beats_popularity(examples: RecExamples) -> None:
    # Fixed seed 11 and 20k rows: ~230 warm test users, ~330 relevant pairs. Measured (seeds 1, 2, 3, 11):
    # random ~0.035 Hit@10, popularity 0.13-0.22, co-occurrence and EASE 0.53-0.59; paired z of each
    # assertion below is >= 4 on all four seeds (popularity vs random is the tightest, 4.1 on seed 11).
    # EASE vs co-occurrence is NOT asserted: the paired z of the difference ranges from -2.7 to +0.6
    # across those seeds (co-occurrence slightly ahead at seed 11, also at the spec's 50k rows).
    ex = examples
    assert len(ex.test_users) > 150
    random_hit = _random_hit_rate(ex)
    pop = _per_user(Popularity().fit(ex.train_positives), ex)
    cooc = _per_user(CoOccurrence().fit(ex.train_positives), ex)
    ease = _per_user(Ease(100.0).fit(ex.train_positives), ex)
    for name, model in [("popularity", pop), ("cooccurrence", cooc), ("ease", ease)]:
        assert _beats(model["hit@10"], random_hit), (name, model["hit@10"].mean(), random_hit.mean())
    assert _beats(ease["hit@10"], pop["hit@10"])
    assert _beats(ease["ndcg@10"], pop["ndcg@10"])
    assert _beats(cooc["ndcg@10"], pop["ndcg@10"])

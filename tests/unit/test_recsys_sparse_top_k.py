"""The batch path's sparse top-k for popularity and co-occurrence must give exactly the dense path's lists.

Retrieval used `Popularity.recommend` / `CoOccurrence.recommend`, which score every item of the
catalogue per user (a dense users x items block): at 100k items that was 80% of batch top-K
time. `system.popularity_top_k` / `system.cooccurrence_top_k` replace them there; these tests
hold them to the dense results item for item, ties, seen items and short lists included.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.recsys import system
from pipeline.recsys.baselines import CoOccurrence, ItemScorer, Popularity


def _case(seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, int]:
    """Small integer counts (many ties), a seen matrix from empty to nearly full, users with repeats."""
    rng = np.random.default_rng(seed)
    n_users, n_items = int(rng.integers(1, 40)), int(rng.integers(1, 60))
    train = sp.random(n_users, n_items, density=float(rng.choice([0.01, 0.05, 0.2, 0.6])), random_state=seed)
    train = sp.csr_matrix(train)
    train.data[:] = rng.integers(1, 3, len(train.data))
    seen = sp.csr_matrix(
        sp.random(n_users, n_items, density=float(rng.choice([0.0, 0.1, 0.5, 0.95])), random_state=seed + 1)
    )
    seen.data[:] = 1.0
    users = rng.integers(0, n_users, int(rng.integers(0, n_users + 3)))
    return train, seen, users, int(rng.integers(1, n_items + 5))


def _fast(model: ItemScorer, users: np.ndarray, k: int, seen: sp.csr_matrix) -> np.ndarray:
    if isinstance(model, Popularity):
        return system.popularity_top_k(model, users, k, seen)
    assert isinstance(model, CoOccurrence)
    return system.cooccurrence_top_k(model, users, k, seen)


@pytest.mark.parametrize("make", [Popularity, CoOccurrence, lambda: CoOccurrence("cosine")])
def test_sparse_top_k_equals_the_dense_top_k(make) -> None:
    checked_short = checked_padded = 0
    for seed in range(60):
        train, seen, users, k = _case(seed)
        model = make().fit(train)
        dense = model.recommend(users, k, seen)
        fast = _fast(model, users, k, seen)
        assert fast.shape == dense.shape == (len(users), k)
        np.testing.assert_array_equal(fast, dense, err_msg=f"seed {seed}")
        checked_padded += int((dense == -1).any())
        checked_short += int(k > 1 and len(users) > 0)
    assert checked_padded and checked_short  # the cases did exercise -1 padding and multi-item lists


def test_cooccurrence_tops_up_short_lists_with_zero_score_items_in_index_order() -> None:
    # items 0 and 1 co-occur; user 0 has seen item 0, so only item 1 scores > 0 for them
    train = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 1, 0]], dtype=float))
    seen = sp.csr_matrix(np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 1, 0]], dtype=float))
    model = CoOccurrence().fit(train)
    fast = system.cooccurrence_top_k(model, np.array([0, 2]), 4, seen)
    assert fast.tolist() == [[1, 3, 4, -1], [0, 1, 2, 4]]
    np.testing.assert_array_equal(fast, model.recommend(np.array([0, 2]), 4, seen))


def test_popularity_is_one_order_minus_each_users_seen_items() -> None:
    train = sp.csr_matrix(np.array([[1, 3, 0, 2], [0, 1, 0, 2]], dtype=float))  # counts 1, 4, 0, 4
    seen = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 0]], dtype=float))
    model = Popularity().fit(train)
    assert system.popularity_top_k(model, np.array([0, 1]), 3, seen).tolist() == [[3, 0, 2], [1, 3, 0]]

"""Retrieval sources behind one protocol, declared in retrieval.sources; same-run baselines."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.recsys.baselines import CoOccurrence, Popularity
from pipeline.recsys.retrieval import NOT_LISTED, Retrieval, _rank_in_list, candidate_rows
from pipeline.recsys.same_run import baseline_margins
from pipeline.recsys.sources import SOURCE_TYPES, CandidateSource, make_source
from pipeline.spec.schema import RetrievalSourceSpec

CLASSICAL = ["popularity", "cooccurrence", "item_knn", "ease", "als"]


def history(n_users: int = 60, n_items: int = 40, seed: int = 0) -> sp.csr_matrix:
    """Two taste blocks: users 0..29 like items 0..19, the others items 20..39 (plus noise)."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(n_users):
        block = 0 if u < n_users // 2 else n_items // 2
        for i in rng.choice(n_items // 2, 6, replace=False):
            rows.append(u)
            cols.append(block + i)
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items))
    matrix.sum_duplicates()
    return matrix


def test_every_type_is_registered() -> None:
    assert set(CLASSICAL) <= set(SOURCE_TYPES)
    with pytest.raises(ValueError, match="unknown retrieval source type 'svd'"):
        make_source("svd")
    with pytest.raises(ValueError, match="retrieval source 'ease'"):
        make_source("ease", {"lambda_": 3})


@pytest.mark.parametrize("kind", CLASSICAL)
def test_source_protocol(kind: str) -> None:
    train = history()
    source = make_source(kind, {"iterations": 5, "factors": 8} if kind == "als" else {}).fit(train)
    assert isinstance(source, CandidateSource)
    users = np.arange(60)
    top = source.top_k(users, 10, train)
    assert top.shape == (60, 10)
    for u in users:  # seen items are never proposed, no repeats
        listed = top[u][top[u] >= 0]
        assert not set(listed) & set(train[u].indices) and len(set(listed)) == len(listed)
    # scores of given pairs agree with the list order
    pairs_u = np.repeat(users, 10)
    scores = source.score(pairs_u, top.ravel()).reshape(60, 10)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    if kind != "popularity":  # personalised: most of a user's list comes from the user's own block
        block = (top < 20) == (users[:, None] < 30)
        assert block[:, :5].mean() > 0.8, kind


def test_declared_sources_merge_only_those_and_feed_the_ranker() -> None:
    train = history()
    n_users, n_items = train.shape
    retrieval = Retrieval(
        index=None,  # type: ignore[arg-type]  # no two-tower among the declared sources: never searched
        user_vectors=np.zeros((n_users, 4), np.float32),
        user_known=np.zeros(n_users, bool),
        item_vectors=np.zeros((n_items, 4), np.float32),
        cooccurrence=CoOccurrence().fit(train),
        popularity=Popularity().fit(train),
        k=15,
    )
    declared = [RetrievalSourceSpec(type="ease", weight=2), RetrievalSourceSpec(type="popularity")]
    retrieval.declare(declared, train)
    assert retrieval.names == ("ease", "popularity") and retrieval.weights == (2, 1)
    users = np.arange(10)
    items, sources, lists = retrieval.candidates_with_lists(users, train)
    assert set(lists) == {"ease", "popularity"} and set(np.unique(sources[items >= 0])) <= {0, 1}
    rows = candidate_rows(retrieval, users, items, sources, lists)
    assert retrieval.source_feature_names == ["ease_score", "ease_rank", "popularity_score", "popularity_rank"]
    assert set(retrieval.source_feature_names) <= set(rows.columns)
    assert list(rows["source"].cat.categories) == ["ease", "popularity"]
    first = rows.groupby("user_idx").head(1)  # the merge starts with ease's first item
    assert (first["ease_rank"] == 0).all()
    pop = rows[rows["source"] == "popularity"]
    assert (pop["popularity_rank"] < NOT_LISTED).all()
    np.testing.assert_allclose(rows["popularity_score"], train.sum(axis=0).A1[rows["item_idx"]])


def test_rank_in_list() -> None:
    top = np.array([[5, 2, -1], [2, 9, 1]])
    rank = _rank_in_list(top, np.array([0, 0, 0, 1, 1, 1]), np.array([2, 5, 9, 1, 9, 5]))
    assert list(rank) == [1, 0, NOT_LISTED, 2, 1, NOT_LISTED]


def test_baseline_margins_name_every_baseline() -> None:
    stages = {"final": {"hit@10": 0.3, "ndcg@10": 0.2}, "ease": {"hit@10": 0.35, "ndcg@10": 0.19}}
    out = baseline_margins(stages, ["ease", "skipped_one"])
    assert set(out) == {"ease"}
    assert out["ease"]["ndcg@10"]["beats"] and not out["ease"]["hit@10"]["beats"]

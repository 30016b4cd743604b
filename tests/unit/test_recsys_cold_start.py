"""One cold-start policy for batch lists and /recommend; no list is filled in catalogue order."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipeline.recsys import system
from pipeline.recsys.attributes import Attribute
from pipeline.recsys.baselines import CoOccurrence, Popularity
from pipeline.recsys.cold_start import ColdStart
from pipeline.recsys.sources import make_source
from pipeline.spec.schema import ColdStartSpec

COUNTS = np.array([1.0, 9.0, 5.0, 7.0, 3.0, 8.0])
ITEMS = pd.DataFrame({"language": ["en", "es", "en", "es", "en", "en"]})
USERS = pd.DataFrame({"language": ["es", None, "en"]})
DECLARED = {"language": Attribute("language", "categorical")}


def test_popular_in_the_users_value_then_global_popularity() -> None:
    spec = ColdStartSpec(policy="popular_in", attribute="language")
    cold = ColdStart.build(spec, COUNTS, ITEMS, USERS, DECLARED)
    seen = sp.csr_matrix(([1.0], ([0], [3])), shape=(3, 6))
    chosen, source = cold.choose(0, 3, seen)  # es: items 1 and 3 (3 seen), then global popularity
    assert source == "popular_in" and chosen.tolist() == [1, 5, 2]
    chosen, source = cold.choose(1, 2, seen, {"language": "en"})  # no language in the table: the request's
    assert source == "popular_in" and chosen.tolist() == [5, 2]
    chosen, source = cold.choose(None, 2, seen)  # unknown user, no context
    assert source == "popularity" and chosen.tolist() == [1, 5]
    assert cold.cold(seen, np.arange(3)).tolist() == [False, True, True]


def test_popular_in_needs_a_declared_categorical_attribute() -> None:
    with pytest.raises(ValueError, match="popular_in needs `attribute`"):
        ColdStartSpec(policy="popular_in")
    spec = ColdStartSpec(policy="popular_in", attribute="language")
    with pytest.raises(ValueError, match="not a declared categorical item attribute"):
        ColdStart.build(spec, COUNTS, ITEMS, USERS, {})


def test_batch_lists_of_cold_users_follow_the_policy() -> None:
    cold = ColdStart.build(ColdStartSpec(policy="popularity"), COUNTS, ITEMS, USERS)
    history = sp.csr_matrix(([1.0, 1.0], ([0, 0], [3, 4])), shape=(3, 6))
    retrieval = SimpleNamespace(names=("two_tower", "popularity"), popularity=Popularity().fit(history))
    retrieval.popularity.item_counts = COUNTS
    rec = SimpleNamespace(cold_start=cold, retrieval=retrieval)
    users = np.arange(3)
    ranked, final = np.full((3, 2), 4), np.full((3, 2), 4)
    scores, sources = np.zeros((3, 2)), np.zeros((3, 2), dtype=np.int64)
    system._cold_lists(rec, users, history, 2, ranked, final, scores, sources)
    assert final[0].tolist() == [4, 4]  # warm: untouched
    assert final[1].tolist() == final[2].tolist() == [1, 5] and scores[1].tolist() == [9.0, 8.0]
    labels = (*retrieval.names, *(f"cold_start:{p}" for p in system.COLD_SOURCES))
    assert labels[sources[1, 0]] == "cold_start:popularity"


def test_history_sources_never_list_the_catalogue_for_a_user_without_history() -> None:
    history = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 1], [3, 4, 3])), shape=(3, 6))
    for kind in ("item_knn", "ease", "cooccurrence"):
        top = make_source(kind).fit(history).top_k(np.arange(3), 4, history)
        assert (top[2] == -1).all(), kind  # user 2 has no history
    top = system.cooccurrence_top_k(CoOccurrence().fit(history), np.arange(3), 4, history, fill=False)
    assert (top[2] == -1).all() and top[1].tolist() == [4, -1, -1, -1]

"""Multi-source retrieval: each source's top-k (seen items excluded), merged round-robin by weight.

Without a `retrieval:` section a spec gets the three sources of ADR 0011 (two-tower ANN,
item co-occurrence, popularity at 4:1:1). `retrieval.sources` lists any subset of the
registered types (pipeline/recsys/sources: two_tower, item_knn, ease, als, cooccurrence,
popularity) with params and a merge weight; then the ranker also sees every source's score
and rank for every candidate (`<name>_score`, `<name>_rank`). A source that raises is
reported in `failures` and left out; only all of them failing is an error.

The two-tower is trained only when it is merged: sources omitted, or one of type `two_tower`
declared (`needs_two_tower`). Without it, a candidate's `retrieval_score` is the score of the
source that proposed it (comparable only within one source, as the feature says).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipeline.data.errors import TrainingDataError
from pipeline.recsys.baselines import CoOccurrence, Popularity
from pipeline.recsys.candidates import cooccurrence_top_k, merge_round_robin, popularity_top_k
from pipeline.recsys.examples import RecExamples
from pipeline.recsys.index import ItemIndex
from pipeline.recsys.sources import CandidateSource, make_source
from pipeline.recsys.two_tower import TwoTowerModel

SOURCES = ("two_tower", "cooccurrence", "popularity")


def needs_two_tower(spec) -> bool:
    """Train the two-tower only when it is merged: the default sources, or a declared `two_tower`."""
    return spec.retrieval is None or any(s.type == "two_tower" for s in spec.retrieval.sources)


# Slots each source gets per round of the merge: the two-tower ANN list has the best recall, so it
# leads (validation-period recall@500 of the merged list: 0.775 at 1:1:1, 0.821 at 4:1:1; ADR 0011).
SOURCE_WEIGHTS = (4, 1, 1)
NOT_LISTED = 10**6  # rank feature of a candidate a source did not list


@dataclass(eq=False)
class Retrieval:
    """Candidate sources over dense indices; `candidates` merges their top-k round-robin.

    Co-occurrence and popularity are always fitted (popularity answers cold users); the
    two-tower (index, vectors) when it is merged, and then its cosine is every candidate's
    `retrieval_score`. `names` are the sources merged (in order, with `weights`); `extra`
    holds the fitted sources of other types.
    """

    index: ItemIndex | None  # None: no two-tower merged (retrieval.sources without one)
    user_vectors: np.ndarray | None  # (n_users, dim); zero rows for users the towers never saw
    user_known: np.ndarray | None
    item_vectors: np.ndarray | None
    cooccurrence: CoOccurrence
    popularity: Popularity
    k: int
    failures: dict[str, str] = field(default_factory=dict)
    broken: frozenset[str] = frozenset()  # sources to skip (tests simulate an outage this way)
    weights: tuple[int, ...] = SOURCE_WEIGHTS
    names: tuple[str, ...] = SOURCES
    extra: dict[str, CandidateSource] = field(default_factory=dict)
    per_source_features: bool = False  # declared sources: the ranker sees each one's score and rank
    fit_seconds: dict[str, float] = field(default_factory=dict)  # declared sources fitted here: how long each took

    @classmethod
    def fit(
        cls, model: TwoTowerModel | None, index: ItemIndex | None, ex: RecExamples, k: int, spec_sources=None
    ) -> Retrieval:
        """`spec_sources`: the spec's retrieval.sources (None: the three default sources); `model` and
        `index` None when no two-tower is declared."""
        vectors, known = model.user_embeddings(ex.user_map.ids) if model is not None else (None, None)
        retrieval = cls(
            index=index,
            user_vectors=vectors,
            user_known=known,
            item_vectors=model.item_embeddings() if model is not None else None,
            cooccurrence=CoOccurrence().fit(ex.train_positives),
            popularity=Popularity().fit(ex.train_positives),
            k=min(k, ex.n_items),
        )
        if spec_sources:
            retrieval.declare(spec_sources, ex.train_positives)
        return retrieval

    def declare(self, spec_sources, history: sp.csr_matrix) -> None:
        """Merge exactly the declared sources; fit the ones of other types (or with params) on `history`."""
        names, weights = [], []
        for source in spec_sources:
            name = source.name or source.type
            if source.type not in ("two_tower",) and (source.params or source.type not in SOURCES):
                try:
                    started = time.perf_counter()
                    self.extra[name] = make_source(source.type, source.params).fit(history)
                    self.fit_seconds[name] = time.perf_counter() - started
                except ValueError as exc:
                    raise TrainingDataError(f"retrieval source {name!r}: {exc}") from None
            names.append(name)
            weights.append(source.weight)
        self.names, self.weights, self.per_source_features = tuple(names), tuple(weights), True

    def source_lists(self, users: np.ndarray, seen: sp.csr_matrix) -> dict[str, np.ndarray]:
        """Each working source's (len(users), k) top-k item indices (seen excluded, -1 padded)."""
        lists: dict[str, np.ndarray] = {}
        for name in self.names:
            try:
                if name in self.broken:
                    raise RuntimeError("source disabled")
                lists[name] = self._runner(name, users, seen)()
            except Exception as exc:  # one source down must not take retrieval down
                self.failures[name] = f"{type(exc).__name__}: {exc}"
                lists[name] = np.full((len(users), self.k), -1, dtype=np.int64)
        if all(name in self.failures for name in self.names):
            raise TrainingDataError(f"every retrieval source failed: {self.failures}")
        return lists

    def _runner(self, name: str, users: np.ndarray, seen: sp.csr_matrix) -> Callable[[], np.ndarray]:
        if name in self.extra:
            return lambda: self.extra[name].top_k(users, self.k, seen)
        return {
            "two_tower": lambda: self._ann(users, seen),
            "cooccurrence": lambda: cooccurrence_top_k(self.cooccurrence, users, self.k, seen, fill=False),
            "popularity": lambda: popularity_top_k(self.popularity, users, self.k, seen),
        }[name]

    def candidates(self, users: np.ndarray, seen: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """(items, source codes) (len(users), k): the sources' lists merged round-robin without repeats."""
        items, sources, _ = self.candidates_with_lists(users, seen)
        return items, sources

    def candidates_with_lists(
        self, users: np.ndarray, seen: sp.csr_matrix
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        lists = self.source_lists(users, seen)
        items, sources = merge_round_robin([lists[name] for name in self.names], self.k, self.weights)
        return items, sources, lists

    @property
    def has_two_tower(self) -> bool:
        return self.item_vectors is not None

    def pair_scores(self, users: np.ndarray, items: np.ndarray, sources: np.ndarray | None = None) -> np.ndarray:
        """Each candidate's `retrieval_score`: the two-tower cosine when there is a two-tower (one score
        defined for every source), else the score of the source that proposed it (`sources`: codes into names)."""
        if self.has_two_tower:
            assert self.user_vectors is not None and self.item_vectors is not None
            return np.einsum("ij,ij->i", self.user_vectors[users], self.item_vectors[items]).astype(np.float64)
        if sources is None:
            raise ValueError("without a two-tower, retrieval scores need the proposing source of each pair")
        out = np.zeros(len(items), dtype=np.float64)
        for code, name in enumerate(self.names):
            mine = sources == code
            if mine.any():
                out[mine] = self.source_scores(name, users[mine], items[mine])
        return out

    def source_scores(self, name: str, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """One source's score of each (user, item) pair."""
        if name in self.extra:
            return self.extra[name].score(users, items)
        if name == "two_tower":
            return self.pair_scores(users, items)
        if name == "popularity":
            return np.asarray(self.popularity.item_counts, dtype=np.float64)[items]
        scores = self.cooccurrence.history[users].multiply(self.cooccurrence.cooccurrence.T[items])
        return np.asarray(scores.sum(axis=1), dtype=np.float64).ravel()

    def _ann(self, users: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
        if self.index is None or self.user_known is None or self.user_vectors is None:
            raise RuntimeError("no two-tower was trained (retrieval.sources declares none)")
        out = np.full((len(users), self.k), -1, dtype=np.int64)
        known = np.flatnonzero(self.user_known[users])
        if len(known):
            rows = seen[users[known]]
            exclude = [rows.indices[rows.indptr[i] : rows.indptr[i + 1]].tolist() for i in range(len(known))]
            _, positions = self.index.search(self.user_vectors[users[known]], self.k, exclude=exclude)
            out[known] = positions
        return out

    @property
    def source_feature_names(self) -> list[str]:
        if not self.per_source_features:
            return []
        return [f"{name}_{what}" for name in self.names for what in ("score", "rank")]


def candidate_rows(
    retrieval: Retrieval,
    users: np.ndarray,
    items: np.ndarray,
    sources: np.ndarray,
    lists: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Ranker input rows grouped by user in merged order; -1 padding dropped. With declared sources
    (and their `lists`), every source's score and rank of every candidate too."""
    keep = items >= 0
    n = keep.sum(axis=1)
    user_idx = np.repeat(users, n)
    item_idx = items[keep]
    frame = pd.DataFrame(
        {
            "user_idx": user_idx,
            "item_idx": item_idx,
            "retrieval_score": retrieval.pair_scores(user_idx, item_idx, sources[keep]),
            "source": pd.Categorical.from_codes(sources[keep], categories=list(retrieval.names)),
            "merged_rank": np.concatenate([np.arange(c) for c in n]) if len(n) else np.zeros(0, dtype=np.int64),
        }
    )
    if retrieval.per_source_features and lists is not None:
        row_of = np.repeat(np.arange(len(users)), n)
        for name in retrieval.names:
            frame[f"{name}_score"] = retrieval.source_scores(name, user_idx, item_idx)
            frame[f"{name}_rank"] = _rank_in_list(lists[name], row_of, item_idx)
    return frame


def _rank_in_list(top: np.ndarray, row_of: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Position of each (row, item) in that row's list; NOT_LISTED when the list lacks it."""
    n_rows, depth = top.shape
    key = np.where(top >= 0, np.arange(n_rows)[:, None] * (top.max(initial=0) + 1) + top, -1).ravel()
    width = top.max(initial=0) + 1
    order = np.argsort(key, kind="stable")
    sorted_keys = key[order]
    wanted = row_of * width + np.where(items < width, items, 0)
    at = np.searchsorted(sorted_keys, wanted)
    at = np.minimum(at, len(sorted_keys) - 1)
    found = (len(sorted_keys) > 0) & (sorted_keys[at] == wanted) & (items < width)
    rank = np.full(len(items), NOT_LISTED, dtype=np.float64)
    rank[found] = (order[at[found]] % depth).astype(np.float64)
    return rank

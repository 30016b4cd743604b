"""One user's candidates for /recommend: each source's list, the round-robin merge, the ranker's input rows.

The batch path (pipeline/recsys/retrieval.py) does the same for many users with pandas; these are
its one-user forms, kept equal to it by tests (merge_one vs merge_round_robin, Candidates.frame vs
candidate_rows).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.recsys import system


@dataclass(frozen=True)
class Candidates:
    """One user's merged candidates as arrays (the frame `system.candidate_rows` makes, without pandas)."""

    user: int
    items: np.ndarray  # dense item indices, merged order
    sources: np.ndarray  # codes into the retrieval's source names
    retrieval_score: np.ndarray  # two-tower cosine of each pair
    names: tuple[str, ...] = tuple(system.SOURCES)
    lists: dict[str, np.ndarray] | None = None  # declared sources: each one's (1, k) list (score and rank features)

    @classmethod
    def merged(
        cls,
        retrieval: system.Retrieval,
        user: int,
        items: np.ndarray,
        sources: np.ndarray,
        lists: dict[str, np.ndarray] | None = None,
    ) -> Candidates:
        scores = retrieval.pair_scores(np.full(len(items), user, dtype=np.int64), items, sources)
        return cls(user, items, sources, scores, tuple(retrieval.names), lists)

    def frame(self, retrieval: system.Retrieval | None = None) -> pd.DataFrame:
        """What system.candidate_rows gives for this user (the builder's and the frame path's input); with
        declared sources (and `retrieval`), every source's score and rank columns too."""
        if retrieval is not None and retrieval.per_source_features and self.lists is not None:
            items, sources = self.items[None, :], self.sources[None, :]
            return system.candidate_rows(retrieval, np.array([self.user]), items, sources, self.lists)
        return pd.DataFrame(
            {
                "user_idx": np.full(len(self.items), self.user, dtype=np.int64),
                "item_idx": self.items,
                "retrieval_score": self.retrieval_score,
                "source": pd.Categorical.from_codes(self.sources, categories=list(self.names)),
                "merged_rank": np.arange(len(self.items)),
            }
        )


def merge_one(lists: list[np.ndarray], k: int, weights: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """`system.merge_round_robin` for one user (same items, same order, same sources), without -1 padding.

    The general version sorts every user's rows by (user, item, priority) twice; for one row the
    round-robin order is a fixed priority per (rank, list) position, so one argsort and a unique do.
    """
    stacked = np.stack([np.asarray(x, dtype=np.int64) for x in lists], axis=1)  # rank x source
    depth, n_lists = stacked.shape
    w = np.asarray(weights)[None, :]
    top = max(weights)
    rank = np.arange(depth)[:, None]
    priority = (rank // w) * (n_lists * top) + np.arange(n_lists)[None, :] * top + rank % w  # round, list, rank
    source = np.broadcast_to(np.arange(n_lists), stacked.shape)
    ok = stacked >= 0
    order = np.argsort(priority[ok], kind="stable")
    items, source = stacked[ok][order], source[ok][order]
    _, first = np.unique(items, return_index=True)
    keep = np.sort(first)[:k]
    return items[keep], source[keep]


def _runner(
    r: system.Retrieval, name: str, users: np.ndarray, seen: Any, builtin: dict[str, Callable[[], np.ndarray]]
) -> Callable[[], np.ndarray]:
    """A declared source fitted with params (or of another type) runs as in batch; the rest, the fast way."""
    if name in r.extra:
        return lambda: r.extra[name].top_k(users, r.k, seen)
    return builtin[name]


def _padded(items: np.ndarray, k: int) -> np.ndarray:
    """One (1, k) source row, -1 padded (the merge stacks the sources' rows)."""
    out = np.full((1, k), -1, dtype=np.int64)
    out[0, : len(items)] = items
    return out


def cooccurrence_list(cooc: Any, seen: Any, u: int, k: int) -> np.ndarray:
    """The batch path's co-occurrence list for one user without a dense catalogue row: the positive
    scores by (-score, item), seen never; no zero-scored items (they would be the catalogue in order)."""
    row = cooc.history[u] @ cooc.cooccurrence
    seen_items = seen.indices[seen.indptr[u] : seen.indptr[u + 1]]
    items, values = row.indices, row.data
    keep = (values > 0) & ~np.isin(items, seen_items)
    items, values = items[keep], values[keep]
    order = np.lexsort((items, -values))[:k]
    return items[order].astype(np.int64)


_THREAD = threading.local()


def one_omp_thread() -> None:
    """FAISS with one OpenMP thread on this pool thread. omp_set_num_threads binds only the calling thread,
    so the service's call at load time left every pool thread with a team per core: 1.8 vs 1.0 ms of
    retrieval per request (100k items, 2 cores) for a single query that parallelism cannot speed up."""
    if not getattr(_THREAD, "omp_single", False):
        import faiss

        faiss.omp_set_num_threads(1)
        _THREAD.omp_single = True

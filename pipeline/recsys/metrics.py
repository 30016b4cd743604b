"""Top-K ranking metrics over the full catalogue, with the user's history excluded.

Sampled negatives flatter a model and rank models inconsistently, so recommendations
here come from scoring every item; the items a user has already seen are masked, since
recommending them again is not what is being measured. Scores are produced and ranked
in chunks of users, so memory stays bounded by chunk x catalogue whatever the user count.

Names follow `pipeline.spec.catalog` (recall@K, hit@K, ndcg@K, precision@K, mrr@K) plus
coverage@K. Relevance is binary; Recall@K = hits / |relevant|; NDCG's ideal DCG places
min(|relevant|, K) hits at the top. Users without relevant items are left out of the
averages (their metrics are undefined), but their lists still count towards coverage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

ScoreFn = Callable[[np.ndarray], np.ndarray]
PER_USER = ("recall", "hit", "ndcg", "precision", "mrr")
NO_ITEM = -1  # padding in a top-K row when fewer than K unseen items exist


def top_k_excluding_seen(
    scores: np.ndarray | ScoreFn,
    seen: sp.csr_matrix,
    k: int,
    chunk: int | None = None,
    *,
    users: np.ndarray | None = None,
) -> np.ndarray:
    """Top-k item indices per user, best first, never an item in the user's `seen` row.

    `scores` is either a dense (len(users), n_items) array or a function mapping a chunk of
    user indices to such an array. `users` (default: every row of `seen`) are row indices
    into `seen`. `chunk` users are scored and ranked at a time (default: about 16M scores
    per chunk). Ties go to the lower item index, so results are reproducible. Slots that
    only seen (or -inf scored) items could fill hold NO_ITEM (-1).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    seen = sp.csr_matrix(seen)
    users = np.arange(seen.shape[0]) if users is None else np.asarray(users, dtype=np.int64)
    n_items = seen.shape[1]
    chunk = default_chunk(n_items) if chunk is None else chunk
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}.")
    if not callable(scores) and np.shape(scores) != (len(users), n_items):
        expected = (len(users), n_items)
        raise ValueError(f"scores must have shape (len(users), n_items) = {expected}, got {np.shape(scores)}.")
    out = np.full((len(users), k), NO_ITEM, dtype=np.int64)
    for start in range(0, len(users), chunk):
        batch = users[start : start + chunk]
        block = scores(batch) if callable(scores) else scores[start : start + chunk]
        out[start : start + len(batch)] = _top_k(_masked(block, seen, batch), k)
    return out


def default_chunk(n_items: int) -> int:
    """Users per chunk so that one chunk holds about 16M scores (128 MB as float64)."""
    return int(max(1, min(4096, 2**24 // max(n_items, 1))))


def per_user_metrics(top_k: np.ndarray, relevant: sp.csr_matrix, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-user recall/hit/ndcg/precision/mrr at each K, for rows with >= 1 relevant item.

    Row i of `top_k` is ranked against row i of `relevant`. The returned arrays are
    aligned with `evaluated_rows(relevant)`, so group metrics (e.g. Hit@K by user segment)
    can be averaged from them.
    """
    hits, n_rel = _hits(top_k, relevant, max(_check_ks(ks, top_k)))
    keep = n_rel > 0
    hits, n_rel = hits[keep], n_rel[keep]
    ranks = np.arange(1, hits.shape[1] + 1)
    discount = 1.0 / np.log2(ranks + 1)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        found = hits[:, :k].sum(axis=1)
        out[f"recall@{k}"] = found / n_rel
        out[f"hit@{k}"] = (found > 0).astype(np.float64)
        out[f"ndcg@{k}"] = (hits[:, :k] * discount[:k]).sum(axis=1) / ideal[np.minimum(n_rel, k)]
        out[f"precision@{k}"] = found / k
        out[f"mrr@{k}"] = np.where((first > 0) & (first <= k), 1.0 / np.maximum(first, 1), 0.0)
    return out


def evaluated_rows(relevant: sp.csr_matrix) -> np.ndarray:
    """Rows of `relevant` that the averages include: those with at least one relevant item."""
    return np.flatnonzero(np.diff(sp.csr_matrix(relevant).indptr) > 0)


def coverage(top_k: np.ndarray, n_items: int, ks: Sequence[int]) -> dict[str, float]:
    """coverage@K: share of the catalogue that appears in at least one user's top K."""
    out = {}
    for k in ks:
        shown = top_k[:, :k].ravel()
        shown = shown[shown >= 0]
        out[f"coverage@{k}"] = float(np.unique(shown).size / n_items) if n_items else math.nan
    return out


def ranking_metrics(top_k: np.ndarray, relevant: sp.csr_matrix, ks: Sequence[int]) -> dict[str, float]:
    """Mean per-user metrics plus coverage@K; NaN for the per-user ones when no row has a relevant item."""
    per_user = per_user_metrics(top_k, relevant, ks)
    out = {name: float(values.mean()) if len(values) else math.nan for name, values in per_user.items()}
    out.update(coverage(top_k, relevant.shape[1], ks))
    return out


def evaluate_scores(
    scores: ScoreFn,
    users: np.ndarray,
    seen: sp.csr_matrix,
    relevant: sp.csr_matrix,
    ks: Sequence[int],
    chunk: int | None = None,
) -> dict[str, float]:
    """ranking_metrics for a scoring function without holding every user's top K at once.

    `users` index rows of both `seen` and `relevant`. Per-user values are gathered chunk by
    chunk (a few floats per user) and the recommended items accumulate into one catalogue mask.
    """
    ks = sorted(set(ks))
    users = np.asarray(users, dtype=np.int64)
    relevant = sp.csr_matrix(relevant)
    n_items = relevant.shape[1]
    chunk = default_chunk(n_items) if chunk is None else chunk
    parts: dict[str, list[np.ndarray]] = {}
    shown = {k: np.zeros(n_items, dtype=bool) for k in ks}
    for start in range(0, len(users), chunk):
        batch = users[start : start + chunk]
        top = top_k_excluding_seen(scores, seen, ks[-1], len(batch), users=batch)
        for name, values in per_user_metrics(top, relevant[batch], ks).items():
            parts.setdefault(name, []).append(values)
        for k in ks:
            items = top[:, :k].ravel()
            shown[k][items[items >= 0]] = True
    out = {}
    for name in (f"{m}@{k}" for k in ks for m in PER_USER):
        values = np.concatenate(parts.get(name, [np.empty(0)]))
        out[name] = float(values.mean()) if len(values) else math.nan
    out.update({f"coverage@{k}": float(shown[k].mean()) if n_items else math.nan for k in ks})
    return out


def _check_ks(ks: Sequence[int], top_k: np.ndarray) -> Sequence[int]:
    if not ks:
        raise ValueError("ks must name at least one K.")
    if top_k.ndim != 2:
        raise ValueError(f"top_k must be a 2-D array (users x K), got shape {top_k.shape}.")
    bad = [k for k in ks if not 1 <= k <= top_k.shape[1]]
    if bad:
        raise ValueError(f"every K must be between 1 and the top-K width {top_k.shape[1]}; got {bad}.")
    return ks


def _hits(top_k: np.ndarray, relevant: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (n, k) hit matrix and |relevant| per row, by sorted-key lookup (no dense catalogue)."""
    relevant = sp.csr_matrix(relevant)
    if relevant.shape[0] != top_k.shape[0]:
        raise ValueError(f"top_k has {top_k.shape[0]} rows but relevant has {relevant.shape[0]}.")
    n_items = relevant.shape[1]
    top = np.asarray(top_k[:, :k], dtype=np.int64)
    if top.size and (top.max() >= n_items or top.min() < NO_ITEM):
        raise ValueError(f"top_k holds item indices outside 0..{n_items - 1} (or the -1 padding).")
    _check_no_duplicates(top)
    relevant = relevant.copy()
    relevant.eliminate_zeros()
    relevant.sort_indices()
    n_rel = np.diff(relevant.indptr)
    rows = np.repeat(np.arange(relevant.shape[0], dtype=np.int64), n_rel)
    keys = rows * n_items + relevant.indices.astype(np.int64)
    wanted = np.arange(top.shape[0], dtype=np.int64)[:, None] * n_items + top
    if len(keys) == 0:
        return np.zeros(top.shape, dtype=bool), n_rel
    where = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return (keys[where] == wanted) & (top >= 0), n_rel


def _check_no_duplicates(top: np.ndarray) -> None:
    """A repeated item in a row would count one relevant item twice."""
    ordered = np.sort(top, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        row = int(np.flatnonzero(repeated.any(axis=1))[0])
        raise ValueError(f"top_k row {row} lists an item more than once.")


def _masked(block: np.ndarray, seen: sp.csr_matrix, batch: np.ndarray) -> np.ndarray:
    """A float copy of the scores with the batch users' seen items set to -inf."""
    raw = np.asarray(block)
    if raw.shape != (len(batch), seen.shape[1]):
        expected = (len(batch), seen.shape[1])
        raise ValueError(f"scores for {len(batch)} users must have shape {expected}, got {raw.shape}.")
    block = raw.astype(raw.dtype if raw.dtype.kind == "f" else np.float64, copy=True)
    if np.isnan(block).any():
        raise ValueError("scores hold NaN; a ranking needs every item scored.")
    rows = seen[batch]
    block[np.repeat(np.arange(len(batch)), np.diff(rows.indptr)), rows.indices] = -np.inf
    return block


def _top_k(block: np.ndarray, k: int) -> np.ndarray:
    """Row-wise top k by argpartition; ties at the boundary and in the order go to the lower index."""
    n, m = block.shape
    width = min(k, m)
    out = np.full((n, k), NO_ITEM, dtype=np.int64)
    if n == 0 or m == 0:
        return out
    part = np.argpartition(block, m - width, axis=1)[:, m - width :]  # the `width` largest, unordered
    kth = np.take_along_axis(block, part, axis=1).min(axis=1, keepdims=True)
    above = block > kth
    tie = block == kth
    need = width - above.sum(axis=1, keepdims=True)
    take = above | tie
    crowded = np.flatnonzero(tie.sum(axis=1, keepdims=True)[:, 0] > need[:, 0])  # more tied items than slots
    if len(crowded):
        sub = tie[crowded]
        take[crowded] = above[crowded] | (sub & (np.cumsum(sub, axis=1) <= need[crowded]))
    idx = np.nonzero(take)[1].reshape(n, width)  # row-major, so ascending item index within a row
    values = np.take_along_axis(block, idx, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    out[:, :width] = np.where(np.isneginf(values), NO_ITEM, idx)
    return out

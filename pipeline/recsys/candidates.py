"""Top-k lists without dense users x catalogue blocks, and the round-robin merge of several lists.

Moved out of pipeline/recsys/system.py (which re-exports them) so the retrieval sources
(pipeline/recsys/sources/) can use them without importing the whole system.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.recsys.baselines import CoOccurrence, Popularity


def popularity_top_k(model: Popularity, users: np.ndarray, k: int, seen: sp.csr_matrix) -> np.ndarray:
    """`model.recommend(users, k, seen)` without its dense users x catalogue block (same lists, same ties).

    Everyone gets the same ranking, so a user's top-k is the first k unseen items of one order
    (count descending, lower index first): only k + the largest seen set need looking at.
    """
    users = np.asarray(users, dtype=np.int64)
    rows = sp.csr_matrix(seen)[users]
    n_items = len(model.item_counts)
    extra = int(np.diff(rows.indptr).max()) if len(users) else 0
    order = np.argsort(-model.item_counts, kind="stable")[: min(k + extra, n_items)]
    position = np.full(n_items, -1, dtype=np.int64)
    position[order] = np.arange(len(order))
    banned = np.zeros((len(users), len(order)), dtype=bool)
    owner = np.repeat(np.arange(len(users)), np.diff(rows.indptr))
    at = position[rows.indices]
    banned[owner[at >= 0], at[at >= 0]] = True
    return _first_unbanned(np.broadcast_to(order, banned.shape), banned, k)


def cooccurrence_top_k(
    model: CoOccurrence, users: np.ndarray, k: int, seen: sp.csr_matrix, fill: bool = True
) -> np.ndarray:
    """`model.recommend(users, k, seen)` from the sparse scores (same lists, same ties).

    The dense path ranks all n_items scores per user; here only the stored (positive) scores
    are sorted, and a user with fewer than k of them unseen is topped up, as the dense top-k
    does, with zero-score items in index order. Co-occurrence scores are never negative.
    fill=False (retrieval): no top-up, -1 instead: zero-score items in index order are the
    catalogue in its stored order, not a recommendation.
    """
    users = np.asarray(users, dtype=np.int64)
    n_items = model.n_items
    out = np.full((len(users), k), -1, dtype=np.int64)
    if len(users) == 0:
        return out
    scores = sp.csr_matrix(model.history[users] @ model.cooccurrence)  # the product CoOccurrence.scores densifies
    seen_rows = sp.csr_matrix(seen)[users]
    row = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(scores.indptr))
    col, value = scores.indices.astype(np.int64), scores.data
    seen_keys = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(seen_rows.indptr)) * n_items
    seen_keys += seen_rows.indices
    keep = (value > 0) & ~np.isin(row * n_items + col, seen_keys)
    row, col, value = row[keep], col[keep], value[keep]
    order = np.lexsort((col, -value, row))  # per user: score descending, lower index first
    row, col = row[order], col[order]
    counts = np.bincount(row, minlength=len(users))
    rank = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
    top = rank < k
    out[row[top], rank[top]] = col[top]
    filled = np.minimum(counts, k)
    needy = np.flatnonzero(filled < k) if fill else np.zeros(0, dtype=np.int64)
    if len(needy):  # zero-score items, lowest index first, skipping seen items and the ones already listed
        extra = int(np.diff(seen_rows.indptr)[needy].max())
        window = min(n_items, 2 * k + extra)
        banned = np.zeros((len(users), window), dtype=bool)
        listed = top & (col < window)
        banned[row[listed], col[listed]] = True
        seen_row = np.repeat(np.arange(len(users)), np.diff(seen_rows.indptr))
        near = seen_rows.indices < window
        banned[seen_row[near], seen_rows.indices[near]] = True
        banned = banned[needy]
        zero = _first_unbanned(np.broadcast_to(np.arange(window), banned.shape), banned, k)
        shift = np.arange(k)[None, :] - filled[needy][:, None]  # slot j takes the (j - filled)-th zero-score item
        padded = np.take_along_axis(zero, np.maximum(shift, 0), axis=1)
        out[needy] = np.where(shift >= 0, padded, out[needy])
    return out


def _first_unbanned(items: np.ndarray, banned: np.ndarray, k: int) -> np.ndarray:
    """Per row, the first k entries of `items` whose `banned` flag is off, in order; -1 pads."""
    out = np.full((len(items), k), -1, dtype=np.int64)
    rank = np.cumsum(~banned, axis=1) - 1
    take = ~banned & (rank < k)
    r, c = np.nonzero(take)
    out[r, rank[r, c]] = items[r, c]
    return out


def merge_round_robin(
    lists: list[np.ndarray], k: int, weights: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Interleave the lists round by round (list i gives weights[i] items per round, in list
    order), keep each item's first appearance, cut at k.

    Returns (items, index of the list that contributed each), both (n, k), -1 padded."""
    weights = tuple(weights or (1,) * len(lists))
    if len(weights) != len(lists) or min(weights) < 1:
        raise ValueError(f"weights {weights} must give every one of the {len(lists)} lists at least 1 slot a round.")
    stacked = np.stack([np.asarray(x, dtype=np.int64) for x in lists], axis=2)  # users x rank x source
    n, depth, n_lists = stacked.shape
    width = depth * n_lists
    items = stacked.reshape(n, width).ravel()
    source = np.broadcast_to(np.arange(n_lists), stacked.shape).reshape(n, width).ravel()
    rank = np.broadcast_to(np.arange(depth)[:, None], (depth, n_lists))
    w = np.asarray(weights)[None, :]
    top = max(weights)
    priority = (rank // w) * (n_lists * top) + np.arange(n_lists)[None, :] * top + rank % w  # round, list, rank
    rows = np.repeat(np.arange(n), width)
    pos = np.tile(priority.ravel(), n)
    ok = items >= 0
    items, source, rows, pos = items[ok], source[ok], rows[ok], pos[ok]
    out_items = np.full((n, k), -1, dtype=np.int64)
    out_source = np.full((n, k), -1, dtype=np.int64)
    if not len(items):  # every list empty (all padding): nothing to merge
        return out_items, out_source
    order = np.lexsort((pos, items, rows))
    first = np.r_[True, (rows[order][1:] != rows[order][:-1]) | (items[order][1:] != items[order][:-1])]
    keep = order[first]
    keep = keep[np.lexsort((pos[keep], rows[keep]))]
    kept_rows = rows[keep]
    rank = np.arange(len(keep)) - np.searchsorted(kept_rows, kept_rows, side="left")
    take = rank < k
    out_items[kept_rows[take], rank[take]] = items[keep][take]
    out_source[kept_rows[take], rank[take]] = source[keep][take]
    return out_items, out_source

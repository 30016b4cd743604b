"""Ranking features for (user, candidate item) rows, by name, computed without per-row loops.

A ranker re-orders the few hundred candidates that retrieval returned for a request, so
its features describe the user, the item and, above all, the pair. Everything here is
derived from the training history (a users x items CSR of positive interactions),
optionally the training impressions (every logged exposure, clicked or not: far denser
than clicks, and the logging policy's personalisation makes them a strong taste signal)
and the user and item tables, so the same builder produces the training frame and the
serving frame: a feature cannot be computed one way offline and another way online.

Candidate rows are a DataFrame with columns `user_idx`, `item_idx` (dense indices, as in
`pipeline.recsys.examples`), `retrieval_score` and `source` (which retriever proposed the
item). The feature names (the ones a spec's `ranker.features` lists) are in FEATURES.

Missing is NaN, never a made-up 0: a user without history has no affinity, an item without
a language has no language match. Trees route NaN on their own and the MLP ranker imputes
the training mean, so neither is told something false.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

CANDIDATE_COLUMNS = ("user_idx", "item_idx", "retrieval_score", "source")

FEATURES: dict[str, str] = {
    # user
    "user_positives": "positive training interactions of the user (activity; 0 for a cold user)",
    "user_language": "the user's language (categorical)",
    # item
    "item_popularity": "positive training interactions of the item",
    "item_age_days": "days between the item's release and the feature time (as_of)",
    "item_language": "the item's (creator's) language (categorical)",
    "item_genre": "the item's genre (categorical)",
    "item_creator": "the item's creator id (categorical)",
    # user x item
    "retrieval_score": "the retriever's score for the pair (comparable only within one source)",
    "retrieval_rank": "0-based rank of the item in the user's candidates by retrieval score",
    "source": "the retriever that proposed the item (categorical)",
    "same_language": "1 when the user's and the item's languages are equal, 0 when not, NaN if either is unknown",
    "user_creator_affinity": "share of the user's training positives by the item's creator",
    "user_language_affinity": "share of the user's training positives in the item's language",
    "user_genre_affinity": "share of the user's training positives in the item's genre",
    "history_cooccurrence": "sum of cosine co-occurrence (over positives) between the item and the user's positives",
    # need the impressions matrix (every logged exposure, clicked or not)
    "user_impressions": "training impressions of the user (exposure-based activity)",
    "item_impressions": "training impressions of the item",
    "item_ctr": "the item's click-through rate, shrunk towards the global rate by CTR_PRIOR impressions",
    "impression_cooccurrence": "sum of cosine co-impression between the item and the items the user was shown",
}
NEEDS_IMPRESSIONS = frozenset({"user_impressions", "item_impressions", "item_ctr", "impression_cooccurrence"})
CTR_PRIOR = 10.0  # impressions' worth of the global CTR added to every item: a 1-of-1 item is not a sure click
MAX_NEIGHBOURS = 200  # co-occurrence neighbours kept per item: bounds memory at O(items x 200)


@dataclass(frozen=True)
class ItemColumns:
    """Where the item table keeps each attribute; None leaves the features that need it unavailable."""

    creator: str | None = "creator_id"
    language: str | None = "language"
    genre: str | None = "genre"
    release: str | None = "release_date"


@dataclass(frozen=True)
class UserColumns:
    """Where the user table keeps each attribute; None leaves the features that need it unavailable."""

    language: str | None = "language"


def aligned(table: pd.DataFrame, id_column: str, ids: np.ndarray) -> pd.DataFrame:
    """Rows of `table` in the order of `ids` (an IdMap's ids), so row i describes dense index i.

    An id missing from the table is an error rather than a row of NaN: features for an item
    the table does not know would be silently wrong.
    """
    if id_column not in table.columns:
        raise ValueError(f"table lacks the id column {id_column!r}.")
    index = pd.Index(table[id_column])
    if index.has_duplicates:
        raise ValueError(f"{id_column} holds duplicated ids, e.g. {index[index.duplicated()][:3].tolist()}.")
    where = index.get_indexer(pd.Index(ids))
    if (where < 0).any():
        raise ValueError(f"{int((where < 0).sum())} id(s) are not in the table, e.g. {ids[where < 0][:3].tolist()}.")
    return table.iloc[where].reset_index(drop=True)


class PairLookup:
    """Values of a sparse matrix at many (row, col) pairs at once, by binary search over flat keys."""

    def __init__(self, matrix: sp.csr_matrix) -> None:
        m = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
        m.sum_duplicates()
        m.sort_indices()
        self.shape = m.shape
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        self.keys = rows * m.shape[1] + m.indices.astype(np.int64)
        self.data = m.data

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """matrix[rows[i], cols[i]] for every i; 0 where nothing is stored; NaN where cols < 0 (unknown)."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        out = np.zeros(len(rows), dtype=np.float64)
        if len(self.keys):
            wanted = rows * self.shape[1] + np.maximum(cols, 0)
            pos = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
            hit = self.keys[pos] == wanted
            out[hit] = self.data[pos[hit]]
        out[cols < 0] = np.nan
        return out


class CooccurrenceSum:
    """score(u, j) = sum over the items i in u's row of X of cosine co-occurrence C[i, j], for given pairs only.

    C = X^T X on 0/1 X, diagonal removed, divided by sqrt(n_i n_j) so that popular items do
    not dominate, and pruned to each item's `max_neighbours` strongest neighbours. Pairs are
    expanded against the user's history (sum of |history| lookups), so no dense users x
    items block is ever formed.
    """

    def __init__(self, matrix: sp.csr_matrix, max_neighbours: int = MAX_NEIGHBOURS) -> None:
        binary = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
        binary.eliminate_zeros()
        binary.data[:] = 1.0
        binary.sort_indices()
        gram = sp.csr_matrix(binary.T @ binary)
        scale = sp.diags(1.0 / np.sqrt(np.maximum(gram.diagonal(), 1.0)))
        gram.setdiag(0)
        gram.eliminate_zeros()
        self.binary = binary
        self.lookup = PairLookup(_prune_rows(sp.csr_matrix(scale @ gram @ scale), max_neighbours))

    def __call__(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        indptr = self.binary.indptr
        n = np.diff(indptr)[users]
        pair = np.repeat(np.arange(len(users)), n)
        offset = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        history_items = self.binary.indices[np.repeat(indptr[users], n) + offset]
        values = self.lookup(history_items, items[pair])
        return np.bincount(pair, weights=values, minlength=len(users))


def _prune_rows(matrix: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """Each row's `keep` largest entries (ties: lower column); the rest dropped."""
    counts = np.diff(matrix.indptr)
    if len(counts) == 0 or counts.max() <= keep:
        return matrix
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    rank = np.arange(len(order)) - np.repeat(matrix.indptr[:-1], counts)
    chosen = order[rank < keep]
    return sp.csr_matrix((matrix.data[chosen], (rows[chosen], matrix.indices[chosen])), shape=matrix.shape)


def candidate_frame(users: np.ndarray, items: np.ndarray, scores: np.ndarray, source: str) -> pd.DataFrame:
    """Candidate rows from a retriever's (n_users, K) top-K items and scores; -1 padding is dropped.

    Rows come grouped by user, best first, which is the layout rankers need (contiguous groups).
    """
    items = np.asarray(items, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if items.ndim != 2 or scores.shape != items.shape or len(users) != items.shape[0]:
        raise ValueError(
            f"items {items.shape} and scores {scores.shape} must be (len(users)={len(users)}, K) arrays of one shape."
        )
    keep = items >= 0
    n = keep.sum(axis=1)
    return pd.DataFrame(
        {
            "user_idx": np.repeat(np.asarray(users, dtype=np.int64), n),
            "item_idx": items[keep],
            "retrieval_score": scores[keep],
            "source": pd.Categorical([source] * int(n.sum())),
        }
    )


def group_sizes(user_idx: np.ndarray | pd.Series) -> np.ndarray:
    """Sizes of the runs of equal users, in order; a user in two runs is an error (groups must be contiguous)."""
    values = np.asarray(user_idx)
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    if len(np.unique(values[starts])) != len(starts):
        raise ValueError("candidate rows of a user are not contiguous; sort them by user_idx first.")
    return np.diff(np.r_[starts, len(values)]).astype(np.int64)


def pair_labels(candidates: pd.DataFrame, relevant: sp.csr_matrix) -> np.ndarray:
    """Graded relevance (int) of each candidate row: the stored value of `relevant` (0/1 for a 0/1 matrix)."""
    values = PairLookup(relevant)(candidates["user_idx"].to_numpy(), candidates["item_idx"].to_numpy())
    return np.rint(values).astype(np.int64)


class RankingFeatureBuilder:
    """Turns candidate rows into the ranker's named features, from the training history and the tables.

    `history` is a users x items CSR of positive training interactions (e.g.
    RecExamples.train_positives); `items` and `users` are the tables aligned with the dense
    indices (see `aligned`). `as_of` is the time item ages are measured at: the training
    cut-off offline, the request time online (override per call in `build`). `impressions`
    (users x items counts of every training exposure) enables NEEDS_IMPRESSIONS.
    """

    def __init__(
        self,
        history: sp.csr_matrix,
        items: pd.DataFrame,
        users: pd.DataFrame | None = None,
        item_columns: ItemColumns | None = None,
        user_columns: UserColumns | None = None,
        as_of: object = None,
        impressions: sp.csr_matrix | None = None,
        max_neighbours: int = MAX_NEIGHBOURS,
    ) -> None:
        self.history = sp.csr_matrix(history, dtype=np.float64)
        n_users, n_items = self.history.shape
        if len(items) != n_items:
            raise ValueError(f"items has {len(items)} rows but history has {n_items} item columns; use aligned().")
        if users is not None and len(users) != n_users:
            raise ValueError(f"users has {len(users)} rows but history has {n_users} user rows; use aligned().")
        self.item_columns = item_columns or ItemColumns()
        self.user_columns = user_columns or UserColumns()
        self.as_of = as_of
        self.user_positives = np.asarray(self.history.sum(axis=1)).ravel()
        self.item_popularity = np.asarray(self.history.sum(axis=0)).ravel()
        ic, uc = self.item_columns, self.user_columns
        self._codes: dict[str, tuple[np.ndarray, pd.Index]] = {}  # attribute -> (item codes, categories)
        for name, column in (("creator", ic.creator), ("language", ic.language), ("genre", ic.genre)):
            if column is not None:
                self._codes[name] = _codes(_column(items, column, "items"))
        self._affinity = {name: self._share_lookup(codes, len(cats)) for name, (codes, cats) in self._codes.items()}
        self._release_ns: np.ndarray | None = None
        if ic.release is not None:
            self._release_ns = _time_ns(_column(items, ic.release, "items"))
        self._history_cooc = CooccurrenceSum(self.history, max_neighbours)
        self._impressions: CooccurrenceSum | None = None
        if impressions is not None:
            imp = sp.csr_matrix(impressions, dtype=np.float64)
            if imp.shape != self.history.shape:
                raise ValueError(f"impressions has shape {imp.shape}, history {self.history.shape}; they must match.")
            self._impressions = CooccurrenceSum(imp, max_neighbours)
            self.user_impressions = np.asarray(imp.sum(axis=1)).ravel()
            self.item_impressions = np.asarray(imp.sum(axis=0)).ravel()
            global_ctr = self.item_popularity.sum() / max(self.item_impressions.sum(), 1.0)
            self.item_ctr = (self.item_popularity + CTR_PRIOR * global_ctr) / (self.item_impressions + CTR_PRIOR)
        self._user_language: tuple[np.ndarray, pd.Index] | None = None
        if uc.language is not None and users is not None:
            self._user_language = _codes(_column(users, uc.language, "users"))

    @property
    def available(self) -> list[str]:
        """Feature names this builder can produce with the columns it was given."""
        needs = {
            "user_language": self._user_language is not None,
            "item_age_days": self._release_ns is not None,
            "item_language": "language" in self._codes,
            "item_genre": "genre" in self._codes,
            "item_creator": "creator" in self._codes,
            "same_language": self._user_language is not None and "language" in self._codes,
            "user_creator_affinity": "creator" in self._codes,
            "user_language_affinity": "language" in self._codes,
            "user_genre_affinity": "genre" in self._codes,
        }
        needs.update({name: self._impressions is not None for name in NEEDS_IMPRESSIONS})
        return [name for name in FEATURES if needs.get(name, True)]

    def build(
        self, candidates: pd.DataFrame, features: Sequence[str] | None = None, as_of: object = None
    ) -> pd.DataFrame:
        """The feature frame (one row per candidate, input order) with `features` (default: all available)."""
        names = list(self.available if features is None else features)
        unknown = [f for f in names if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown ranking feature(s) {', '.join(unknown)}; known: {', '.join(FEATURES)}.")
        unavailable = [f for f in names if f not in self.available]
        if unavailable:
            given = "given" if self._impressions is not None else "not given"
            raise ValueError(
                f"feature(s) {', '.join(unavailable)} cannot be built: they need an input this builder was not "
                f"given (item columns {self.item_columns}, user columns {self.user_columns}, impressions: {given})."
            )
        missing = [c for c in CANDIDATE_COLUMNS if c not in candidates.columns]
        if missing:
            raise ValueError(
                f"candidates lack column(s) {', '.join(missing)}; expected {', '.join(CANDIDATE_COLUMNS)}."
            )
        users = candidates["user_idx"].to_numpy(dtype=np.int64)
        items = candidates["item_idx"].to_numpy(dtype=np.int64)
        n_users, n_items = self.history.shape
        if len(users) and (users.min() < 0 or users.max() >= n_users or items.min() < 0 or items.max() >= n_items):
            raise ValueError(f"user_idx must lie in 0..{n_users - 1} and item_idx in 0..{n_items - 1}.")
        when = self.as_of if as_of is None else as_of
        return pd.DataFrame({name: self._feature(name, candidates, users, items, when) for name in names})

    # ------------------------------------------------------------------ internals

    def _feature(self, name: str, candidates: pd.DataFrame, users: np.ndarray, items: np.ndarray, when: object):
        if name == "user_positives":
            return self.user_positives[users]
        if name == "item_popularity":
            return self.item_popularity[items]
        if name == "user_language":
            codes, categories = self._user_language
            return pd.Categorical.from_codes(codes[users], categories=categories)
        if name in ("item_language", "item_genre", "item_creator"):
            codes, categories = self._codes[name.removeprefix("item_")]
            return pd.Categorical.from_codes(codes[items], categories=categories)
        if name == "item_age_days":
            if when is None:
                raise ValueError("item_age_days needs as_of (the time ages are measured at).")
            release = self._release_ns[items].astype(np.float64)
            release[self._release_ns[items] == _NAT] = np.nan
            return (float(_time_ns(pd.Series([when]))[0]) - release) / 86_400e9
        if name == "retrieval_score":
            return candidates["retrieval_score"].to_numpy(dtype=np.float64)
        if name == "retrieval_rank":
            return _rank_within_user(users, items, candidates["retrieval_score"].to_numpy(dtype=np.float64))
        if name == "source":
            return _categorical(candidates["source"])
        if name == "same_language":
            return self._same_language(users, items)
        if name in ("user_impressions", "item_impressions", "item_ctr"):
            table = getattr(self, name)
            return table[users] if name.startswith("user") else table[items]
        if name == "history_cooccurrence":
            return self._history_cooc(users, items)
        if name == "impression_cooccurrence":
            return self._impressions(users, items)
        attribute = name.removeprefix("user_").removesuffix("_affinity")
        codes = self._codes[attribute][0][items]
        counts = self._affinity[attribute](users, codes)
        total = self.user_positives[users]
        return np.divide(counts, total, out=np.full(len(users), np.nan), where=total > 0)

    def _share_lookup(self, codes: np.ndarray, n_levels: int) -> PairLookup:
        """users x levels counts of training positives (history @ one-hot of the item attribute)."""
        n_items = len(codes)
        known = codes >= 0
        onehot = sp.csr_matrix(
            (np.ones(int(known.sum())), (np.flatnonzero(known), codes[known])), shape=(n_items, max(n_levels, 1))
        )
        return PairLookup(self.history @ onehot)

    def _same_language(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Compared on the item vocabulary: a user language no item has is known but never equal."""
        item_codes, item_categories = self._codes["language"]
        user_codes, user_categories = self._user_language
        in_item_vocab = np.r_[item_categories.get_indexer(user_categories), -1]  # last entry: user code -1
        user_code = user_codes[users]
        item_code = item_codes[items]
        out = (in_item_vocab[user_code] == item_code).astype(np.float64)
        out[(user_code < 0) | (item_code < 0)] = np.nan
        return out


_NAT = np.iinfo(np.int64).min


def _column(table: pd.DataFrame, column: str, what: str) -> pd.Series:
    if column not in table.columns:
        raise ValueError(f"{what} table lacks column {column!r}.")
    return table[column]


def _codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes (-1 missing) and string categories; a Categorical keeps its declared categories."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = pd.Index([str(c) for c in column.cat.categories])
        return column.cat.codes.to_numpy(dtype=np.int64), categories
    present = column.notna().to_numpy()
    text = np.array([str(v) for v in column.to_numpy(dtype=object)[present]], dtype=object)
    categories = pd.Index(sorted(set(text)), dtype=object)
    codes = np.full(len(column), -1, dtype=np.int64)
    codes[present] = categories.get_indexer(pd.Index(text, dtype=object))
    return codes, categories


def _categorical(column: pd.Series) -> pd.Categorical:
    codes, categories = _codes(column)
    return pd.Categorical.from_codes(codes, categories=categories)


def _time_ns(column: pd.Series) -> np.ndarray:
    """int64 ns since the epoch in UTC (NaT -> int64 min), whatever the column's timezone."""
    parsed = pd.to_datetime(column, utc=True)
    return parsed.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _rank_within_user(users: np.ndarray, items: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """0-based rank by descending score inside each user's rows; ties go to the lower item index."""
    order = np.lexsort((items, -scores, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank = np.empty(len(order), dtype=np.float64)
    rank[order] = np.arange(len(order)) - first
    return rank

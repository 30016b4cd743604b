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
item). The feature names (the ones a spec's `ranker.features` lists) are FEATURES plus
those of the item attributes the spec declares (`attributes.attribute_features`: e.g.
`user_A_affinity`, `same_A`, `item_A_age_days`); no column is known by name (ADR 0033).

Missing is NaN, never a made-up 0: a user without history has no affinity, an item without
a value has no match. Trees route NaN on their own and the MLP ranker imputes
the training mean, so neither is told something false.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipeline.recsys.attributes import Attribute, attribute_features, codes, multi_matrix

CANDIDATE_COLUMNS = ("user_idx", "item_idx", "retrieval_score", "source")

FEATURES: dict[str, str] = {
    # user
    "user_positives": "positive training interactions of the user (activity; 0 for a cold user)",
    # item
    "item_popularity": "positive training interactions of the item",
    # user x item
    "retrieval_score": "the retriever's score for the pair (comparable only within one source)",
    "retrieval_rank": "0-based rank of the item in the user's candidates by retrieval score",
    "source": "the retriever that proposed the item (categorical)",
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
    indices (see `aligned`); `attributes` the declared item attributes (columns of `items`).
    `as_of` is the time item ages are measured at: the training cut-off offline, the request
    time online (override per call in `build`). `impressions` (users x items counts of every
    training exposure) enables NEEDS_IMPRESSIONS.
    """

    def __init__(
        self,
        history: sp.csr_matrix,
        items: pd.DataFrame,
        users: pd.DataFrame | None = None,
        attributes: Mapping[str, Attribute] | None = None,
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
        self.attributes = dict(attributes or {})
        self.as_of = as_of
        self.user_positives = np.asarray(self.history.sum(axis=1)).ravel()
        self.item_popularity = np.asarray(self.history.sum(axis=0)).ravel()
        self.attribute_features = attribute_features(self.attributes, list(users.columns) if users is not None else [])
        clash = sorted(set(self.attribute_features) & set(FEATURES))
        if clash:
            raise ValueError(f"item attribute feature(s) {clash} clash with built-in ranking features; rename them")
        self._codes: dict[str, tuple[np.ndarray, pd.Index]] = {}  # categorical attribute -> (item codes, categories)
        self._multi: dict[str, sp.csr_matrix] = {}  # multi attribute -> items x values
        self._values: dict[str, np.ndarray] = {}  # numeric attribute -> float per item; timestamp -> int64 ns
        self._affinity: dict[str, PairLookup] = {}  # users x values counts of training positives
        for name, a in self.attributes.items():
            column = _column(items, name, "items")
            if a.type == "categorical":
                self._codes[name] = codes(column)
                self._affinity[name] = self._share_lookup(*self._codes[name])
            elif a.type == "multi":
                assert a.delimiter is not None
                self._multi[name] = multi_matrix(column, a.delimiter)[0]
                self._affinity[name] = PairLookup(self.history @ self._multi[name])
            elif a.type == "numeric":
                self._values[name] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
            else:
                self._values[name] = _time_ns(column)
        self._user_codes = {
            attr: codes(_column(users, attr, "users"))
            for kind, attr, _ in self.attribute_features.values()
            if kind == "user_code" and users is not None
        }
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

    @property
    def available(self) -> list[str]:
        """Feature names this builder can produce with the inputs it was given."""
        base = [n for n in FEATURES if n not in NEEDS_IMPRESSIONS or self._impressions is not None]
        return [*base, *self.attribute_features]

    def kind(self, name: str) -> str:
        """`user` (depends on the user only), `item` (on the item only) or `pair`."""
        if name in ("user_positives", "user_impressions"):
            return "user"
        if name in ("item_popularity", "item_impressions", "item_ctr"):
            return "item"
        spec = self.attribute_features.get(name)
        if spec is not None and spec[0] in ("item_code", "numeric", "age"):
            return "item"
        if spec is not None and spec[0] == "user_code":
            return "user"
        return "pair"

    def categories(self, name: str) -> pd.Index | None:
        """The category names of a categorical attribute feature (None for other features)."""
        spec = self.attribute_features.get(name)
        if spec is None or spec[0] not in ("item_code", "user_code"):
            return None
        return (self._codes if spec[0] == "item_code" else self._user_codes)[spec[1]][1]

    def category_codes(self, name: str, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Builder codes (-1 missing) of a categorical attribute feature at the rows."""
        kind, attr, _ = self.attribute_features[name]
        return self._codes[attr][0][items] if kind == "item_code" else self._user_codes[attr][0][users]

    def build(
        self, candidates: pd.DataFrame, features: Sequence[str] | None = None, as_of: object = None
    ) -> pd.DataFrame:
        """The feature frame (one row per candidate, input order) with `features` (default: all available)."""
        names = list(self.available if features is None else features)
        unavailable = [f for f in names if f not in self.available]
        if unavailable:
            given = "given" if self._impressions is not None else "not given"
            raise ValueError(
                f"feature(s) {', '.join(unavailable)} cannot be built here; available: {', '.join(self.available)} "
                f"(declared item attributes: {', '.join(self.attributes) or 'none'}, impressions: {given})."
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
        if name == "retrieval_score":
            return candidates["retrieval_score"].to_numpy(dtype=np.float64)
        if name == "retrieval_rank":
            return _rank_within_user(users, items, candidates["retrieval_score"].to_numpy(dtype=np.float64))
        if name == "source":
            return _categorical(candidates["source"])
        if name in ("user_impressions", "item_impressions", "item_ctr"):
            table = getattr(self, name)
            return table[users] if name.startswith("user") else table[items]
        if name == "history_cooccurrence":
            return self._history_cooc(users, items)
        if name == "impression_cooccurrence":
            return self._impressions(users, items)
        return self._attribute_feature(name, users, items, when)

    def _attribute_feature(self, name: str, users: np.ndarray, items: np.ndarray, when: object):
        kind, attr, _ = self.attribute_features[name]
        if kind in ("item_code", "user_code"):
            return pd.Categorical.from_codes(self.category_codes(name, users, items), categories=self.categories(name))
        if kind == "numeric":
            return self._values[attr][items]
        if kind == "age":
            if when is None:
                raise ValueError(f"{name} needs as_of (the time ages are measured at).")
            stamps = self._values[attr][items]
            release = stamps.astype(np.float64)
            release[stamps == _NAT] = np.nan
            return (float(_time_ns(pd.Series([when]))[0]) - release) / 86_400e9
        if kind == "same":
            return self._same(attr, users, items)
        total = self.user_positives[users]
        if kind == "affinity":
            counts = self._affinity[attr](users, self._codes[attr][0][items])
        else:  # multi: mean share over the item's values
            counts = self._multi_share(attr, users, items)
        return np.divide(counts, total, out=np.full(len(users), np.nan), where=total > 0)

    def _multi_share(self, attr: str, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Per pair: mean over the item's values of the user's positives with that value (NaN: no value)."""
        matrix = self._multi[attr]
        n = np.diff(matrix.indptr)[items]
        pair = np.repeat(np.arange(len(items)), n)
        offset = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        values = matrix.indices[np.repeat(matrix.indptr[items], n) + offset]
        sums = np.bincount(pair, weights=self._affinity[attr](users[pair], values), minlength=len(items))
        return np.divide(sums, n, out=np.full(len(items), np.nan), where=n > 0)

    def _share_lookup(self, codes: np.ndarray, categories: pd.Index) -> PairLookup:
        """users x levels counts of training positives (history @ one-hot of the item attribute)."""
        n_items = len(codes)
        known = codes >= 0
        onehot = sp.csr_matrix(
            (np.ones(int(known.sum())), (np.flatnonzero(known), codes[known])),
            shape=(n_items, max(len(categories), 1)),
        )
        return PairLookup(self.history @ onehot)

    def _same(self, attr: str, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Compared on the item vocabulary: a user value no item has is known but never equal."""
        item_codes, item_categories = self._codes[attr]
        user_codes, user_categories = self._user_codes[attr]
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


def _categorical(column: pd.Series) -> pd.Categorical:
    values, categories = codes(column)
    return pd.Categorical.from_codes(values, categories=categories)


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

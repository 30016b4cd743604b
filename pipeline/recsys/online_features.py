"""Online user and item features in Redis, under a bundle-versioned key, for /recommend.

Which features: the per-user and per-item counters the ranker reads that a streaming job
would keep fresh (activity, popularity, impressions, CTR). Pair features (co-occurrence,
affinities) stay in the bundle: they are functions of the whole history matrix, not of one key.
`keel run` publishes the training-time values (so a fresh bundle answers exactly as offline);
anything that later overwrites a key changes what /recommend ranks with.

Why keys carry the bundle tag: a new model must never read counters shaped for another one,
and a rollback must find its own values still there. Layout (values are float64 little-endian
vectors in the order `schema` lists; `schema` is written last, so it marks a complete publish):

    keel:features:<name:version>:schema     JSON {"user": [...], "item": [...], "users": n, "items": n}
    keel:features:<name:version>:u:<user id>
    keel:features:<name:version>:i:<item id>

A lookup is ONE round trip (MGET of the user and the candidates) with a socket timeout equal to
the stage budget; a timeout, a connection error or a missing schema is the caller's cue to fall
back to the embedded (bundle) values, i.e. the STALE_FEATURES level.

`RankerMatrix` (below) is the other half of online features: the LightGBM ranker's input for one
user's candidates built straight from the builder's arrays, without the pandas frames of the
offline path (docs/adr/0012-recommend-serving.md, "Per-request CPU").
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import redis
import scipy.sparse as sp

from pipeline.recsys.ranking_features import CooccurrenceSum, RankingFeatureBuilder

log = logging.getLogger("keel.recsys")

USER_FEATURES = ("user_positives", "user_impressions")
ITEM_FEATURES = ("item_popularity", "item_impressions", "item_ctr")
CHUNK = 5000  # keys per pipelined write
DTYPE = np.dtype("<f8")


def prefix(tag: str) -> str:
    return f"keel:features:{tag}"


def online_names(builder: RankingFeatureBuilder) -> tuple[list[str], list[str]]:
    """The user and item counters this builder has (impressions-based ones need impressions)."""
    return (
        [n for n in USER_FEATURES if hasattr(builder, n)],
        [n for n in ITEM_FEATURES if hasattr(builder, n)],
    )


def publish_features(
    client: redis.Redis, tag: str, builder: RankingFeatureBuilder, user_ids: Sequence[Any], item_ids: Sequence[Any]
) -> dict[str, Any]:
    """Write every user's and item's counters for `tag`; the schema key last. Idempotent."""
    user_names, item_names = online_names(builder)
    users = np.column_stack([np.asarray(getattr(builder, n), dtype=DTYPE) for n in user_names])
    items = np.column_stack([np.asarray(getattr(builder, n), dtype=DTYPE) for n in item_names])
    base = prefix(tag)
    for kind, ids, matrix in (("u", user_ids, users), ("i", item_ids, items)):
        for start in range(0, len(ids), CHUNK):
            pipe = client.pipeline(transaction=False)
            pipe.mset(
                {f"{base}:{kind}:{ids[j]}": matrix[j].tobytes() for j in range(start, min(start + CHUNK, len(ids)))}
            )
            pipe.execute()
    schema = {"user": user_names, "item": item_names, "users": len(user_ids), "items": len(item_ids)}
    client.set(f"{base}:schema", json.dumps(schema))
    return schema


def publish_from_url(
    url: str, tag: str, builder: RankingFeatureBuilder, user_ids: Sequence, item_ids: Sequence
) -> dict:
    client = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5)
    try:
        return publish_features(client, tag, builder, list(user_ids), list(item_ids))
    finally:
        client.close()


class RedisFeatures:
    """Reads one user's and its candidates' counters for one bundle; raises on any Redis trouble."""

    def __init__(self, url: str, tag: str, timeout_s: float) -> None:
        self.tag = tag
        self.base = prefix(tag)
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.schema: dict[str, Any] | None = None

    def published(self) -> bool:
        raw = self.client.get(f"{self.base}:schema")
        if raw is None:
            return False
        self.schema = json.loads(raw)
        return True

    def fetch(self, user_id: str, item_ids: Sequence[str]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """({user feature: value}, {item feature: values per item, NaN where Redis has no key})."""
        if self.schema is None and not self.published():
            raise LookupError(f"no online features published for {self.tag}")
        schema = self.schema
        assert schema is not None
        keys = [f"{self.base}:u:{user_id}", *(f"{self.base}:i:{i}" for i in item_ids)]
        values = self.client.mget(keys)
        user_names, item_names = schema["user"], schema["item"]
        user: dict[str, float] = {}
        if values[0] is not None:
            row = np.frombuffer(values[0], dtype=DTYPE)
            user = {n: float(row[j]) for j, n in enumerate(user_names)}
        items = np.full((len(item_ids), len(item_names)), np.nan)
        width = len(item_names) * DTYPE.itemsize
        for j, raw in enumerate(values[1:]):
            if raw is not None and len(raw) == width:
                items[j] = np.frombuffer(raw, dtype=DTYPE)
        return user, {n: items[:, j] for j, n in enumerate(item_names)}

    def close(self) -> None:
        self.client.close()


def redis_url_for(spec: Any) -> str | None:
    """KEEL_REDIS_URL wins over the spec's runtime.redis_url (the serving env decides where Redis is)."""
    from pipeline.spec.secrets import redis_url

    return redis_url(spec)


def publish_online_features(
    spec: Any, tag: str, builder: RankingFeatureBuilder, user_ids: Sequence, item_ids: Sequence
) -> dict[str, Any] | None:
    """`keel run`'s publish step: None without Redis; a Redis failure is logged, never fails the run
    (serving then answers with the embedded values, level STALE_FEATURES, until a publish succeeds)."""
    url = redis_url_for(spec)
    if not url:
        return None
    try:
        return publish_from_url(url, tag, builder, user_ids, item_ids)
    except redis.RedisError as exc:
        log.warning("online features for %s not published to Redis: %s", tag, exc)
        return {"error": str(exc)}


# ---------------------------------------------------------------- the ranker's matrix without pandas

FROM_CANDIDATES = frozenset({"retrieval_score", "retrieval_rank", "source"})


class RankerMatrix:
    """The float matrix a LightGBM ranker predicts from, for one user's candidates, without pandas.

    The offline path is builder.build (a DataFrame) -> ranker.prepare (another, on the fit-time
    categories) -> LightGBM's own DataFrame conversion (categoricals as codes of the training
    categories, missing as NaN): ~2 ms of pandas per 500 candidates. The same numbers come from
    arrays: item-only and user-only features are looked up in tables computed once (by the builder
    itself, over every item and user), pair features call the builder's numpy internals, and each
    categorical's builder code maps to its final code through a small precomputed table. Equality
    with the offline path is checked by the caller on its first request (and by a unit test).
    """

    def __init__(self, builder: RankingFeatureBuilder, ranker: Any, sources: Sequence[str]) -> None:
        booster = getattr(ranker, "booster", None)
        kinds = getattr(ranker, "kinds", None)
        if booster is None or kinds is None:
            raise TypeError("only a fitted lightgbm_ranker has a matrix path")
        self.builder = builder
        self.features = list(ranker.features)
        unknown = [f for f in self.features if f not in builder.available]
        if unknown:
            raise ValueError(f"unknown ranking feature(s) {unknown}")
        n_users, n_items = builder.history.shape
        trained = iter(booster.pandas_categorical or [])
        self.recode: dict[str, np.ndarray] = {}  # categorical feature -> final float code per builder code (+ -1)
        for name in self.features:
            if kinds[name] is not None:
                self.recode[name] = _recode(self._categories(name, sources), kinds[name], next(trained))
        self.item_columns = [j for j, n in enumerate(self.features) if builder.kind(n) == "item"]
        self.user_columns = [j for j, n in enumerate(self.features) if builder.kind(n) == "user"]
        every_item, every_user = np.arange(n_items, dtype=np.int64), np.arange(n_users, dtype=np.int64)
        self.item_table = np.empty((n_items, len(self.item_columns)), dtype=np.float64)
        for c, j in enumerate(self.item_columns):
            self.item_table[:, c] = self._static(self.features[j], np.zeros(n_items, dtype=np.int64), every_item)
        self.user_table = np.empty((n_users, len(self.user_columns)), dtype=np.float64)
        for c, j in enumerate(self.user_columns):
            self.user_table[:, c] = self._static(self.features[j], every_user, np.zeros(n_users, dtype=np.int64))
        self.column = {name: j for j, name in enumerate(self.features)}
        self.static = frozenset(self.item_columns) | frozenset(self.user_columns)
        self.cooccurrence = {
            name: OneUserCooccurrence(getattr(builder, attr))
            for name, attr in (("history_cooccurrence", "_history_cooc"), ("impression_cooccurrence", "_impressions"))
            if name in self.column
        }

    def build(self, user: int, items: np.ndarray, retrieval_score: np.ndarray, sources: np.ndarray) -> np.ndarray:
        """(len(items), n_features) float64, C order, in the ranker's feature order."""
        n = len(items)
        users = np.full(n, user, dtype=np.int64)
        out = np.empty((n, len(self.features)), dtype=np.float64)
        out[:, self.item_columns] = self.item_table[items]
        out[:, self.user_columns] = self.user_table[user]
        for j, name in enumerate(self.features):
            if j in self.static:
                continue
            if name == "retrieval_score":
                out[:, j] = retrieval_score
            elif name == "retrieval_rank":  # _rank_within_user for one user: descending score, ties lower item
                out[np.lexsort((items, -retrieval_score)), j] = np.arange(n, dtype=np.float64)
            elif name == "source":
                out[:, j] = self.recode[name][sources]
            elif name in self.cooccurrence:
                out[:, j] = self.cooccurrence[name](user, items)
            else:  # pair features: the builder's own numpy code, candidates not needed
                out[:, j] = self.builder._feature(name, None, users, items, self.builder.as_of)
        return out

    def _categories(self, name: str, sources: Sequence[str]) -> list[str]:
        b = self.builder
        if name == "source":
            return [str(s) for s in sources]
        categories = b.categories(name)
        if categories is not None:
            return [str(c) for c in categories]
        raise ValueError(f"{name} is categorical for the ranker but the builder has no codes for it")

    def _static(self, name: str, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """A user-only or item-only feature for many rows at once, as the builder computes it."""
        b = self.builder
        if name in self.recode:  # categorical: the builder's codes, then the final codes
            return self.recode[name][b.category_codes(name, users, items)]
        return np.asarray(b._feature(name, None, users, items, b.as_of), dtype=np.float64)


class OneUserCooccurrence:
    """`CooccurrenceSum` for one user's candidates as one sparse row x matrix product.

    The builder expands every (history item, candidate) pair and binary-searches it in the pruned
    co-occurrence keys: |history| x |candidates| searches (25k for 50 impressions x 500 candidates).
    For one user the same sums are the user's 0/1 history row times the pruned matrix (|history| x
    at most MAX_NEIGHBOURS products, added in the same history-item order, so the same floats),
    read at the candidates through a per-thread dense scratch row that is cleared after use.
    """

    def __init__(self, source: CooccurrenceSum) -> None:
        lookup = source.lookup
        n_rows, n_cols = lookup.shape
        rows = lookup.keys // n_cols  # keys are sorted: row-major CSR order already
        indptr = np.searchsorted(rows, np.arange(n_rows + 1))
        self.matrix = sp.csr_matrix((lookup.data, lookup.keys % n_cols, indptr), shape=lookup.shape)
        self.history = source.binary
        self.n_cols = n_cols
        self._local = threading.local()

    def __call__(self, user: int, items: np.ndarray) -> np.ndarray:
        start, end = self.history.indptr[user], self.history.indptr[user + 1]
        history = self.history.indices[start:end]
        row = sp.csr_matrix(
            (self.history.data[start:end], history, np.array([0, end - start])), shape=(1, self.history.shape[1])
        )
        product = row @ self.matrix
        scratch = getattr(self._local, "row", None)
        if scratch is None:
            scratch = self._local.row = np.zeros(self.n_cols, dtype=np.float64)
        scratch[product.indices] = product.data
        out = scratch[items]
        scratch[product.indices] = 0.0
        return out


def _recode(categories: list[str], levels: list[str], trained: Sequence[Any]) -> np.ndarray:
    """Builder code -> the float code LightGBM sees (NaN: missing or unseen); index -1 is the missing code.

    As the offline path: builder category -> fit-time level by str() (categorical_values), level ->
    the booster's training category by value (_lightgbm_matrix's set_categories), else NaN."""
    level_at = {level: i for i, level in enumerate(levels)}
    trained_at = {value: i for i, value in enumerate(trained)}
    out = np.full(len(categories) + 1, np.nan)
    for code, category in enumerate(categories):
        level = level_at.get(str(category))
        if level is not None and levels[level] in trained_at:
            out[code] = float(trained_at[levels[level]])
    return out


def lightgbm_matrix(x: pd.DataFrame, booster: Any) -> np.ndarray:
    """The float matrix LightGBM makes of a DataFrame: categoricals -> codes of the training categories, -1 -> NaN."""
    categories = iter(booster.pandas_categorical or [])
    columns = []
    for name in x.columns:
        column = x[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            trained = next(categories)
            if list(column.cat.categories) != list(trained):
                column = column.cat.set_categories(trained)
            codes = column.cat.codes.to_numpy(dtype=np.float64)
            codes[codes < 0] = np.nan
            columns.append(codes)
        else:
            columns.append(column.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.column_stack(columns)


def matrix_matches_frame(x: np.ndarray, frame: pd.DataFrame, ranker: Any) -> bool:
    """Same matrix as LightGBM makes of the prepared frame, and bit-identical scores (the matrix path's check)."""
    booster = ranker.booster
    reference = lightgbm_matrix(ranker.prepare(frame), booster)
    if x.shape != reference.shape or not np.array_equal(x, reference, equal_nan=True):
        return False
    fast = np.asarray(booster.predict(x, num_threads=1), dtype=np.float64)
    return bool(np.array_equal(fast, ranker.score(frame)))

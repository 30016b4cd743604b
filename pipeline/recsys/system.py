"""A recommendation spec as one system: tables -> examples -> two-tower + FAISS -> multi-source
candidates -> ranker -> diversity re-rank -> full-catalogue evaluation and batch top-K.

`flows/recsys.py` calls these functions as Prefect tasks; nothing here knows about Prefect.
Every model is fitted on the train part of one global time split (pipeline.recsys.examples):
the ranker learns from validation-period candidates, and the test part is touched only by
the evaluation, over the full catalogue with each user's seen items excluded.

Retrieval merges three sources round-robin (two-tower ANN, item co-occurrence, popularity),
recording which source proposed each candidate. A source that fails is reported and left
out; the others still answer (only all of them failing is an error).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp
from tqdm import tqdm

from pipeline.data.errors import DataSourceError, TrainingDataError
from pipeline.data.sources import SYNTHETIC_PREFIX, load_source
from pipeline.recsys import attributes as item_attributes
from pipeline.recsys.candidates import (  # noqa: F401  (re-exported: tests and benches import them from here)
    _first_unbanned,
    cooccurrence_top_k,
    merge_round_robin,
    popularity_top_k,
)
from pipeline.recsys.cold_start import COLD_SOURCES, ColdStart
from pipeline.recsys.examples import FeedbackColumns, RecExamples, build_examples, interaction_matrix
from pipeline.recsys.index import IndexParams, ItemIndex, build_item_index
from pipeline.recsys.metrics import evaluate_scores, ranking_metrics
from pipeline.recsys.ranker import Ranker, build_ranker, ndcg_at_k
from pipeline.recsys.ranking_features import CANDIDATE_COLUMNS, RankingFeatureBuilder, pair_labels
from pipeline.recsys.rerank import rerank
from pipeline.recsys.retrieval import (  # noqa: F401
    SOURCE_WEIGHTS,
    SOURCES,
    Retrieval,
    candidate_rows,
    needs_two_tower,
)
from pipeline.recsys.same_run import baseline_margins, same_run_baselines  # noqa: F401
from pipeline.recsys.splits import RecSplit
from pipeline.recsys.two_tower import TwoTowerModel
from pipeline.spec.schema import DataSpec, SourceSpec, Spec, TableSpec

MAX_RANKER_USERS = 3000  # validation users whose candidates train the ranker (bounds time on 2 cores)
EARLY_STOP_SHARE = 0.2  # of those, held out for early stopping and the ranker-vs-retrieval check
BATCH_CHUNK = 1024  # users per chunk of batch top-K


# ---------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class RecTables:
    """The item table (the catalogue, one row per id) and the optional user table."""

    items: pd.DataFrame
    users: pd.DataFrame | None


def load_side_tables(spec: Spec, base_dir: Path) -> RecTables:
    """Load data.items / data.users; a missing id column or a duplicated id is bad input (exit 2)."""
    data = spec.data
    if data.items is None:
        raise DataSourceError("a recommendation spec needs data.items (the item table)")
    items = _side_table(data, data.items, base_dir, "items")
    users = _side_table(data, data.users, base_dir, "users") if data.users is not None else None
    return RecTables(items, users)


def _side_table(data: DataSpec, table: TableSpec, base_dir: Path, what: str) -> pd.DataFrame:
    source = table.source or data.source
    if table.source is None and not data.source.startswith(SYNTHETIC_PREFIX):
        raise DataSourceError(f"data.{what}.source is needed: data.source {data.source!r} is a single table")
    src = SourceSpec(
        source=source,
        table=table.table,
        rows=data.rows,
        seed=data.seed,
        scenario=data.scenario,
        csv_delimiter=table.csv_delimiter,
    )
    frame = load_source(src, base_dir)
    if table.id not in frame.columns:
        raise DataSourceError(f"data.{what}: the {what} table has no id column {table.id!r} (columns: {list(frame)})")
    if frame[table.id].isna().any() or frame[table.id].duplicated().any():
        raise DataSourceError(f"data.{what}: {table.id!r} must identify one row per {what[:-1]} (missing or repeated)")
    undeclared = [c for c in getattr(table, "attributes", {}) if c not in frame.columns]
    if undeclared:
        raise DataSourceError(f"data.{what}.attributes {undeclared} are not columns of the {what} table: {list(frame)}")
    if len(frame) == 0:
        raise DataSourceError(f"data.{what}: the {what} table is empty")
    return frame


def check_inputs(spec: Spec, tables: RecTables, accepted: pd.DataFrame) -> None:
    """Columns the towers need must exist before anything trains (DataSourceError: exit 2)."""
    data = spec.data
    assert data.user and data.item
    item_features = [f for f in spec.model.item_features if f != data.item]
    missing = [f for f in item_features if f not in tables.items.columns]
    if missing:
        raise DataSourceError(f"model.item_features {missing} are not columns of the item table")
    user_features = [f for f in spec.model.features if f != data.user]
    where = tables.users if tables.users is not None else accepted
    missing = [f for f in user_features if f not in where.columns]
    if missing:
        table = "user table" if tables.users is not None else "interaction log (and no data.users)"
        raise DataSourceError(f"model.features {missing} are not columns of the {table}")


def feedback_columns(data: DataSpec) -> FeedbackColumns:
    assert data.user and data.item and data.timestamp  # semantic checks guarantee them for recommendation
    return FeedbackColumns(data.user, data.item, data.timestamp, data.label, data.positive, data.rating_threshold)


def rec_split(spec: Spec) -> RecSplit:
    """data.split as an interaction-log protocol (absent or `time`: global_time)."""
    split = spec.data.split
    method = "global_time" if split.method in (None, "time") else split.method
    return RecSplit(
        method,  # type: ignore[arg-type]  # semantic checks allow only the log methods here
        split.valid_fraction,
        split.test_fraction,
        last_n=split.last_n,
        min_interactions=split.min_interactions,
        seed=spec.data.seed,
    )


def make_examples(spec: Spec, accepted: pd.DataFrame, tables: RecTables) -> RecExamples:
    """The leakage-free split; rows whose item is not in the item table are quarantined, not dropped."""
    data = spec.data
    assert data.items is not None
    try:
        examples = build_examples(
            accepted,
            tables.items[data.items.id].to_numpy(),
            feedback_columns(data),
            split=rec_split(spec),
        )
    except ValueError as exc:
        raise TrainingDataError(str(exc)) from None
    if int(examples.train_positives.nnz) == 0:
        raise TrainingDataError("no positive interaction in the training period: nothing to learn from")
    if len(examples.test_users) == 0:
        raise TrainingDataError("no warm test user has a relevant item: there is nothing to evaluate on")
    return examples


# ---------------------------------------------------------------- two-tower + index


def fit_two_tower(spec: Spec, accepted: pd.DataFrame, tables: RecTables, ex: RecExamples) -> TwoTowerModel:
    """Fit the towers on the train part: positive-label rows, or every impression (model.positives)."""
    data = spec.data
    assert data.user and data.item and data.items is not None
    model_spec = spec.model
    rows = ex.train.rows if model_spec.positives == "impressions" else ex.train.rows[ex.train.positive]
    log = accepted.iloc[rows]
    model = TwoTowerModel.from_spec(model_spec, user_col=data.user, item_col=data.item)
    items = tables.items.rename(columns={data.items.id: data.item})
    missing = [f for f in model.item_features if f not in items.columns]
    if missing:
        raise DataSourceError(f"model.item_features {missing} are not columns of the item table")
    users = _user_feature_table(spec, accepted.iloc[ex.train.rows], tables, model.user_features)
    pairs = log[[data.user, data.item]].reset_index(drop=True)
    patience = model_spec.params.early_stopping_rounds
    validate = validation_ndcg(ex, data.seed) if patience is not None else None
    model.fit(
        pairs, users=users, items=items, user_col=data.user, item_col=data.item, validate=validate, patience=patience
    )
    positions = model.item_positions(ex.item_map.ids)
    if not np.array_equal(positions, np.arange(ex.n_items)):
        raise TrainingDataError("the two-tower catalogue order differs from the item table's; ids do not round-trip")
    return model


VALID_SAMPLE = 2000  # validation users scored after each two-tower epoch (early stopping)


def validation_ndcg(ex: RecExamples, seed: int) -> Callable[[TwoTowerModel], float] | None:
    """Full-catalogue NDCG@10 of the towers on (a sample of) the validation users; None without any."""
    users = ex.valid_users
    if len(users) == 0:
        return None
    if len(users) > VALID_SAMPLE:
        users = np.sort(np.random.default_rng(seed).choice(users, VALID_SAMPLE, replace=False))

    def score(model: TwoTowerModel) -> float:
        vectors, _ = model.user_embeddings(ex.user_map.ids[users])
        items = model.item_embeddings()
        fn = lambda idx: vectors[np.searchsorted(users, idx)] @ items.T  # noqa: E731
        return float(evaluate_scores(fn, users, ex.seen, ex.valid_relevant, [10])["ndcg@10"])

    return score


def _user_feature_table(
    spec: Spec, train_log: pd.DataFrame, tables: RecTables, features: list[str]
) -> pd.DataFrame | None:
    """User-tower features: from the user table when declared, else each user's latest training row."""
    data = spec.data
    assert data.user
    if not features:
        return None
    if tables.users is not None and data.users is not None:
        users = tables.users.rename(columns={data.users.id: data.user})
        missing = [f for f in features if f not in users.columns]
        if missing:
            raise DataSourceError(f"model.features {missing} are not columns of the user table")
        return users
    missing = [f for f in features if f not in train_log.columns]
    if missing:
        raise DataSourceError(f"model.features {missing} are not columns of the interaction log (and no data.users)")
    return train_log.drop_duplicates(data.user, keep="last")[[data.user, *features]]


def build_index(spec: Spec, model: TwoTowerModel) -> ItemIndex:
    return build_item_index(model, IndexParams.from_spec(spec.model.index))


# ---------------------------------------------------------------- retrieval


# ---------------------------------------------------------------- ranking


def feature_builder(spec: Spec, tables: RecTables, ex: RecExamples) -> RankingFeatureBuilder:
    """Ranking features from train history and impressions only (as of the validation cut-off)."""
    data = spec.data
    assert data.items is not None
    items = _aligned(tables.items, data.items.id, ex.item_map.ids)
    users = None
    if tables.users is not None and data.users is not None:
        users = _aligned(tables.users, data.users.id, ex.user_map.ids)
    impressions = interaction_matrix(ex.train, (ex.n_users, ex.n_items), positive_only=False)
    return RankingFeatureBuilder(
        ex.train_positives,
        items,
        users,
        item_attributes.declared(spec),
        as_of=ex.valid_start,
        impressions=impressions,
    )


def ranker_features(spec: Spec, builder: RankingFeatureBuilder) -> list[str]:
    wanted = list(spec.ranker.features) if spec.ranker and spec.ranker.features else builder.available
    unavailable = [f for f in wanted if f not in builder.available]
    if unavailable:
        raise DataSourceError(
            f"ranker.features {unavailable} are not ranking features of this data (declared item attributes: "
            f"{', '.join(builder.attributes) or 'none'}); available here: {', '.join(builder.available)}"
        )
    return wanted


def ranker_frame(builder: RankingFeatureBuilder, rows: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """The builder's features, then every declared source's score and rank columns (when `rows` has them)."""
    frame = builder.build(rows, [f for f in features if f not in rows.columns or f in CANDIDATE_COLUMNS])
    extra = [f for f in features if f in rows.columns and f not in CANDIDATE_COLUMNS]
    for name in extra:
        frame[name] = rows[name].to_numpy()
    return frame


@dataclass(eq=False)
class RankingStage:
    """The fitted ranker (None: candidates keep their retrieval order) and why."""

    ranker: Ranker | None
    features: list[str]
    info: dict[str, Any]

    def scores(self, builder: RankingFeatureBuilder, rows: pd.DataFrame) -> np.ndarray:
        if self.ranker is None:
            return -rows["merged_rank"].to_numpy(dtype=np.float64)
        return self.ranker.score(ranker_frame(builder, rows, self.features))


def train_ranker(
    spec: Spec, builder: RankingFeatureBuilder, retrieval: Retrieval, ex: RecExamples, seed: int
) -> RankingStage:
    """Learn to rank validation-period candidates; kept only if it beats retrieval order on held-out users."""
    if spec.ranker is None:
        return RankingStage(None, [], {"used": False, "reason": "no ranker in the spec: retrieval order is final"})
    features = ranker_features(spec, builder) + retrieval.source_feature_names
    rng = np.random.default_rng(seed)
    users = ex.valid_users
    if len(users) > MAX_RANKER_USERS:
        users = np.sort(rng.choice(users, MAX_RANKER_USERS, replace=False))
    items, sources, lists = retrieval.candidates_with_lists(users, ex.seen)
    rows = candidate_rows(retrieval, users, items, sources, lists)
    labels = pair_labels(rows, ex.valid_relevant)
    positive_users = np.unique(rows["user_idx"].to_numpy()[labels > 0])
    held = rng.random(len(positive_users)) < EARLY_STOP_SHARE
    info: dict[str, Any] = {
        "family": spec.ranker.family,
        "features": features,
        "valid_users": len(users),
        "users_with_a_relevant_candidate": len(positive_users),
    }
    if held.sum() < 5 or (~held).sum() < 5:
        return RankingStage(None, features, {**info, "used": False, "reason": "too few validation users with a hit"})
    fit_mask = rows["user_idx"].isin(positive_users[~held]).to_numpy()
    held_mask = rows["user_idx"].isin(positive_users[held]).to_numpy()
    frame = ranker_frame(builder, rows, features)
    fit_sizes = _group_sizes(rows["user_idx"].to_numpy()[fit_mask])
    held_sizes = _group_sizes(rows["user_idx"].to_numpy()[held_mask])
    ranker = build_ranker(spec.ranker.model_copy(update={"features": features}), seed)
    try:
        ranker.fit(
            frame[fit_mask].reset_index(drop=True),
            fit_sizes,
            labels[fit_mask],
            valid=(frame[held_mask].reset_index(drop=True), held_sizes, labels[held_mask]),
        )
    except ValueError as exc:
        return RankingStage(None, features, {**info, "used": False, "reason": f"ranker could not train: {exc}"})
    held_ranker = float(np.nanmean(ndcg_at_k(ranker.score(frame[held_mask]), labels[held_mask], held_sizes, 10)))
    held_retrieval = float(
        np.nanmean(ndcg_at_k(-rows["merged_rank"].to_numpy()[held_mask], labels[held_mask], held_sizes, 10))
    )
    info |= {
        "fit_users": int((~held).sum()),
        "held_out_users": int(held.sum()),
        "best_iteration": ranker.best_iteration,
        "valid_ndcg@10_ranker": held_ranker,
        "valid_ndcg@10_retrieval_order": held_retrieval,
    }
    if held_ranker <= held_retrieval:
        reason = "the ranker did not beat retrieval order on held-out validation users"
        return RankingStage(None, features, {**info, "used": False, "reason": reason})
    return RankingStage(ranker, features, {**info, "used": True, "reason": "beat retrieval order on validation"})


def _group_sizes(users: np.ndarray) -> np.ndarray:
    if len(users) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    return np.diff(np.r_[starts, len(users)]).astype(np.int64)


# ---------------------------------------------------------------- the final list


@dataclass(eq=False)
class Recommender:
    """Retrieval -> ranking -> re-ranking for a batch of users (dense indices)."""

    spec: Spec
    retrieval: Retrieval
    builder: RankingFeatureBuilder
    ranking: RankingStage
    attribute: np.ndarray | None  # diversity attribute per item index
    exposure: dict[Any, float] | None  # training impressions per attribute value (the under-exposed get slots)
    rerank_stats: dict[str, int] = field(default_factory=lambda: {"lists": 0, "skipped": 0, "filled_by_guarantee": 0})
    cold_start: ColdStart | None = None  # serving.cold_start for users without enough history (as /recommend)

    @property
    def source_labels(self) -> tuple[str, ...]:
        """Names of the final_sources codes: the merged sources, then the cold-start lists."""
        return (*self.retrieval.names, *(f"cold_start:{p}" for p in COLD_SOURCES))

    def recommend(self, users: np.ndarray, seen: sp.csr_matrix, k: int) -> dict[str, np.ndarray]:
        """{"candidates", "ranked", "final": (n, .) item indices; "final_scores", "final_sources"}."""
        items, sources, lists = self.retrieval.candidates_with_lists(users, seen)
        rows = candidate_rows(self.retrieval, users, items, sources, lists)
        scores = self.ranking.scores(self.builder, rows)
        sizes = items.__ge__(0).sum(axis=1)
        starts = np.r_[0, np.cumsum(sizes)[:-1]]
        ranked = np.full((len(users), k), -1, dtype=np.int64)
        final = np.full((len(users), k), -1, dtype=np.int64)
        final_scores = np.full((len(users), k), np.nan)
        final_sources = np.full((len(users), k), -1, dtype=np.int64)
        row_items = rows["item_idx"].to_numpy()
        row_sources = rows["source"].cat.codes.to_numpy()
        reranker = self.spec.reranker
        for u in range(len(users)):
            lo, hi = starts[u], starts[u] + sizes[u]
            if hi == lo:
                continue
            s = scores[lo:hi]
            order = np.argsort(-s, kind="stable")[:k]
            ranked[u, : len(order)] = row_items[lo:hi][order]
            if reranker is not None and self.attribute is not None:
                result = rerank(
                    np.arange(hi - lo),
                    s,
                    self.attribute[row_items[lo:hi]],
                    k,
                    reranker.diversity_weight,
                    reranker.min_exposure_share,
                    exposure_counts=self.exposure,
                )
                picked = result.positions
                self.rerank_stats["lists"] += 1
                self.rerank_stats["skipped"] += int(not result.report.ran)
                self.rerank_stats["filled_by_guarantee"] += result.report.filled_by_guarantee
            else:
                picked = order
            final[u, : len(picked)] = row_items[lo:hi][picked]
            final_scores[u, : len(picked)] = s[picked]
            final_sources[u, : len(picked)] = row_sources[lo:hi][picked]
        if self.cold_start is not None:
            _cold_lists(self, users, seen, k, ranked, final, final_scores, final_sources)
        return {
            "candidates": items,
            "ranked": ranked,
            "final": final,
            "final_scores": final_scores,
            "final_sources": final_sources,
        }


def _cold_lists(rec: Recommender, users, seen, k, ranked, final, final_scores, final_sources) -> None:
    """Users without enough history get the cold-start policy's list, never a history model's guess."""
    assert rec.cold_start is not None
    counts = np.asarray(rec.retrieval.popularity.item_counts, dtype=np.float64)
    seen = sp.csr_matrix(seen)
    for row in np.flatnonzero(rec.cold_start.cold(seen, users)):
        chosen, source = rec.cold_start.choose(int(users[row]), k, seen)
        code = len(rec.retrieval.names) + COLD_SOURCES.index(source)
        for out in (ranked, final, final_sources):
            out[row] = -1
        final_scores[row] = np.nan
        ranked[row, : len(chosen)] = chosen
        final[row, : len(chosen)] = chosen
        final_scores[row, : len(chosen)] = counts[chosen]
        final_sources[row, : len(chosen)] = code


def cold_start_for(spec: Spec, tables: RecTables, ex: RecExamples, retrieval: Retrieval) -> ColdStart:
    """serving.cold_start over this run's items and users (dense order) and training popularity."""
    data = spec.data
    assert data.items is not None
    items = _aligned(tables.items, data.items.id, ex.item_map.ids)
    users = None
    if tables.users is not None and data.users is not None:
        users = _aligned(tables.users, data.users.id, ex.user_map.ids)
    return ColdStart.build(
        spec.serving.cold_start, retrieval.popularity.item_counts, items, users, item_attributes.declared(spec)
    )


def diversity_attribute(spec: Spec, tables: RecTables, ex: RecExamples) -> tuple[np.ndarray | None, dict | None]:
    """The re-ranker's item attribute per item index, and training impressions per value."""
    data = spec.data
    if spec.reranker is None:
        return None, None
    assert data.items is not None
    column = spec.reranker.diversity_attribute
    declared = item_attributes.declared(spec)
    if column not in declared or column not in tables.items.columns:
        raise DataSourceError(
            f"reranker.diversity_attribute {column!r} is not a declared item attribute present in the item table "
            f"(data.items.attributes: {list(declared) or 'none'})"
        )
    values = _aligned(tables.items, data.items.id, ex.item_map.ids)[column]
    attribute = item_attributes.one_value(values, declared[column])
    shown = np.asarray(interaction_matrix(ex.train, (ex.n_users, ex.n_items), positive_only=False).sum(axis=0)).ravel()
    exposure = pd.Series(shown).groupby(pd.Series(attribute).astype(str)).sum()
    counts = {value: float(exposure.get(str(value), 0.0)) for value in pd.unique(attribute)}
    return attribute, counts


# ---------------------------------------------------------------- evaluation


def evaluate(
    spec: Spec, recommender: Recommender, ex: RecExamples, top_k: int
) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, Any]]:
    """(final metrics for gates, per-stage and baseline metrics, diversity), on warm test users.

    Every list is ranked over the full catalogue with train-seen items excluded; Recall@K
    is the merged candidate list's (K = model.candidates), the rest the final list's.
    """
    users = ex.test_users
    relevant = ex.test_relevant[users]
    k = recommender.retrieval.k
    ks = sorted({10, top_k})
    out = recommender.recommend(users, ex.seen, max(ks))
    candidates = ranking_metrics(out["candidates"], relevant, [k])
    final = ranking_metrics(out["final"], relevant, ks)
    ranked = ranking_metrics(out["ranked"], relevant, ks)
    r = recommender.retrieval
    stages: dict[str, dict[str, float]] = {"final": final, "ranked_before_rerank": ranked, "candidates": candidates}
    if r.has_two_tower:
        vectors, item_vectors = r.user_vectors, r.item_vectors
        assert vectors is not None and item_vectors is not None
        stages["two_tower_full_catalogue"] = evaluate_scores(
            lambda u: vectors[u] @ item_vectors.T, users, ex.seen, ex.test_relevant, [*ks, k]
        )
    baselines, baseline_info = same_run_baselines(spec, r, ex, users, [*ks, k])
    stages |= baselines
    metrics = {f"recall@{k}": candidates[f"recall@{k}"], **{n: v for n, v in final.items() if "@" in n}}
    metrics["mrr"] = final["mrr@10"]
    metrics["coverage"] = final["coverage@10"]
    diversity = {}
    if recommender.attribute is not None:
        diversity = {
            "attribute": spec.reranker.diversity_attribute if spec.reranker else None,
            "ranked_share": _shares(out["ranked"][:, :10], recommender.attribute),
            "final_share": _shares(out["final"][:, :10], recommender.attribute),
            "rerank": dict(recommender.rerank_stats),
        }
    diversity["baselines"] = baseline_info  # fit times / skips ride along with the stage metrics
    return metrics, stages, diversity


def evaluated_users(spec: Spec, ex: RecExamples) -> dict[str, Any]:
    """Who the metrics are over: warm test users with a relevant item; cold ones are counted apart."""
    n, minimum = len(ex.test_users), spec.evaluation.min_users
    return {
        "split": ex.split,
        "users": n,
        "cold_users": len(ex.cold_test_users),
        "min_users": minimum,
        "sufficient": n >= minimum,
    }


def too_few_users(spec: Spec, ex: RecExamples, metrics: dict[str, Any]) -> dict[str, str]:
    """Metric -> why, for every metric when fewer users than evaluation.min_users were evaluated:
    their gates report "insufficient data", never a silent pass or fail."""
    info = evaluated_users(spec, ex)
    if info["sufficient"]:
        return {}
    why = f"only {info['users']} evaluated users (evaluation.min_users: {info['min_users']})"
    return {name: why for name in metrics}


def _shares(top: np.ndarray, attribute: np.ndarray) -> dict[str, float]:
    shown = top[top >= 0]
    if len(shown) == 0:
        return {}
    values = pd.Series(attribute[shown]).astype(str).value_counts(normalize=True).sort_index()
    return {str(k): round(float(v), 4) for k, v in values.items()}


# ---------------------------------------------------------------- batch


def batch_top_k(
    recommender: Recommender,
    ex: RecExamples,
    all_positives: sp.csr_matrix,
    k: int,
    path: Path,
    user_col: str,
    item_col: str,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Top-k for every user, written to Parquet chunk by chunk; excludes every item the user clicked.

    progress: a tqdm bar of users on stderr; None shows it only when stderr is a terminal.
    """
    schema = None
    writer: pq.ParquetWriter | None = None
    rows = 0
    user_ids = ex.user_map.ids
    item_ids = ex.item_map.ids
    bar = tqdm(total=ex.n_users, unit="user", desc="batch top-k", disable=None if progress is None else not progress)
    try:
        for start in range(0, ex.n_users, BATCH_CHUNK):
            users = np.arange(start, min(start + BATCH_CHUNK, ex.n_users))
            frame = top_k_rows(recommender, users, all_positives, k, user_ids, item_ids, user_col, item_col)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(path, schema)
            writer.write_table(table.cast(schema))
            rows += len(frame)
            bar.update(len(users))
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return {"users": ex.n_users, "rows": rows, "top_k": k, "parquet": str(path)}


def top_k_rows(
    recommender: Recommender,
    users: np.ndarray,
    seen: sp.csr_matrix,
    k: int,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    user_col: str,
    item_col: str,
) -> pd.DataFrame:
    """The batch rows (user, rank, item, score, source) of one chunk of users: batch_top_k's and a Dask worker's."""
    out = recommender.recommend(users, seen, k)
    final = out["final"]
    keep = final >= 0
    return pd.DataFrame(
        {
            user_col: np.repeat(user_ids[users], keep.sum(axis=1)),
            "rank": np.broadcast_to(np.arange(1, k + 1), final.shape)[keep],
            item_col: item_ids[final[keep]],
            "score": out["final_scores"][keep],
            "source": np.asarray(recommender.source_labels, dtype=object)[out["final_sources"][keep]],
        }
    )


def all_positive_matrix(ex: RecExamples) -> sp.csr_matrix:
    """Every positive of the accepted log (train, valid and test): what batch lists must not repeat."""
    shape = (ex.n_users, ex.n_items)
    total = sum((interaction_matrix(part, shape) for part in (ex.train, ex.valid, ex.test)), sp.csr_matrix(shape))
    out = sp.csr_matrix(total)
    out.data[:] = 1.0
    return out


def _aligned(table: pd.DataFrame, id_column: str, ids: np.ndarray) -> pd.DataFrame:
    """Rows of `table` in the order of `ids`; ids the table lacks get a row of missing values."""
    return table.set_index(id_column).reindex(pd.Index(ids)).reset_index(names=id_column)


def finite(metrics: dict[str, Any]) -> dict[str, float | None]:
    """JSON-safe metrics: NaN becomes None."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}

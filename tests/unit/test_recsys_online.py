"""The online recommender (one user per call) against the offline Recommender, its fallbacks, cold start, Redis.

A tiny real system (8,000 impressions, 600 items, one epoch) is fitted once for the module and
written as a real bundle with its serving state; the online side reads only the bundle.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from flows.validate import check_contract
from pipeline.data.prepare import load_frame
from pipeline.recsys import system
from pipeline.recsys.bundle import load_recsys_bundle
from pipeline.recsys.fallback import NoFallbackLeft, parse_faults
from pipeline.recsys.online import Candidates, OnlineRecommender, merge_one
from pipeline.recsys.online_features import RankerMatrix, RedisFeatures, lightgbm_matrix, prefix, publish_features
from pipeline.recsys.package import write_system_bundle
from pipeline.recsys.ranker import LightGBMRanker
from pipeline.recsys.ranking_features import group_sizes
from pipeline.registry import BundleStore, IntegrityError, save_bundle
from pipeline.spec.load import load_spec
from pipeline.spec.schema import ServingSpec, StageBudgets

# A tiny StreamRec spec of its own (the shipped specs/streamrec.yaml is sized for a real run).
TINY_SPEC = """\
defaults:
  - contract: streamrec_interactions
  - model: two_tower
  - runtime: local
  - _self_

name: recserve
task: recommendation
data:
  source: synthetic:streamrec
  table: interactions
  rows: 8000
  seed: 11
  scenario: {items: 600}
  entity_id: interaction_id
  timestamp: timestamp
  label: clicked
  positive: 1
  user: user_id
  item: item_id
  items:
    table: items
    id: item_id
    attributes: {creator_id: categorical, language: categorical, genre: categorical, release_date: timestamp}
  users: {table: users, id: user_id}
  split: {method: time, valid_fraction: 0.1, test_fraction: 0.2}
model:
  features: [user_id, platform]
  item_features: [item_id]
  candidates: 200
  params: {epochs: 1}
ranker:
  family: lightgbm_ranker
  params: {threads: 1}
  features: [retrieval_score, retrieval_rank, source, item_popularity, item_ctr, history_cooccurrence,
             impression_cooccurrence, user_language_affinity, same_language, user_positives]
reranker: {diversity_attribute: language, diversity_weight: 0.3, min_exposure_share: 0.05, latency_budget_share: 0.8}
serving:
  sla_ms: 200
  max_k: 50
  stage_budget_ms: {retrieval: 500, features: 200, ranking: 150}
  cold_start: {policy: popular_in, attribute: language, min_interactions: 1}
evaluation: {top_k: 10}
"""
REDIS_URL = "redis://127.0.0.1:6379/0"
GENEROUS = StageBudgets(retrieval=2000, features=1000, ranking=2000)  # a busy 2-core box never trips these


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = tmp_path_factory.mktemp("spec") / "recserve.yaml"
    path.write_text(TINY_SPEC)
    loaded = load_spec(path)
    spec = loaded.spec
    accepted = check_contract.fn(load_frame(spec, loaded.base_dir), spec).accepted
    tables = system.load_side_tables(spec, loaded.base_dir)
    ex = system.make_examples(spec, accepted, tables)
    builder = system.feature_builder(spec, tables, ex)
    model = system.fit_two_tower(spec, accepted, tables, ex)
    index = system.build_index(spec, model)
    retrieval = system.Retrieval.fit(model, index, ex, spec.model.candidates)
    ranking = system.train_ranker(spec, builder, retrieval, ex, 0)
    assert ranking.ranker is not None, ranking.info  # the comparison must cover the ranker
    attribute, exposure = system.diversity_attribute(spec, tables, ex)
    offline = system.Recommender(spec, retrieval, builder, ranking, attribute, exposure)
    seen = system.all_positive_matrix(ex)
    source = tmp_path_factory.mktemp("online") / "src"
    write_system_bundle(source, loaded, model, index, offline, tables, ex, {})  # the layout keel run writes
    store = BundleStore(source.parent / "store")
    ref = save_bundle("online-test", source, spec_sha256="0" * 64, data_fingerprint="t", code_version="t", store=store)
    warm = np.flatnonzero(np.diff(seen.indptr) > 0)
    return {"ref": ref, "bundle": load_recsys_bundle(ref), "offline": offline, "ex": ex, "seen": seen, "warm": warm}


def online(fitted: dict, **kwargs) -> OnlineRecommender:
    serving = kwargs.pop("serving", None) or ServingSpec(stage_budget_ms=GENEROUS)
    return OnlineRecommender(fitted["ref"].tag, fitted["bundle"], serving, **kwargs)


def _position(rec: OnlineRecommender, item_id: str) -> int:
    return rec.item_ids.tolist().index(item_id)


def _ids(recommendation) -> list[str]:
    return [item["item_id"] for item in recommendation.items]


def test_online_list_equals_the_offline_recommender(fitted: dict) -> None:
    ex, users = fitted["ex"], fitted["warm"][:25]
    offline = fitted["offline"].recommend(users, fitted["seen"], 10)
    rec = online(fitted)
    for row, user in enumerate(users):
        answer = rec.recommend(ex.user_map.ids[user], 10)
        want = [str(ex.item_map.ids[i]) for i in offline["final"][row] if i >= 0]
        assert answer.level == "FULL" and not answer.cold_start
        assert _ids(answer) == want, f"user {ex.user_map.ids[user]}"
        assert [item["score"] for item in answer.items] == pytest.approx(offline["final_scores"][row][: len(want)])
        assert answer.rerank == {"ran": True, "skipped_reason": None}
        assert set(answer.timings_ms) == {"retrieval", "features", "ranking", "rerank", "total"}


def test_matrix_path_equals_the_frame_path(fitted: dict) -> None:
    """RankerMatrix (no pandas) gives the exact matrix LightGBM makes of the builder's frame, and the same scores."""
    rec = online(fitted)
    assert rec._matrix is not None
    ranker, r = rec.ranking.ranker, rec.retrieval
    seen = fitted["seen"]
    users = np.r_[fitted["warm"][:40], np.flatnonzero(np.diff(rec.builder.history.indptr) > 5)[:10]]
    for user in users:
        lists = r.source_lists(np.array([user]), seen)
        items, sources = r.candidates(np.array([user]), seen)
        rows = Candidates.merged(r, int(user), items[0][items[0] >= 0], sources[0][items[0] >= 0])
        frame = system.candidate_rows(r, np.array([user]), items, sources)
        pd.testing.assert_frame_equal(rows.frame(), frame)
        built = rec.builder.build(frame, rec.ranking.features)
        want = lightgbm_matrix(ranker.prepare(built), ranker.booster)
        got = rec._matrix.build(rows.user, rows.items, rows.retrieval_score, rows.sources)
        assert got.shape == want.shape and np.array_equal(got, want, equal_nan=True), f"user {user}"
        assert np.array_equal(rec._score(got), ranker.score(built))
        merged = merge_one([lists[s][0] for s in system.SOURCES], r.k, r.weights)
        assert merged[0].tolist() == rows.items.tolist() and merged[1].tolist() == rows.sources.tolist()


def test_matrix_path_covers_every_feature(fitted: dict) -> None:
    """Every feature the builder has (item, user and pair categoricals, ages, impressions), on a ranker fitted here."""
    rec, r, seen = online(fitted), online(fitted).retrieval, fitted["seen"]
    features = rec.builder.available
    users = fitted["warm"][:60]
    items, sources = r.candidates(users, seen)
    frame = system.candidate_rows(r, users, items, sources)
    built = rec.builder.build(frame, features)
    labels = np.random.default_rng(0).random(len(frame)) < 0.05
    params = {"n_estimators": 20, "min_child_samples": 5, "early_stopping_rounds": None, "threads": 1}
    ranker = LightGBMRanker(features, params).fit(built, group_sizes(frame["user_idx"]), labels.astype(int))
    matrix = RankerMatrix(rec.builder, ranker, system.SOURCES)
    assert any(k is not None for k in ranker.kinds.values())  # categoricals are part of the comparison
    for user in users[:20]:
        one = frame[frame["user_idx"] == user].reset_index(drop=True)
        rows = rec.builder.build(one, features)
        want = lightgbm_matrix(ranker.prepare(rows), ranker.booster)
        codes = one["source"].cat.codes.to_numpy()
        got = matrix.build(int(user), one["item_idx"].to_numpy(), one["retrieval_score"].to_numpy(), codes)
        assert np.array_equal(got, want, equal_nan=True), f"user {user}"
        assert np.array_equal(ranker.booster.predict(got, num_threads=1), ranker.score(rows))


def test_merge_one_equals_merge_round_robin() -> None:
    rng = np.random.default_rng(3)
    for trial in range(200):
        depth, k = int(rng.integers(1, 30)), int(rng.integers(1, 60))
        weights = tuple(int(w) for w in rng.integers(1, 4, size=3))
        lists = [rng.integers(0, 25, size=depth) for _ in range(3)]
        for x in lists:  # -1 padding at the tail, sometimes a whole empty list
            x[int(rng.integers(0, depth + 1)) :] = -1
        got_items, got_sources = merge_one(lists, k, weights)
        if all((x < 0).all() for x in lists):  # merge_round_robin raises on no candidates at all
            assert len(got_items) == 0 and len(got_sources) == 0
            continue
        items, sources = system.merge_round_robin([x[None, :] for x in lists], k, weights)
        keep = items[0] >= 0
        assert got_items.tolist() == items[0][keep].tolist(), trial
        assert got_sources.tolist() == sources[0][keep].tolist(), trial


def test_sparse_cooccurrence_source_equals_the_dense_one(fitted: dict) -> None:
    """The dense top-k without its zero-score top-up (issue 14: that top-up is the catalogue in stored
    order, never a recommendation); a user without history gets nothing from co-occurrence."""
    rec = online(fitted)
    cooc, seen = rec.retrieval.cooccurrence, fitted["seen"]
    users = np.r_[fitted["warm"][:60], np.flatnonzero(np.diff(seen.indptr) == 0)[:5]]
    for k in (5, 200, 590):  # 590: more than some users' unseen catalogue with a positive score
        dense = cooc.recommend(users, k, seen)
        scores = cooc.scores(users)
        for row, user in enumerate(users):
            want = dense[row][(dense[row] >= 0) & (scores[row, np.maximum(dense[row], 0)] > 0)]
            assert rec._cooccurrence(int(user), k).tolist() == want.tolist(), (user, k)
            batch = system.cooccurrence_top_k(cooc, np.array([user]), k, seen, fill=False)[0]
            assert batch[batch >= 0].tolist() == want.tolist()


def test_unknown_and_cold_users_get_the_cold_start_policy(fitted: dict) -> None:
    rec = online(fitted)
    unknown = rec.recommend("no-such-user", 5)
    assert unknown.cold_start and [i["source"] for i in unknown.items] == ["popularity"] * 5
    assert _ids(unknown) == [str(fitted["ex"].item_map.ids[i]) for i in rec._popular[:5]]
    serving = ServingSpec(stage_budget_ms=GENEROUS, cold_start={"policy": "popular_in", "attribute": "language"})
    by_language = online(fitted, serving=serving).recommend("no-such-user", 5, {"language": "es"})
    items = fitted["bundle"].serving.items
    languages = items["language"].astype(str).to_numpy()[[_position(rec, i) for i in _ids(by_language)]]
    assert by_language.cold_start and set(languages) == {"es"}
    strict = ServingSpec(stage_budget_ms=GENEROUS, cold_start={"min_interactions": 10_000})
    user = fitted["ex"].user_map.ids[fitted["warm"][0]]
    answer = online(fitted, serving=strict).recommend(user, 5)
    seen = set(fitted["seen"][fitted["warm"][0]].indices)
    assert answer.cold_start and not {_position(rec, i) for i in _ids(answer)} & seen


def test_a_raising_or_slow_ranker_answers_with_retrieval_order(fitted: dict) -> None:
    user = fitted["ex"].user_map.ids[fitted["warm"][1]]
    raising = online(fitted, faults=parse_faults("ranking=raise")).recommend(user, 10)
    assert raising.level == "SIMPLE_RANKING" and len(raising.items) == 10
    budget = StageBudgets(retrieval=2000, features=1000, ranking=50)
    slow = online(fitted, serving=ServingSpec(stage_budget_ms=budget), faults=parse_faults("ranking=sleep:3000"))
    start = time.perf_counter()
    answer = slow.recommend(user, 10)
    assert answer.level == "SIMPLE_RANKING" and _ids(answer) == _ids(raising)
    assert time.perf_counter() - start < 2.5  # answered at the budget, not after the ranker's 3 s


def test_retrieval_sources_fail_alone_and_together(fitted: dict) -> None:
    user_idx = fitted["warm"][2]
    user = fitted["ex"].user_map.ids[user_idx]
    one = online(fitted, faults=parse_faults("retrieval.two_tower=raise")).recommend(user, 10)
    assert one.level == "FULL" and "two_tower" in one.retrieval_failed and len(one.items) == 10
    assert {i["source"] for i in one.items} <= {"cooccurrence", "popularity"}
    faults = "retrieval.two_tower=raise,retrieval.cooccurrence=raise,retrieval.popularity=raise"
    rec = online(fitted, faults=parse_faults(faults))
    none = rec.recommend(user, 10)
    seen = set(fitted["seen"][user_idx].indices)
    assert none.level == "POPULARITY" and {i["source"] for i in none.items} == {"popularity"}
    assert not {_position(rec, i) for i in _ids(none)} & seen


def test_the_declared_chain_decides_the_level(fitted: dict) -> None:
    user = fitted["ex"].user_map.ids[fitted["warm"][3]]
    faults = parse_faults("ranking=raise")
    skip = ServingSpec(stage_budget_ms=GENEROUS, fallback=["FULL", "POPULARITY"])
    assert online(fitted, serving=skip, faults=faults).recommend(user, 5).level == "POPULARITY"
    with pytest.raises(NoFallbackLeft, match="declares no level"):
        online(fitted, serving=ServingSpec(stage_budget_ms=GENEROUS, fallback=["FULL"]), faults=faults).recommend(
            user, 5
        )
    with pytest.raises(ValueError, match="start with FULL"):
        ServingSpec(fallback=["POPULARITY"])
    with pytest.raises(ValueError, match="in the order"):
        ServingSpec(fallback=["FULL", "POPULARITY", "SIMPLE_RANKING"])
    with pytest.raises(ValueError, match="unknown stage"):
        parse_faults("ranker=raise")


def test_rerank_is_skipped_past_its_share_of_the_sla(fitted: dict) -> None:
    user = fitted["ex"].user_map.ids[fitted["warm"][4]]
    answer = online(fitted, serving=ServingSpec(sla_ms=0.01, stage_budget_ms=GENEROUS)).recommend(user, 10)
    assert answer.level == "FULL" and answer.rerank == {"ran": False, "skipped_reason": "latency_budget"}


def test_redis_features_are_used_and_redis_down_is_stale_features(fitted: dict) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    tag = f"{fitted['ref'].tag}-unit"
    bundle, ex = fitted["bundle"], fitted["ex"]
    try:
        publish_features(client, tag, bundle.serving.builder(), ex.user_map.ids, ex.item_map.ids)
        rec = online(fitted, redis=RedisFeatures(REDIS_URL, tag, 1.0))
        user = ex.user_map.ids[fitted["warm"][5]]
        embedded = online(fitted).recommend(user, 10)
        same = rec.recommend(user, 10)
        assert same.features == "redis" and same.level == "FULL" and _ids(same) == _ids(embedded)
        # fresher counters in Redis are what the ranker sees (observed at the ranker's input)
        last = embedded.items[-1]["item_id"]
        names = rec.redis.schema["item"]
        row = np.array([0.987654 if n == "item_ctr" else 12345.0 for n in names], dtype="<f8")
        client.set(f"{prefix(tag)}:i:{last}", row.tobytes())
        seen_by_ranker: list[np.ndarray] = []
        booster = rec.ranking.ranker.booster
        original = booster.predict
        booster.predict = lambda x, **kw: (seen_by_ranker.append(np.array(x, copy=True)), original(x, **kw))[1]
        try:
            fresh = rec.recommend(user, 10)
        finally:
            del booster.predict
        assert rec._matrix_ok and len(seen_by_ranker) == 1  # the matrix path, as verified on the first call
        matrix, column = seen_by_ranker[0], rec._matrix.column
        assert fresh.features == "redis" and fresh.level == "FULL"
        assert (matrix[:, column["item_ctr"]] == 0.987654).sum() == 1
        assert (matrix[:, column["item_popularity"]] == 12345.0).sum() == 1
        down = online(fitted, redis=RedisFeatures("redis://127.0.0.1:1/0", tag, 0.2)).recommend(user, 10)
        assert down.level == "STALE_FEATURES" and down.features == "embedded" and _ids(down) == _ids(embedded)
    finally:
        keys = list(client.scan_iter(f"{prefix(tag)}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        client.close()


def test_serving_state_is_covered_by_the_manifest(fitted: dict, tmp_path: Path) -> None:
    ref = fitted["ref"]
    assert {f for f in ref.manifest.files if f.startswith("serving/")} >= {
        "serving/state.json",
        "serving/seen.npz",
        "serving/cooccurrence.npz",
        "serving/items.parquet",
    }
    copy = tmp_path / "copy"
    shutil.copytree(ref.path, copy)
    tampered = type(ref)(ref.tag, copy, ref.manifest)
    target = copy / "serving" / "popularity.npy"
    target.write_bytes(target.read_bytes()[:-8] + b"\xff" * 8)  # same size, other counts
    with pytest.raises(IntegrityError):
        load_recsys_bundle(tampered)

"""The StreamRec system pieces: merged retrieval, a failing source, and the one-bundle load checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data.synthetic import streamrec
from pipeline.recsys import ranking_features, system
from pipeline.recsys.bundle import load_recsys_bundle, write_recsys_dir
from pipeline.recsys.examples import FeedbackColumns, build_examples
from pipeline.recsys.index import IndexMismatchError, build_item_index
from pipeline.recsys.two_tower import TwoTowerModel, TwoTowerParams
from pipeline.registry import BundleStore, IntegrityError, save_bundle
from pipeline.spec.catalog import RANKING_FEATURES
from pipeline.spec.schema import ScenarioSpec


def test_merge_interleaves_by_weight_without_repeats() -> None:
    a = np.array([[1, 2, 3, 4], [5, 6, -1, -1]])
    b = np.array([[2, 9, 8, 7], [5, 7, 1, 0]])
    items, source = system.merge_round_robin([a, b], 5, (2, 1))
    # round 1: a1 a2 b2(dup, skipped); round 2: a3 a4 b9; ...
    assert items[0].tolist() == [1, 2, 3, 4, 9]
    assert source[0].tolist() == [0, 0, 0, 0, 1]
    assert items[1].tolist() == [5, 6, 7, 1, 0]
    assert source[1].tolist() == [0, 0, 1, 1, 1]
    assert len(set(items[0])) == 5


def test_merge_of_empty_lists_is_all_padding() -> None:
    empty = np.full((3, 4), -1)
    items, source = system.merge_round_robin([empty, empty], 5)
    assert items.shape == source.shape == (3, 5)
    assert (items == -1).all() and (source == -1).all()
    items, _ = system.merge_round_robin([np.zeros((0, 4), dtype=np.int64)], 5)
    assert items.shape == (0, 5)


def test_ranking_feature_names_in_the_spec_catalog_match_the_builder() -> None:
    assert tuple(ranking_features.FEATURES) == RANKING_FEATURES


def test_catalog_knob_sizes_items_and_leaves_the_default_alone() -> None:
    default = streamrec.generate(2000, 5, ScenarioSpec())
    assert len(default["items"]) == 50 and len(default["users"]) == 100
    sized = streamrec.generate(2000, 5, ScenarioSpec(items=300, users=120))
    assert len(sized["items"]) == 300 and len(sized["users"]) == 120
    assert sized["interactions"]["item_id"].max() < 300


@pytest.fixture(scope="module")
def fitted() -> dict:
    tables = streamrec.generate(6000, 3, ScenarioSpec(items=200))
    log, items = tables["interactions"], tables["items"]
    ex = build_examples(log, items["item_id"].to_numpy(), FeedbackColumns("user_id", "item_id", "timestamp", "clicked"))
    train = log.iloc[ex.train.rows][["user_id", "item_id"]].reset_index(drop=True)

    def fit(seed: int) -> TwoTowerModel:
        params = TwoTowerParams(embedding_dim=8, hidden_dim=16, epochs=1, seed=seed)
        return TwoTowerModel(params=params).fit(train, items=items[["item_id"]])

    model, other = fit(0), fit(1)
    return {"ex": ex, "model": model, "index": build_item_index(model), "other_index": build_item_index(other)}


def test_a_failing_source_leaves_the_others_answering(fitted: dict) -> None:
    ex = fitted["ex"]
    retrieval = system.Retrieval.fit(fitted["model"], fitted["index"], ex, 50)
    retrieval.broken = frozenset({"two_tower"})
    items, source = retrieval.candidates(ex.test_users, ex.seen)
    assert "two_tower" in retrieval.failures
    assert (items[:, :10] >= 0).all()
    assert set(np.unique(source[source >= 0])) <= {1, 2}
    seen = ex.seen[ex.test_users]
    for row, user_items in enumerate(items[:5]):
        assert not set(user_items[user_items >= 0]) & set(seen[row].indices)


def _bundle(tmp_path: Path, fitted: dict, index_key: str = "index"):
    ex = fitted["ex"]
    source = tmp_path / "src"
    write_recsys_dir(
        source,
        fitted["model"],
        fitted[index_key],
        None,
        pd.DataFrame({"item_id": ex.item_map.ids}),
        pd.DataFrame({"user_id": ex.user_map.ids}),
        "{}",
        "name: t\n",
        {"ndcg@10": 0.1},
        {"user_column": "user_id"},
    )
    store = BundleStore(tmp_path / "store")
    return save_bundle("recsys-test", source, spec_sha256="0" * 64, data_fingerprint="x", code_version="t", store=store)


def test_bundle_round_trip_and_sha256_check(tmp_path: Path, fitted: dict) -> None:
    ref = _bundle(tmp_path, fitted)
    loaded = load_recsys_bundle(ref)
    assert loaded.model.fingerprint() == fitted["model"].fingerprint()
    assert loaded.index.ntotal == fitted["ex"].n_items and loaded.ranker is None
    weights = ref.path / "retrieval" / "model" / "weights.pt"
    weights.write_bytes(weights.read_bytes() + b"x")
    with pytest.raises(IntegrityError):
        load_recsys_bundle(ref)


def test_an_index_from_another_model_is_refused(tmp_path: Path, fitted: dict) -> None:
    with pytest.raises(IndexMismatchError):
        _bundle(tmp_path / "a", fitted, "other_index")  # save_retrieval refuses to write the pair
    ref = _bundle(tmp_path / "b", fitted)
    foreign = tmp_path / "foreign"
    fitted["other_index"].save(foreign)
    # swap the index files AND their manifest hashes, so only the model/index binding can catch it
    target = ref.path / "retrieval" / "index"
    shutil.rmtree(target)
    shutil.copytree(foreign, target)
    from pipeline.recsys.index import load_retrieval

    with pytest.raises(IndexMismatchError):
        load_retrieval(ref.path / "retrieval")

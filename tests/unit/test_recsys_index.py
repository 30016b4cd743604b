"""FAISS item indexes: each type agrees with brute force, excludes seen items, and only loads for its model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest

from pipeline.data.synthetic.streamrec import generate
from pipeline.models.base import ChecksumError, sha256_file
from pipeline.recsys.index import (
    INDEX_FILE,
    META_FILE,
    IndexMismatchError,
    IndexParams,
    build_index,
    build_item_index,
    embedding_fingerprint,
    load_index,
    load_retrieval,
    save_retrieval,
)
from pipeline.recsys.two_tower import TwoTowerError, TwoTowerModel, TwoTowerParams
from pipeline.registry.manifest import check_relpath
from pipeline.spec.schema import IndexSpec, ScenarioSpec

PARAMS = {
    "flat": IndexParams(type="flat"),
    "hnsw": IndexParams(type="hnsw", hnsw_m=16, hnsw_ef_construction=100, hnsw_ef_search=64),
    "ivf": IndexParams(type="ivf", ivf_nlist=32, ivf_nprobe=8),
}


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force(queries: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ items.T), axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread() -> Iterator[None]:
    """The CI box has 2 shared cores; OpenMP spinning on a busy core makes a 3,000-item build take seconds."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


@pytest.fixture(scope="module")
def catalogue() -> tuple[np.ndarray, np.ndarray]:
    """3,000 unit item vectors in 40 taste clusters, as trained embeddings are, and 200 queries near items.

    (Uniformly random vectors in 32-d have no cluster structure at all, which no IVF index can exploit.)
    """
    rng = np.random.default_rng(1)
    centroids = rng.normal(size=(40, 32))
    items = centroids[rng.integers(0, 40, size=3_000)] + 0.35 * rng.normal(size=(3_000, 32))
    items = (items / np.linalg.norm(items, axis=1, keepdims=True)).astype(np.float32)
    queries = items[rng.integers(0, len(items), size=200)] + 0.5 * unit_rows(200, 32, seed=3)
    return items, queries / np.linalg.norm(queries, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame]:
    return generate(5_000, 4, ScenarioSpec())


def fit(data: dict[str, pd.DataFrame], seed: int) -> TwoTowerModel:
    params = TwoTowerParams(embedding_dim=8, hidden_dim=16, epochs=1, batch_size=256, seed=seed)
    return TwoTowerModel(params=params, threads=1).fit(data["interactions"], items=data["items"], label_col="clicked")


@pytest.fixture(scope="module")
def model(data: dict[str, pd.DataFrame]) -> TwoTowerModel:
    return fit(data, seed=0)


@pytest.fixture(scope="module")
def other_model(data: dict[str, pd.DataFrame]) -> TwoTowerModel:
    return fit(data, seed=1)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_each_index_type_matches_brute_force(kind: str, catalogue: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = catalogue
    index = build_index(items, PARAMS[kind])
    assert (index.ntotal, index.dim) == items.shape
    scores, found = index.search(queries, 10)
    truth = brute_force(queries, items, 10)
    if kind == "flat":
        np.testing.assert_array_equal(found, truth)
        np.testing.assert_allclose(scores, np.take_along_axis(queries @ items.T, truth, axis=1), atol=1e-5)
    else:
        assert recall_at(found, truth) >= 0.9
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_exclude_drops_seen_items_and_still_fills_k(kind: str, catalogue: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = catalogue
    queries = queries[:50]
    index = build_index(items, PARAMS[kind])
    truth = brute_force(queries, items, 30)
    # Exclude each query's true top 5 and a few random items; the next best items must come up.
    rng = np.random.default_rng(0)
    exclude = [set(truth[i, :5].tolist()) | set(rng.integers(0, len(items), 3).tolist()) for i in range(len(queries))]
    exclude[0] = set()
    exclude[1] = None  # type: ignore[call-overload]
    _, found = index.search(queries, 10, exclude=exclude)
    assert found.shape == (50, 10) and (found >= 0).all()
    for row, banned in enumerate(exclude):
        assert not set(found[row].tolist()) & (banned or set())
    expected = [[i for i in truth[row] if i not in (exclude[row] or set())][:10] for row in range(len(queries))]
    if kind == "flat":
        np.testing.assert_array_equal(found, np.array(expected))
    else:
        assert recall_at(found, np.array(expected)) >= 0.9


def test_short_results_are_padded(catalogue: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = catalogue
    index = build_index(items[:5], PARAMS["flat"])
    scores, found = index.search(queries[:2], 4, exclude=[{0, 1, 2}, set()])
    assert found[0].tolist()[2:] == [-1, -1] and np.isneginf(scores[0, 2:]).all()
    assert sorted(found[0, :2].tolist()) == [3, 4] and (found[1] >= 0).all()
    with pytest.raises(TwoTowerError, match="dimension"):
        index.search(queries[:, :8], 4)


def test_ivf_clamps_lists_to_the_catalogue_and_records_it(catalogue: tuple[np.ndarray, np.ndarray]) -> None:
    items, _ = catalogue
    index = build_index(items[:20], IndexParams(type="ivf", ivf_nlist=100, ivf_nprobe=100))
    assert index.params.ivf_nlist == 20
    np.testing.assert_allclose(index.reconstruct_all(), items[:20])


def test_params_from_the_spec() -> None:
    spec = IndexSpec(type="hnsw", hnsw_m=8)
    assert IndexParams.from_spec(spec) == IndexParams(type="hnsw", hnsw_m=8)
    assert IndexParams.from_spec(spec, hnsw_ef_search=32).hnsw_ef_search == 32
    with pytest.raises(TwoTowerError, match="unknown index type"):
        IndexParams(type="lsh")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_roundtrip(kind: str, model: TwoTowerModel, tmp_path: Path) -> None:
    index = build_item_index(model, PARAMS[kind])
    files = index.save(tmp_path)
    assert files == {name: sha256_file(tmp_path / name) for name in (INDEX_FILE, META_FILE)}
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["type"] == kind and meta["ntotal"] == len(model.item_ids) and meta["dim"] == 8
    assert meta["embedding_fingerprint"] == embedding_fingerprint(model.item_embeddings())
    assert meta["model_fingerprint"] == model.fingerprint()

    loaded = load_index(tmp_path, model)
    assert loaded.params == index.params
    users, _ = model.user_embeddings(model.user_ids[:20])
    for a, b in zip(index.search(users, 10), loaded.search(users, 10), strict=True):
        np.testing.assert_array_equal(a, b)


def test_index_of_another_model_is_refused(model: TwoTowerModel, other_model: TwoTowerModel, tmp_path: Path) -> None:
    build_item_index(other_model).save(tmp_path)
    with pytest.raises(IndexMismatchError) as info:
        load_index(tmp_path, model)
    assert other_model.fingerprint() in str(info.value) and model.fingerprint() in str(info.value)


def test_unstamped_index_of_other_embeddings_is_refused(
    model: TwoTowerModel, other_model: TwoTowerModel, tmp_path: Path
) -> None:
    """Built from raw vectors (no model fingerprint): the embedding fingerprint still catches the swap."""
    build_index(other_model.item_embeddings(), IndexParams()).save(tmp_path)
    with pytest.raises(IndexMismatchError, match="item embeddings") as info:
        load_index(tmp_path, model)
    assert embedding_fingerprint(model.item_embeddings()) in str(info.value)
    assert load_index(tmp_path, other_model).ntotal == len(other_model.item_ids)


def test_tampered_index_file_is_refused(model: TwoTowerModel, tmp_path: Path) -> None:
    build_item_index(model).save(tmp_path)
    path = tmp_path / INDEX_FILE
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError):
        load_index(tmp_path, model)


def test_retrieval_bundle_is_one_directory(model: TwoTowerModel, other_model: TwoTowerModel, tmp_path: Path) -> None:
    index = build_item_index(model, PARAMS["hnsw"])
    files = save_retrieval(tmp_path / "bundle", model, index)
    assert set(files) == {"model/weights.pt", "model/model.json", "index/index.faiss", "index/index.json"}
    assert all(check_relpath(rel) == rel for rel in files)  # valid registry bundle paths
    loaded_model, loaded_index = load_retrieval(tmp_path / "bundle", files)
    np.testing.assert_array_equal(loaded_model.item_embeddings(), model.item_embeddings())
    assert loaded_index.params == index.params

    with pytest.raises(IndexMismatchError):
        save_retrieval(tmp_path / "mixed", other_model, index)
    (tmp_path / "bundle" / "model" / "model.json").write_text("{}")
    with pytest.raises(ChecksumError):
        load_retrieval(tmp_path / "bundle", files)

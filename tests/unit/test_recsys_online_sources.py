"""/recommend serves a bundle with declared retrieval.sources: the same merge, ranker input and list as batch.

The fitted sources travel in the bundle (serving/sources/, no refit at start-up), so ALS factors
and item-kNN neighbours online are the ones the batch lists came from. No source is a two-tower,
so none is trained: the bundle has no retrieval/ model and index, and serving needs none.
"""

from __future__ import annotations

import numpy as np
import pytest

from flows.recsys import fit_retrieval
from flows.validate import check_contract
from pipeline.data.prepare import load_frame
from pipeline.recsys import system
from pipeline.recsys.bundle import load_recsys_bundle
from pipeline.recsys.fallback import parse_faults
from pipeline.recsys.online import OnlineRecommender
from pipeline.recsys.package import write_system_bundle
from pipeline.registry import BundleStore, save_bundle
from pipeline.spec.load import load_spec
from pipeline.spec.schema import ServingSpec
from tests.unit.test_recsys_online import GENEROUS, TINY_SPEC

SOURCES = """\
retrieval:
  sources:
    - {type: item_knn, weight: 2, params: {neighbours: 50}}
    - {type: als, name: mf, params: {factors: 8, iterations: 3}}
    - {type: popularity}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = tmp_path_factory.mktemp("spec") / "recsources.yaml"
    path.write_text(TINY_SPEC + SOURCES)
    loaded = load_spec(path)
    spec = loaded.spec
    accepted = check_contract.fn(load_frame(spec, loaded.base_dir), spec).accepted
    tables = system.load_side_tables(spec, loaded.base_dir)
    ex = system.make_examples(spec, accepted, tables)
    builder = system.feature_builder(spec, tables, ex)
    model, index, retrieval = fit_retrieval.fn(spec, accepted, tables, ex)  # keel run's step
    assert model is None and index is None and not retrieval.has_two_tower  # no two_tower source declared
    ranking = system.train_ranker(spec, builder, retrieval, ex, 0)
    attribute, exposure = system.diversity_attribute(spec, tables, ex)
    cold = system.cold_start_for(spec, tables, ex, retrieval)
    offline = system.Recommender(spec, retrieval, builder, ranking, attribute, exposure, cold_start=cold)
    source = tmp_path_factory.mktemp("online") / "src"
    write_system_bundle(source, loaded, model, index, offline, tables, ex, {})
    ref = save_bundle("sources-test", source, spec_sha256="0" * 64, data_fingerprint="t", code_version="t",
                      store=BundleStore(source.parent / "store"))  # fmt: skip
    seen = system.all_positive_matrix(ex)
    warm = np.flatnonzero(np.diff(seen.indptr) > 0)
    return {"ref": ref, "offline": offline, "ex": ex, "seen": seen, "warm": warm, "source": source}


def test_declared_sources_answer_with_the_batch_list(served: dict) -> None:
    ex, users = served["ex"], served["warm"][:20]
    offline = served["offline"].recommend(users, served["seen"], 10)
    labels = served["offline"].source_labels
    rec = OnlineRecommender(served["ref"].tag, load_recsys_bundle(served["ref"]), ServingSpec(stage_budget_ms=GENEROUS))
    assert rec.retrieval.names == ("item_knn", "mf", "popularity") and rec.retrieval.weights == (2, 1, 1)
    for row, user in enumerate(users):
        answer = rec.recommend(ex.user_map.ids[user], 10)
        want = [str(ex.item_map.ids[i]) for i in offline["final"][row] if i >= 0]
        assert answer.level == "FULL" and not answer.cold_start and not answer.retrieval_failed
        assert [i["item_id"] for i in answer.items] == want, f"user {ex.user_map.ids[user]}"
        assert [i["source"] for i in answer.items] == [labels[c] for c in offline["final_sources"][row][: len(want)]]
        assert [i["score"] for i in answer.items] == pytest.approx(offline["final_scores"][row][: len(want)])


def test_the_fitted_sources_travel_in_the_bundle(served: dict) -> None:
    files = sorted(str(p.relative_to(served["source"])) for p in (served["source"] / "serving" / "sources").rglob("*"))
    assert "serving/sources/mf/item_factors.npy" in files and "serving/sources/item_knn/similarity.npz" in files
    assert not (served["source"] / "retrieval").exists()  # no two-tower, no FAISS index
    rec = OnlineRecommender(served["ref"].tag, load_recsys_bundle(served["ref"]), ServingSpec(stage_budget_ms=GENEROUS))
    fitted = served["offline"].retrieval.extra["mf"].scorer
    np.testing.assert_array_equal(rec.retrieval.extra["mf"].scorer.item_factors, fitted.item_factors)
    knn = rec.retrieval.extra["item_knn"].scorer.similarity
    assert (knn != served["offline"].retrieval.extra["item_knn"].scorer.similarity).nnz == 0


def test_a_failing_declared_source_is_left_out(served: dict) -> None:
    bundle = load_recsys_bundle(served["ref"])
    rec = OnlineRecommender(
        served["ref"].tag, bundle, ServingSpec(stage_budget_ms=GENEROUS), faults=parse_faults("retrieval.mf=raise")
    )
    user = served["ex"].user_map.ids[served["warm"][0]]
    answer = rec.recommend(user, 10)
    assert (
        "mf" in answer.retrieval_failed
        and answer.items
        and {i["source"] for i in answer.items}
        <= {
            "item_knn",
            "popularity",
        }
    )

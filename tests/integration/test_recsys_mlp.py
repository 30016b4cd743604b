"""`keel run` with the torch MLP ranker (a Hydra override, no code): trains, gates, registers, batch-scores."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.recsys.bundle import load_recsys_bundle
from pipeline.recsys.ranker import MLPRanker
from pipeline.registry import BundleStore
from pipeline.registry.aliases import aliases

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamrec.yaml")
SMALL = ["data.rows=20000", "data.scenario.items=1500", "model.params.epochs=2"]

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))


def keel(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def test_mlp_ranker_trains_gates_registers_and_batch_scores(tmp_path: Path) -> None:
    code, result = keel("run", SPEC, *SMALL, "ranker.family=mlp_ranker")
    assert code == 0, result
    ranker = result["ranker"]
    assert ranker["family"] == "mlp_ranker"
    # it trained (early stopping picked an epoch) and was kept because it beat retrieval order on held-out users
    assert ranker["best_iteration"] >= 1 and ranker["used"], ranker
    assert ranker["valid_ndcg@10_ranker"] > ranker["valid_ndcg@10_retrieval_order"]
    assert result["gates"]["passed"] and result["promoted"]
    assert {g["name"] for g in result["gates"]["gates"]} >= {"recall@500", "hit@10", "ndcg@10"}

    store = BundleStore(tmp_path / "bentoml")
    assert aliases("streamrec", store=store)["champion"] == result["bundle"]
    ref = store.get(result["bundle"])
    assert ref.manifest.gate_passed and ref.manifest.extra["ranker_used"]
    bundle = load_recsys_bundle(ref)
    assert isinstance(bundle.ranker, MLPRanker) and bundle.ranker.features == ranker["features"]

    batch = pd.read_parquet(result["scoring"]["parquet"])
    assert batch["user_id"].nunique() == result["scoring"]["users"] == len(bundle.users)
    assert batch.groupby("user_id")["rank"].max().max() == 10
    assert not batch.duplicated(["user_id", "item_id"]).any()
    assert np.isfinite(batch["score"]).all()

"""Real HTTP: `keel run` of a spec with declared retrieval.sources (item_knn + popularity, no two-tower),
then `bentoml serve` answers POST /recommend with the same top-K as the run's batch lists."""

from __future__ import annotations

import contextlib
import io
import json

import httpx
import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.registry import BundleStore
from tests.integration.serving_fixtures import running_service
from tests.unit.test_recsys_online import TINY_SPEC

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

# a generous SLA: on a busy box the re-ranker must not be skipped for latency (batch never skips it)
SPEC = TINY_SPEC.replace("  sla_ms: 200\n", "  sla_ms: 60000\n") + (
    "retrieval:\n  sources:\n    - {type: item_knn, weight: 2, params: {neighbours: 50}}\n    - {type: popularity}\n"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("sources")
    spec = base / "recsources.yaml"
    spec.write_text(SPEC)
    home = base / "bentoml"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.setenv("BENTOML_HOME", str(home))
        mp.delenv("KEEL_REDIS_URL", raising=False)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["run", str(spec), "--json"])
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert code == 0 and result["promoted"], result
    return {"spec": spec, "home": home, "result": result, "run_dir": base / result["run_dir"]}


def test_a_spec_with_only_classical_sources_never_trains_the_two_tower(run: dict) -> None:
    report = json.loads((run["run_dir"] / "run_report.json").read_text())
    assert report["model_family"] == "item_knn+popularity" and "two_tower_epochs" not in report["retrieval"]
    ref = BundleStore(run["home"]).get(run["result"]["bundle"])
    assert not any(f.startswith("retrieval/") for f in ref.manifest.files)  # no towers, no FAISS index


def test_recommend_serves_declared_sources_with_the_batch_lists(run: dict) -> None:
    batch = pd.read_parquet(run["run_dir"] / "recommendations.parquet")
    warm = batch[~batch["source"].astype(str).str.startswith("cold_start:")]
    assert set(warm["source"]) <= {"item_knn", "popularity"}
    users = warm["user_id"].drop_duplicates().to_numpy()
    chosen = users[np.linspace(0, len(users) - 1, 5).astype(int)]
    service = running_service(run["home"], {"KEEL_SPEC": str(run["spec"])})
    with service as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        for user in chosen:
            r = client.post("/recommend", json={"user_id": str(user), "k": 10})
            assert r.status_code == 200, r.text
            body = r.json()
            want = batch[batch["user_id"] == user].sort_values("rank")
            assert body["level"] == "FULL" and body["cold_start"] is False, body
            assert [i["item_id"] for i in body["items"]] == [str(i) for i in want["item_id"]], user
            assert [i["source"] for i in body["items"]] == want["source"].astype(str).tolist()

"""StreamRec's batch top-K on a real LocalCluster of 2 worker processes (issue 17): no mocks.

The lists the workers compute from the registered bundle (each worker loads it once, sha256-checked)
must be the rows `keel run` wrote locally from the recommender in memory: same rows, same order,
same values, committed as one dataset.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.registry import BundleStore
from pipeline.spec.load import load_spec

pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamrec.yaml")
SMALL = ["data.rows=20000", "data.scenario.items=1500", "model.params.epochs=2"]  # as test_recsys_cli
DASK = ["runtime=dask_local", "runtime.dask.local.memory_limit=3GiB"]  # torch + FAISS + ranker: ~1.1 GB a worker

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def keel(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One local `keel run` of a small StreamRec: the champion bundle and its batch lists."""
    root = tmp_path_factory.mktemp("dask-topk")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("BENTOML_HOME", str(root / "bentoml"))
        code, result = keel("run", SPEC, *SMALL)
    assert code == 0 and result["promoted"], result
    return {"root": root, "result": result, "store": BundleStore(root / "bentoml")}


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client

    from pipeline.distributed.cluster import local_cluster

    with (
        local_cluster(2, 1, "3GiB") as c,
        Client(c) as client,
    ):
        yield c, client


def test_batch_top_k_on_dask_equals_the_local_lists(local_run: dict, cluster, tmp_path: Path) -> None:
    from pipeline.distributed.topk import batch_top_k_on_dask, loaded_recommenders

    dask_cluster, client = cluster
    result = local_run["result"]
    tag, users = result["bundle"], result["scoring"]["users"]
    overrides = [*SMALL, "runtime=dask_local", f"runtime.dask.address={dask_cluster.scheduler_address}"]
    spec = load_spec(SPEC, overrides).spec
    target = tmp_path / "recommendations.parquet"
    with contextlib.chdir(local_run["root"]):
        summary = batch_top_k_on_dask(spec, local_run["store"], tag, users, target, progress=False, users_per_part=300)
    expected = pd.read_parquet(local_run["root"] / result["scoring"]["parquet"])
    got = pd.read_parquet(target)
    assert len(expected) > 1000 and summary["rows"] == len(expected) and summary["users"] == users
    pd.testing.assert_frame_equal(got, expected)  # same rows, order and values
    assert summary["parts"] == -(-users // 300) and sorted(p.name for p in target.glob("part-*.parquet")) == [
        f"part-{i:05d}.parquet" for i in range(summary["parts"])
    ]
    manifest = json.loads((target / "_manifest.json").read_text())
    assert manifest["complete"] and manifest["rows"] == len(expected)
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]
    loads = client.run(loaded_recommenders)
    assert len(loads) == 2 and all(tags.count(tag) <= 1 for tags in loads.values())  # once per worker process
    assert sum(tags.count(tag) for tags in loads.values()) == 2  # both workers computed lists


def test_keel_run_on_dask_writes_the_lists_on_the_workers(local_run: dict, tmp_path: Path, monkeypatch) -> None:
    """`keel run specs/streamrec.yaml runtime=dask_local`: the batch step runs on one cluster, recorded in run.json."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    code, result = keel("run", SPEC, *SMALL, *DASK)
    assert code == 0 and result["promoted"], result
    scoring = result["scoring"]
    assert scoring["executor"] == "dask" and Path(scoring["parquet"]).is_dir()
    lists = pd.read_parquet(scoring["parquet"])
    local = pd.read_parquet(local_run["root"] / local_run["result"]["scoring"]["parquet"])
    assert len(lists) == scoring["rows"] and lists["user_id"].nunique() == scoring["users"]
    assert list(lists.columns) == list(local.columns) and lists.dtypes.equals(local.dtypes)
    assert (lists.groupby("user_id", sort=False)["rank"].max() <= 10).all()
    cluster = json.loads((Path(result["run_dir"]) / "run.json").read_text())["cluster"]
    assert cluster["kind"] == "local" and cluster["n_workers"] == 2
    assert [s["step"] for s in cluster["steps"]] == ["top_k"]

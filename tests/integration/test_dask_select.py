"""Cross-validation fits on a real LocalCluster (2 worker processes): the same selection table as in-process.

The candidates, search points and folds of a table shaped like credit's (missing values, a categorical with
unused levels) are fitted on the workers from one Parquet copy of the split; every fold's metrics, the kept
trees, the winner and its point must equal the local run's exactly: as plain Dask tasks (a library call),
and inside a flow run as one Prefect task per fit on prefect-dask's DaskTaskRunner, each a task run of the flow.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.models.select import select_model
from pipeline.spec.load import load_spec

pytest.importorskip("distributed")
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CREDIT = REPO / "examples" / "credit" / "credit.yaml"
SEARCH = [
    "model.features=[Seniority,Amount,Home,Income]",
    "candidates.0.features=[Seniority,Amount,Income]",
    "model.search={num_leaves: [7, 15], learning_rate: [0.1]}",
    "candidates.0.search={C: [0.1, 1.0]}",
]
SELECT = {"metric": "auc", "folds": 3, "seed": 7, "inner_valid_fraction": 0.15}


def credit_like(n: int = 1200) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 1200
    frame = pd.DataFrame(
        {
            "Seniority": rng.normal(size=n),
            "Amount": rng.normal(size=n),
            "Home": pd.Categorical(
                rng.choice(["owner", "rent", "parents", "other"], n),
                ["ignore", "other", "owner", "parents", "priv", "rent"],  # two levels never seen
            ),
            "Income": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(size=n)),
        }
    )
    logit = frame["Seniority"] - 0.5 * frame["Amount"] + (frame["Home"] == "rent") * 0.8
    return frame, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def test_selection_on_the_cluster_equals_the_local_one(tmp_path: Path) -> None:
    from pipeline.distributed.select import dask_fold_runner

    frame, y = credit_like()
    overrides = [*SEARCH, "runtime=dask_local", "runtime.dask.local.memory_limit=1GiB"]
    spec = load_spec(CREDIT, [*overrides, f"runtime.runs_dir={tmp_path / 'runs'}"]).spec
    candidates = [spec.model, *spec.candidates]
    here = select_model(candidates, frame, y, **SELECT)
    there = select_model(candidates, frame, y, **SELECT, fold_runner=dask_fold_runner(spec.runtime))
    assert there.table == here.table and there.index == here.index
    assert there.spec == here.spec and len(here.table[0]["search"]) == 2  # every point, on both sides
    assert not any((tmp_path / "runs").glob("keel-cv-*"))  # the split's copy is gone with the selection


@pytest.mark.usefixtures("prefect_api")
def test_in_a_flow_run_every_fit_is_a_prefect_task_on_the_workers(tmp_path: Path, capsys) -> None:
    """`runtime.executor: dask` inside a flow run (as `keel run`'s select_challenger): 4 configurations x 3 folds
    are 12 `cv-fit` task runs of that flow, Completed, run by the cluster's worker processes; the table is the
    local one. With runtime.dask.cv_tasks=dask (in the same flow run: no more task runs) and outside a flow run the
    same runner uses plain Dask tasks and says why."""
    from distributed import Client
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.context import FlowRunContext

    from flows.cv_dask import prefect_fold_runner
    from pipeline.distributed.cluster import local_cluster
    from pipeline.distributed.select import cached_splits

    frame, y = credit_like()
    with local_cluster(2, 1, "1GiB") as cluster, Client(cluster) as client:
        address = ["runtime=dask_local", f"runtime.dask.address={cluster.scheduler_address}"]
        spec = load_spec(CREDIT, [*SEARCH, *address, f"runtime.runs_dir={tmp_path / 'runs'}"]).spec
        candidates = [spec.model, *spec.candidates]
        runner = prefect_fold_runner(spec.runtime)
        plain = load_spec(CREDIT, [*SEARCH, *address, "runtime.dask.cv_tasks=dask"]).spec.runtime

        @flow(name="keel-cv-on-dask-test")
        def selection():
            chosen = select_model(candidates, frame, y, **SELECT, fold_runner=runner)
            as_dask = select_model(candidates, frame, y, **SELECT, fold_runner=prefect_fold_runner(plain))
            return chosen, as_dask, FlowRunContext.get().flow_run.id

        there, as_dask, flow_run_id = selection()
        read = client.run(cached_splits)
        outside = select_model(candidates, frame, y, **SELECT, fold_runner=runner)
    here = select_model(candidates, frame, y, **SELECT)
    assert there.table == here.table and there.index == here.index
    assert outside.table == here.table and as_dask.table == here.table
    assert sorted(len(paths) for paths in read.values()) == [1, 1], read  # both workers read a split and fitted
    printed = capsys.readouterr().out
    assert "12 fits as Dask tasks, not Prefect tasks: runtime.dask.cv_tasks is dask" in printed
    assert "12 fits as Dask tasks, not Prefect tasks: not inside a Prefect flow run" in printed
    with get_client(sync_client=True) as api:
        deadline = time.monotonic() + 60
        while True:  # a worker's task run states reach the API as events, written a moment later
            runs = api.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            fits = [r for r in runs if " fold " in r.name]
            done = [r for r in fits if r.state is not None and r.state.is_completed()]
            if len(done) == 12 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert len(done) == 12, sorted((r.name, r.state_name) for r in fits)
    names = sorted(r.name for r in done)
    assert names[0] == "lightgbm 1/4 fold 1/3" and names[-1] == "logistic 4/4 fold 3/3", names

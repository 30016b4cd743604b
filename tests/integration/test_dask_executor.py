"""runtime.executor dask (issue 17) against a real LocalCluster of 2 worker processes: no mocks.

The Dask path must give what the local path gives on the same partitioned data: the same quarantined rows
and reasons, counts that add up per partition and in total, the same reference-profile bins and PSI, the
same scores and ranks; and a worker killed mid-run must not change the output or leave a partial one.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.contracts.profile import build_profile
from pipeline.contracts.psi import psi_against
from pipeline.contracts.result import ROW_COL
from pipeline.contracts.validate import validate_frame
from pipeline.data.partitioned import list_partitions
from pipeline.data.sources import load_source
from pipeline.data.synthetic.streamflow import generate
from pipeline.distributed.profile import build_profile_distributed, psi_against_distributed
from pipeline.distributed.score import loaded_bundles, score_partitions
from pipeline.distributed.validate import validate_partitions
from pipeline.registry import BundleStore
from pipeline.registry.tabular import load_tabular_bundle
from pipeline.scoring.command import score_frame
from pipeline.spec.load import load_spec
from pipeline.spec.schema import ScenarioSpec

pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamflow_churn.yaml")
DASK = ["runtime=dask_local", "runtime.dask.local.memory_limit=1GiB"]

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def keel(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def write_parts(frame: pd.DataFrame, root: Path, parts: int) -> Path:
    root.mkdir(parents=True)
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[rows].reset_index(drop=True).to_parquet(root / f"part-{i:03d}.parquet", index=False)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """4000 rows with bad rows and duplicate ids across partitions, in 3 Parquet files; and a drifted copy."""
    root = tmp_path_factory.mktemp("dask")
    frame = generate(4000, 5, ScenarioSpec(corrupt_fraction=0.02))
    drifted = generate(3000, 9, ScenarioSpec(unit_bug={"avg_session_minutes": 60.0}, drift={"monthly_charges": 0.5}))
    return {
        "root": root,
        "table": write_parts(frame, root / "table", 3),
        "drifted": write_parts(drifted, root / "drifted", 2),
    }


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    from pipeline.distributed.cluster import local_cluster

    with (
        local_cluster(2, 1, "1GiB") as cluster,
        Client(cluster) as c,
    ):
        yield c


def test_validate_cli_on_dask_matches_the_local_path(data: dict, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, result = keel("validate", SPEC, f"data.source={data['table']}", *DASK)
    assert code == 0, result
    run = Path(result["run_dir"])
    loaded = load_spec(SPEC, [f"data.source={data['table']}"])
    local = validate_frame(load_source(loaded.spec.data, loaded.base_dir), loaded.spec.contract)
    assert local.check_counts.get("subscriber_id:duplicate", 0) > 0  # the data has repeats across partitions
    assert result["rows_in"] == 4000 == result["rows_accepted"] + result["rows_quarantined"]
    assert (result["rows_accepted"], result["rows_quarantined"]) == (local.rows_accepted, local.rows_quarantined)
    report = json.loads((run / "validation_report.json").read_text())
    assert report["contract"]["check_counts"] == local.check_counts
    per_part = report["dask"]["partitions"]
    assert len(per_part) == 3 and all(p["rows_in"] == p["accepted"] + p["quarantined"] for p in per_part)
    assert sum(p["rows_in"] for p in per_part) == 4000
    quarantine = pd.read_parquet(run / "quarantine").sort_values(ROW_COL).reset_index(drop=True)
    assert sorted(p.name for p in (run / "quarantine").iterdir()) == [f"part-{i:05d}.parquet" for i in range(3)]
    pd.testing.assert_frame_equal(quarantine, local.quarantined.reset_index(drop=True))
    profile = json.loads((run / "reference_profile.json").read_text())
    expected = json.loads(build_profile(local.accepted, loaded.spec.contract).to_json())
    for name, column in expected["numeric"].items():
        got = profile["numeric"][name]
        for key in ("edges", "shares", "count", "null_rate", "median", "min", "max"):
            assert got[key] == column[key], (name, key)  # exactly: the same bins as the local path
        assert got["mean"] == pytest.approx(column["mean"], rel=1e-12)
        assert got["std"] == pytest.approx(column["std"], rel=1e-12)
    assert profile["categorical"] == expected["categorical"]
    cluster = json.loads((run / "run.json").read_text())["cluster"]
    assert cluster["kind"] == "local" and cluster["n_workers"] == 2 and cluster["address"].startswith("tcp://")
    assert cluster["dashboard_link"].startswith("http://") and cluster["partitions"] == 3
    assert [s["step"] for s in cluster["steps"]] == ["validate"]
    # Data Docs: the table is smaller than contract.ge_sample_rows, so GX saw every row, as the local path does
    from pipeline.contracts.expectations import write_data_docs

    gx = report["great_expectations"]
    assert gx["rows_in"] == gx["sample_rows"] == 4000 and Path(report["outputs"]["data_docs"]).is_file()
    frame = load_source(loaded.spec.data, loaded.base_dir)
    here = write_data_docs(loaded.spec.contract, frame, tmp_path / "local_docs", result=local)
    assert gx["failed_expectations"] == here.failed and gx["success"] == here.success
    page = Path(report["outputs"]["data_docs"]).read_text()
    assert "the same 4,000 rows Keel validated" in page


def test_pandera_flags_repeats_across_partitions_as_it_does_in_one_frame(data: dict, client, tmp_path: Path) -> None:
    """contract.engine pandera: a subscriber id in two partitions is a duplicate, every copy, as locally."""
    loaded = load_spec(SPEC, [f"data.source={data['table']}", "contract.engine=pandera"])
    spec = loaded.spec
    local = validate_frame(load_source(spec.data, loaded.base_dir), spec.contract)
    assert local.check_counts.get("subscriber_id:duplicate", 0) > 0
    merged, _ = validate_partitions(client, spec, list_partitions(str(data["table"])), tmp_path / "quarantine")
    assert merged.check_counts == local.check_counts
    assert (merged.rows_accepted, merged.rows_quarantined) == (local.rows_accepted, local.rows_quarantined)
    got = pd.read_parquet(tmp_path / "quarantine").sort_values(ROW_COL).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, local.quarantined.reset_index(drop=True))


def test_data_docs_of_a_larger_table_say_they_show_a_sample(data: dict, client, tmp_path: Path) -> None:
    from pipeline.distributed.datadocs import data_docs_on_dask, shares

    assert shares([1000, 2000, 1000], 1000) == [250, 500, 250] and shares([3, 4], 10) == [3, 4]
    loaded = load_spec(SPEC, [f"data.source={data['table']}", "contract.ge_sample_rows=1000"])
    parts = list_partitions(str(data["table"]))
    merged, _ = validate_partitions(client, loaded.spec, parts, tmp_path / "quarantine")
    docs = data_docs_on_dask(client, loaded.spec, parts, merged, tmp_path / "quarantine", tmp_path / "docs", [])
    assert (docs["sample_rows"], docs["rows_in"]) == (1000, 4000)
    page = Path(docs["index"]).read_text()
    assert "a seeded SAMPLE of 1,000 of the 4,000 rows" in page
    assert f"{merged.rows_quarantined:,} quarantined" in page  # Keel's counts are the whole table's


def test_profile_and_psi_from_partitions_equal_the_local_ones(data: dict, client) -> None:
    loaded = load_spec(SPEC, [f"data.source={data['table']}"])
    spec, contract = loaded.spec, loaded.spec.contract
    local = validate_frame(load_source(spec.data, loaded.base_dir), contract)
    _, accepted = validate_partitions(client, spec, list_partitions(str(data["table"])), None)
    reference = build_profile_distributed(client, accepted, contract)
    assert [c["edges"] for c in _numeric(reference)] == [
        c["edges"] for c in _numeric(build_profile(local.accepted, contract))
    ]
    drifted_spec = load_spec(SPEC, [f"data.source={data['drifted']}"])
    current = validate_frame(load_source(drifted_spec.spec.data, loaded.base_dir), contract).accepted
    _, current_parts = validate_partitions(client, spec, list_partitions(str(data["drifted"])), None)
    expected = psi_against(reference, current, contract.profile.psi_warning, contract.profile.psi_alert)
    got = psi_against_distributed(
        client, reference, current_parts, contract.profile.psi_warning, contract.profile.psi_alert
    )
    assert {k: v.to_dict() for k, v in got.items()} == {k: v.to_dict() for k, v in expected.items()}
    assert any(r.status == "ALERT" for r in got.values())


def _numeric(profile) -> list[dict]:
    return [vars(profile.numeric[c]) for c in sorted(profile.numeric)]


@pytest.fixture(scope="module")
def champion(data: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One `keel run` on the partitioned table (local executor): the bundle to score with."""
    root = tmp_path_factory.mktemp("dask-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("BENTOML_HOME", str(root / "bentoml"))
        code, run = keel("run", SPEC, f"data.source={data['table']}")
    assert code in (0, 1) and run.get("bundle"), run  # registered; its gates on 4000 rows do not matter here
    return {"root": root, "tag": run["bundle"], "store": BundleStore(root / "bentoml")}


def _local_scores(data: dict, champion: dict, reasons: int) -> pd.DataFrame:
    loaded = load_spec(SPEC, [f"data.source={data['table']}"])
    bundle = load_tabular_bundle(champion["store"].get(champion["tag"]))
    frame = load_source(loaded.spec.data, loaded.base_dir)
    return score_frame(loaded.spec, bundle, frame, reasons, "").frame.drop(columns="spec_sha256")


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="spec_sha256", errors="ignore").sort_values("row").reset_index(drop=True)


def test_score_cli_on_dask_matches_the_local_path(data: dict, champion: dict, monkeypatch) -> None:
    monkeypatch.chdir(champion["root"])
    monkeypatch.setenv("BENTOML_HOME", str(champion["root"] / "bentoml"))
    out = champion["root"] / "scores.parquet"
    code, result = keel(
        "score",
        SPEC,
        *DASK,
        "--data",
        str(data["table"]),
        "--reasons",
        "2",
        "--out",
        str(out),
        "--bundle",
        champion["tag"],
    )
    assert code == 0, result
    expected = _local_scores(data, champion, 2)
    assert result["rows_in"] == 4000 == result["rows_scored"] + result["rows_quarantined"]
    assert result["rows_scored"] == len(expected) and result["rows_flagged"] == int(expected["decision"].sum())
    got = pd.read_parquet(out)
    assert list(got.columns) == [*expected.columns, "spec_sha256"]
    pd.testing.assert_frame_equal(_sorted(got), _sorted(expected))  # same rows, values, ranks, reasons
    assert json.loads((out / "_manifest.json").read_text())["rows"] == len(expected)
    assert not [p for p in out.parent.iterdir() if ".staging-" in p.name]


def _score(client, data: dict, champion: dict, target: Path) -> dict:
    loaded = load_spec(SPEC, [f"data.source={data['table']}"])
    spec = loaded.spec.model_copy(update={"contract": loaded.spec.contract})
    _, accepted = validate_partitions(client, spec, list_partitions(str(data["table"])), None)
    ref = champion["store"].get(champion["tag"])
    key = (str(champion["store"].home), champion["tag"], dict(ref.manifest.files))
    return score_partitions(client, accepted, key, "subscriber_id", 0.2, 0, "", target)


def test_each_worker_loads_the_bundle_once(data: dict, champion: dict, client, tmp_path: Path) -> None:
    _score(client, data, champion, tmp_path / "a.parquet")
    _score(client, data, champion, tmp_path / "b.parquet")
    loads = client.run(loaded_bundles)
    assert all(tags.count(champion["tag"]) <= 1 for tags in loads.values())
    pd.testing.assert_frame_equal(
        _sorted(pd.read_parquet(tmp_path / "a.parquet")), _sorted(pd.read_parquet(tmp_path / "b.parquet"))
    )


def test_a_worker_killed_mid_run_changes_nothing(data: dict, champion: dict, client, tmp_path: Path) -> None:
    """SIGKILL one worker process between validation and scoring (its partitions' accepted rows are lost with
    it) and another during scoring: Dask recomputes from the files and the committed output is identical."""
    expected = _sorted(_local_scores(data, champion, 0))
    loaded = load_spec(SPEC, [f"data.source={data['table']}"])
    _, accepted = validate_partitions(client, loaded.spec, list_partitions(str(data["table"])), None)
    client.gather(accepted)
    victim, pid = next(iter(client.run(os.getpid).items()))
    os.kill(pid, signal.SIGKILL)
    ref = champion["store"].get(champion["tag"])
    key = (str(champion["store"].home), champion["tag"], dict(ref.manifest.files))
    target = tmp_path / "scores.parquet"
    import threading

    def kill_again() -> None:
        with contextlib.suppress(Exception):
            pids = client.run(os.getpid)
            os.kill(sorted(pids.values())[-1], signal.SIGKILL)

    timer = threading.Timer(0.5, kill_again)
    timer.start()
    try:
        done = score_partitions(client, accepted, key, "subscriber_id", 0.2, 0, "", target)
    finally:
        timer.cancel()
    client.wait_for_workers(2, timeout=60)
    assert done["rows"] == len(expected)
    pd.testing.assert_frame_equal(_sorted(pd.read_parquet(target)), expected)
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]
    assert victim


def test_missing_packages_say_how_to_install(monkeypatch, tmp_path: Path, data: dict) -> None:
    import builtins

    real = builtins.__import__

    def no_prefect_dask(name, *args, **kwargs):
        if name == "prefect_dask":
            raise ImportError("No module named 'prefect_dask'")
        return real(name, *args, **kwargs)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(builtins, "__import__", no_prefect_dask)
    code, result = keel("validate", SPEC, f"data.source={data['table']}", *DASK)
    assert code == 2
    assert "install keel[dask]" in result["problems"][0]["reason"]


def test_run_on_dask_trains_with_lightgbm_dask_and_registers_a_plain_booster(data: dict, champion: dict, monkeypatch):
    """`keel run runtime=dask_local`: DaskLGBMClassifier on 2 worker processes; the bundle is the local kind."""
    from pipeline.models.lightgbm_model import BOOSTER_FILE, LightGBMTabularModel

    monkeypatch.chdir(champion["root"])
    monkeypatch.setenv("BENTOML_HOME", str(champion["root"] / "bentoml"))
    code, run = keel("run", SPEC, f"data.source={data['table']}", *DASK)
    assert code in (0, 1) and run.get("bundle"), run
    ref = champion["store"].get(run["bundle"])
    assert ref.manifest.extra["family"] == "lightgbm" and f"model/{BOOSTER_FILE}" in ref.manifest.files
    bundle = load_tabular_bundle(ref)
    assert type(bundle.model) is LightGBMTabularModel
    local = champion["store"].get(champion["tag"]).manifest.metrics
    assert abs(ref.manifest.metrics["auc"] - local["auc"]) <= 0.01  # 4000 rows: the bench holds 0.002 at 200k
    spec = load_spec(SPEC, [f"data.source={data['table']}"]).spec
    scored = score_frame(spec, bundle, load_source(spec.data, Path(".")), 0, "").frame  # served as a local one is
    assert len(scored) > 3000 and np.isfinite(scored["probability"]).all()


def test_a_dask_run_starts_one_cluster_for_all_its_steps(data: dict, tmp_path: Path, monkeypatch, caplog) -> None:
    """`keel run runtime=dask_local`: training, the refit (evaluation.refit) and the weekly high-risk list reach
    one scheduler (its id, asked of the scheduler by each step), the cluster is announced once and recorded in
    run.json, and it is closed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))  # no champion: the run promotes, the list is built
    from prefect.logging.configuration import setup_logging

    setup_logging()  # Prefect's first setup in a process replaces the loggers' handlers: let it happen before we listen
    caplog.set_level(logging.INFO)
    flow_runs = logging.getLogger("prefect.flow_runs")  # the flow's prints
    flow_runs.addHandler(caplog.handler)
    only_churn = ["gates=[churn]", "~fairness", "~causal", "evaluation.refit=all"]
    code, result = keel("run", SPEC, f"data.source={data['table']}", *DASK, *only_churn)
    assert code == 0 and result["promoted"] and result["scoring"]["listed"] > 0, result
    cluster = json.loads((Path(result["run_dir"]) / "run.json").read_text())["cluster"]
    assert cluster["kind"] == "local" and cluster["n_workers"] == 2 and cluster["address"].startswith("tcp://")
    assert cluster["dashboard_link"].startswith("http://")
    assert [s["step"] for s in cluster["steps"]] == ["train", "refit", "high_risk"]
    assert len({s["scheduler_id"] for s in cluster["steps"]}) == 1  # one cluster, not one per step
    flow_runs.removeHandler(caplog.handler)
    records = {id(r): r for r in caplog.records}.values()  # a record that also propagated is counted once
    printed = [r.getMessage() for r in records if "dashboard http" in r.getMessage()]
    assert printed == [f"dask: LocalCluster {cluster['address']}, 2 worker(s); dashboard {cluster['dashboard_link']}"]
    from distributed import Client

    with pytest.raises(OSError):
        Client(cluster["address"], timeout=2)  # stopped with the run


def test_high_risk_list_on_dask_equals_the_local_list(data: dict, champion: dict) -> None:
    """The weekly list (keel run's batch step) scored and explained on the workers: the same entities, order,
    probabilities, ranks and reasons as score_high_risk in one process."""
    from pipeline.distributed.highrisk import high_risk_on_dask
    from pipeline.scoring.batch import latest_snapshot, score_high_risk

    loaded = load_spec(SPEC, [f"data.source={data['table']}", *DASK])
    spec = loaded.spec
    accepted = validate_frame(load_source(spec.data, loaded.base_dir), spec.contract).accepted
    snapshot = latest_snapshot(accepted, spec.data.entity_id, spec.data.timestamp)
    bundle = load_tabular_bundle(champion["store"].get(champion["tag"]))
    threshold = 0.1
    expected = score_high_risk(bundle, snapshot, spec.data.entity_id, threshold).frame
    got = high_risk_on_dask(spec.runtime, champion["store"], champion["tag"], snapshot, spec.data.entity_id, threshold)
    assert len(expected) > 50 and got.scored == len(snapshot)
    pd.testing.assert_frame_equal(got.frame, expected)


def test_a_sweep_on_dask_runs_every_job_on_one_cluster(data: dict, tmp_path: Path, monkeypatch) -> None:
    """`keel run -m ... runtime=dask_local runtime.dask.sweep=steps`: the jobs share the sweep's cluster."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    sweep = ["gates=[churn]", "~fairness", "~causal", "model.params.num_leaves=7,15", "runtime.dask.sweep=steps"]
    code, result = keel("run", "-m", SPEC, f"data.source={data['table']}", *DASK, *sweep)
    assert code in (0, 1) and len(result["jobs"]) == 2 and result["mode"] == "steps", result
    clusters = [json.loads((Path(job["run_dir"]) / "run.json").read_text())["cluster"] for job in result["jobs"]]
    assert len({c["address"] for c in clusters}) == 1 and all(c["shared"] for c in clusters)
    for c in clusters:  # each run's own steps: its selection's fits (a sweep job cross-validates) and training
        assert [s["step"] for s in c["steps"]] == ["cross-validation", "train"], c["steps"]
    from distributed import Client

    with pytest.raises(OSError):
        Client(clusters[0]["address"], timeout=2)  # stopped with the sweep


def test_a_sweep_on_dask_runs_its_jobs_as_parallel_tasks_with_the_local_results(
    data: dict, tmp_path: Path, monkeypatch
) -> None:
    """runtime.dask.sweep jobs (the default): each job a Prefect task on a worker, side by side; each job's
    model, metrics and gates equal the same job run by a local sweep (the job runs the local code on its worker)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    sweep = ["gates=[churn]", "~fairness", "~causal", "model.params.num_leaves=7,15"]
    code, on_dask = keel("run", "-m", SPEC, f"data.source={data['table']}", *DASK, *sweep, "--promote-best")
    assert code in (0, 1) and on_dask["mode"] == "jobs" and len(on_dask["jobs"]) == 2, on_dask
    jobs = on_dask["jobs"]
    assert len({job["worker"] for job in jobs}) == 2, jobs  # one job on each worker process
    spans = [(datetime.fromisoformat(j["started"]), datetime.fromisoformat(j["finished"])) for j in jobs]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans  # they ran at the same time
    for job in jobs:  # the job ran whole on its worker: no cluster of its own, the local executor
        assert (tmp_path / job["run_dir"]).is_dir(), job["run_dir"]  # in the sweep's folder: its own cluster
        record = json.loads((Path(job["run_dir"]) / "run.json").read_text())
        assert "cluster" not in record and record["store"] == str(tmp_path / "bentoml"), record
    code_local, local = keel("run", "-m", SPEC, f"data.source={data['table']}", *sweep)
    assert local["mode"] == "local" and code_local == code
    for got, want in zip(jobs, local["jobs"], strict=True):
        assert got["overrides"] == want["overrides"] and got["status"] == want["status"]
        assert got["metrics"] == want["metrics"] and got["value"] == want["value"], (got, want)
        assert got["failed_gates"] == want["failed_gates"]
    promoted = [job for job in jobs if job["promoted"]]
    assert len(promoted) == (1 if any(job["gate_passed"] for job in jobs) else 0), jobs
    for job in promoted:  # --promote-best: the best job's high-risk list, written after the tasks (on the cluster)
        assert job["bundle"] == on_dask["best"][job["spec_name"]] and Path(job["scoring"]["high_risk_csv"]).is_file()

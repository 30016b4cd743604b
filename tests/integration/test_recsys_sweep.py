"""`keel run -m` on a recommendation spec: one gated, registered, unpromoted run per combination;
--promote-best promotes the best by ndcg@10 and writes its batch top-K (real Prefect, real BentoML store)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.registry import BundleStore
from pipeline.registry.aliases import aliases, history

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamrec.yaml")
SMALL = ["data.rows=12000", "data.scenario.items=800", "model.params.epochs=1"]

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))


def keel(*args: str) -> tuple[int, dict, str]:
    """Exit code, the --json object (alone on stdout) and the human text (on stderr with --json)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--json"])
    (line,) = out.getvalue().strip().splitlines()
    return code, json.loads(line), err.getvalue()


def test_recommendation_sweep_gates_every_job_and_promotes_only_the_best(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "bentoml")
    code, sweep, text = keel("run", "-m", SPEC, *SMALL, "ranker.family=lightgbm_ranker,mlp_ranker", "--promote-best")
    assert code == 0, sweep
    jobs = sweep["jobs"]
    assert sweep["metric"] == "ndcg@10"  # the recommendation default for selection.metric
    assert [j["overrides"] for j in jobs] == [["ranker.family=lightgbm_ranker"], ["ranker.family=mlp_ranker"]]
    assert all(j["status"] == "ok" and j["gate_passed"] and j["model_family"] == "two_tower" for j in jobs)
    assert jobs[0]["bundle"] != jobs[1]["bundle"]

    [best] = [j for j in jobs if j["best"]]
    assert best["value"] == max(j["value"] for j in jobs) == best["metrics"]["ndcg@10"]
    assert sweep["promoted"] == [best["bundle"]] and sweep["best"] == {"streamrec": best["bundle"]}
    assert aliases("streamrec", store=store)["champion"] == best["bundle"]
    # the jobs themselves promoted nothing: the only alias change is the sweep's own, at the end
    promotions = [e for e in history("streamrec", store=store) if e.get("action") == "promote"]
    assert [e["to"] for e in promotions] == [best["bundle"]]
    assert "best test ndcg@10 of sweep" in promotions[0]["reason"]

    for job in jobs:
        run_dir = Path(job["run_dir"])
        manifest = store.get(job["bundle"]).manifest
        assert manifest.gate_passed and manifest.extra["sweep"] == sweep["sweep"]
        recorded = json.loads((run_dir / "run.json").read_text())["overrides"]
        assert recorded == [*SMALL, *job["overrides"]]  # `keel run SPEC <these>` reproduces the job
        report = json.loads((run_dir / "run_report.json").read_text())
        assert report["ranker"]["family"] == job["overrides"][0].split("=")[1]
        batch_file = run_dir / "recommendations.parquet"
        if job is best:  # promoted at the end: its batch top-K, and the reports say so
            assert report["promoted"] and report["scoring"]["parquet"] == str(batch_file)
            batch = pd.read_parquet(batch_file)
            assert batch["user_id"].nunique() == report["scoring"]["users"] > 0
            assert "## Promotion" in (run_dir / "gate_report.md").read_text()
        else:  # a trial: registered and gated, no batch list (that belongs to a champion)
            assert not report["promoted"] and "held: sweep job" in report["promotion"]
            assert not batch_file.exists()

    assert "test ndcg@10" in text and f"promoted the best gate-passed job, {best['bundle']}" in text
    assert Path(sweep["sweep_dir"], "sweep_report.md").is_file()

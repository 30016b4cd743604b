"""Declarative candidates and `keel run -m` sweeps end to end: real Prefect, real BentoML store."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.registry import BundleStore, history
from pipeline.registry.aliases import aliases

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamflow_churn.yaml")
SMALL = ["data.rows=4000"]
CANDIDATES = (
    "candidates=[{family: logistic, features: ${model.features}},"
    " {family: logistic, features: [days_since_last_activity, tenure_months, plan_type], params: {C: 0.1}}]"
)

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


def test_candidates_are_cross_validated_and_the_best_is_trained(tmp_path: Path) -> None:
    code, result, text = keel("run", SPEC, *SMALL, CANDIDATES)
    assert code == 0, result
    run_dir = Path(result["run_dir"])
    report = json.loads((run_dir / "run_report.json").read_text())
    rows = report["selection"]
    assert [r["source"] for r in rows] == ["model", "candidates.0", "candidates.1"]
    assert [r["family"] for r in rows] == ["lightgbm", "logistic", "logistic"]
    assert report["selection_metric"] == "auc"  # higher is better
    assert all(len(r["folds"]) == 3 for r in rows)

    best = max(rows, key=lambda r: r["mean"])  # first of equals, as select_model breaks ties
    assert [r["selected"] for r in rows] == [r is best for r in rows]
    assert report["model_family"] == result["model_family"] == best["family"]
    assert BundleStore(tmp_path / "bentoml").get(result["bundle"]).manifest.extra["family"] == best["family"]
    assert result["selection"] == rows  # --json carries the table too

    markdown = (run_dir / "gate_report.md").read_text()
    assert "3-fold cross-validated auc" in markdown
    for row in rows:
        line = f"| {row['source']} | {row['family']} | {row['mean']:.4f} | {row['std']:.4f} |"
        assert line in markdown
        assert (f"{line} yes |" in markdown) == (row is best)
    assert f"model: {best['family']}, best cross-validated auc of:" in text


def test_sweep_runs_every_combination_and_promotes_only_on_request(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "bentoml")

    # one job per value; a failing gate makes the sweep exit 1; a passed job is registered, not promoted
    code, sweep, text = keel("run", "-m", SPEC, *SMALL, "gates.auc.min=0.5,0.99")
    assert code == 1, sweep
    assert [j["overrides"] for j in sweep["jobs"]] == [["gates.auc.min=0.5"], ["gates.auc.min=0.99"]]
    assert [j["status"] for j in sweep["jobs"]] == ["ok", "failed"]
    assert sweep["jobs"][1]["failed_gates"] == ["auc"]
    assert aliases("streamflow-churn", store=store)["champion"] is None
    assert sweep["promoted"] == [] and sweep["best"] == {"streamflow-churn": sweep["jobs"][0]["bundle"]}
    run_dirs = [Path(j["run_dir"]) for j in sweep["jobs"]]
    assert len(set(run_dirs)) == 2
    for job, run_dir in zip(sweep["jobs"], run_dirs, strict=True):
        recorded = json.loads((run_dir / "run.json").read_text())["overrides"]
        assert recorded == [*SMALL, *job["overrides"]]  # `keel run SPEC <these>` reproduces the job
        assert not (run_dir / "high_risk.csv").exists()  # the list belongs to a champion
        assert store.get(job["bundle"]).manifest.extra["sweep"] == sweep["sweep"]
    assert "gates.auc.min=0.99" in text and "FAILED: auc" in text and "nothing promoted" in text
    assert Path(sweep["sweep_dir"], "sweep_report.md").is_file()

    # --promote-best over the model family (each family's params from its group file): every job gated
    # against the same (absent) champion, the best cross-validated AUC promoted, never the best test AUC
    code, sweep, text = keel("run", "--multirun", SPEC, *SMALL, "model=lightgbm,logistic", "--promote-best")
    assert code == 0, sweep
    assert [j["model_family"] for j in sweep["jobs"]] == ["lightgbm", "logistic"]
    [best] = [j for j in sweep["jobs"] if j.get("best")]
    assert best["value"] == max(j["value"] for j in sweep["jobs"])
    for job in sweep["jobs"]:
        [selection] = json.loads(Path(job["run_dir"], "run_report.json").read_text())["selection"]
        assert job["ranked_by"] == "cross-validated" and job["value"] == selection["metrics"]["auc"]
        assert job["test_value"] == job["metrics"]["auc"] != job["value"]
    lightgbm = json.loads(Path(sweep["jobs"][0]["run_dir"], "run.json").read_text())
    assert "model=lightgbm" in lightgbm["overrides"]
    assert [j["bundle"] for j in sweep["jobs"] if j["promoted"]] == sweep["promoted"] == [best["bundle"]]
    assert aliases("streamflow-churn", store=store)["champion"] == best["bundle"]
    assert all(j["metrics"] and j["gate_passed"] for j in sweep["jobs"])
    report = json.loads(Path(best["run_dir"], "run_report.json").read_text())
    assert report["promoted"] and Path(report["scoring"]["high_risk_csv"]).is_file()
    assert "## Promotion" in Path(best["run_dir"], "gate_report.md").read_text()
    assert "best cross-validated auc of sweep" in history("streamflow-churn", store=store)[-1]["reason"]
    assert f"promoted the best gate-passed job, {best['bundle']}" in text

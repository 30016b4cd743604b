"""`keel monitor` end to end: real Prefect flow, real files, the decision in the exit code.

The done-when check of the monitoring issue: on the tier-correlated drift scenario the
sessions feature and its derived feature are in ALERT as one shift, the segment diagnosis
points at plan tiers, and the spec's drift trigger prescribes a retrain with approval.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.data.synthetic.streamflow import generate
from pipeline.spec.schema import ScenarioSpec
from pipeline.triggers import read_record

SPEC = str(Path(__file__).resolve().parents[2] / "specs" / "streamflow_churn.yaml")
DRIFT_SCENARIO = [
    "+monitoring.current.scenario.segment_shift.premium.sessions_last_30d=4",
    "+monitoring.current.scenario.segment_shift.family.sessions_last_30d=4",
]

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture(autouse=True)
def _workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def run(tmp_path: Path, *args: str) -> tuple[int, dict]:
    out = io.StringIO()
    isolated = ["data.rows=10000", f"runtime.bentoml_home={tmp_path / 'bento'}"]
    with contextlib.redirect_stdout(out):
        code = main(["monitor", SPEC, *isolated, *args, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def test_drift_scenario_reproduces_the_seed_picture(tmp_path: Path) -> None:
    code, result = run(tmp_path, *DRIFT_SCENARIO, "--as-of", "2026-03-01")
    assert code == 1, result  # the spec's drift trigger prescribes a retrain
    assert result["levels"]["sessions_last_30d"] == "ALERT"
    assert result["levels"]["engagement_intensity"] == "ALERT"
    assert [g["sources"] for g in result["groups"]] == [["sessions_last_30d"]]
    explanation = result["groups"][0]["explanation"]
    assert "engagement_intensity" in explanation and "derived from sessions_last_30d" in explanation
    seg = next(s for s in result["segments"] if s["feature"] == "sessions_last_30d")
    assert seg["pattern"] == "segment-correlated" and set(seg["shifted_segments"]) == {"premium", "family"}
    decision = result["decision"]
    assert decision["retrain"] and decision["approval"] and not decision["critical"]
    run_dir = Path(result["run_dir"])
    for name in ("monitor_report.md", "monitor_report.json", "monitor_reference.json", "resolved_spec.yaml"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "charts" / "sessions_last_30d.png").read_bytes().startswith(b"\x89PNG")
    markdown = (run_dir / "monitor_report.md").read_text()
    assert "one shift" in markdown and "segment-correlated" in markdown and "human approval" in markdown
    assert (Path(result["outputs"]["metrics_history"]) / "date=2026-03-01" / "part.parquet").is_file()
    # nobody started that retrain (no --retrain): the record says so, and the same day again still prescribes
    # it rather than deduplicating against a retrain that never ran (a started one dedups: test_triggers.py)
    record = read_record(tmp_path / "runs" / "streamflow-churn" / "triggers.jsonl")
    assert [r["status"] for r in record if r["trigger"] == "retrain"] == ["not_started"]
    code, again = run(tmp_path, *DRIFT_SCENARIO, "--as-of", "2026-03-01")
    assert code == 1 and again["decision"]["retrain"], again["decision"]


def test_missing_feature_in_a_data_file_is_reported_and_a_rerun_replaces_the_day(tmp_path: Path) -> None:
    data = tmp_path / "day.parquet"
    day = generate(3000, 9, ScenarioSpec()).drop(columns=["avg_session_minutes"])
    rng = np.random.default_rng(0)
    day["probability"] = np.clip(0.3 * day["churned"] + rng.uniform(0, 0.7, len(day)), 0, 1)  # scores served
    day.to_parquet(data)
    for _ in range(2):
        code, result = run(tmp_path, "--data", str(data), "--as-of", "2026-03-02")
        assert code == 1, result
        assert result["levels"]["avg_session_minutes"] == "MISSING"
        assert result["levels"]["engagement_intensity"] == "MISSING"
        assert result["levels"]["sessions_last_30d"] == "OK"
        assert any("avg_session_minutes" in p for p in result["problems"])
        assert "investigate" in result["decision"]["summary"]
        assert 0.6 < result["metrics"]["auc"] < 1.0 and result["metrics"]["outcomes"] == 3000
    history = Path(result["outputs"]["metrics_history"])
    assert [p.name for p in history.iterdir()] == ["date=2026-03-02"]


def test_bad_input_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", SPEC, "--data", str(tmp_path / "absent.parquet")]) == 2
    assert "absent.parquet: the file does not exist" in capsys.readouterr().err
    assert main(["monitor", SPEC, "--as-of", "yesterday"]) == 2  # argparse's usage error, returned (not raised)


def test_a_champion_is_the_reference_derived_features_and_segments_included(tmp_path: Path) -> None:
    isolated = ["data.rows=4000", f"runtime.bentoml_home={tmp_path / 'bento'}"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["run", SPEC, *isolated, "~masked_churners"]) == 0
    code, result = run(tmp_path, *DRIFT_SCENARIO, "data.rows=4000", "--as-of", "2026-03-03")
    assert code == 1, result
    # the bundle's stored reference: derived features and per-segment profiles come from the
    # champion's training data, not from re-reading the spec's data
    assert result["reference_source"] == f"champion {result['bundle']} training data"
    assert result["levels"]["engagement_intensity"] == "ALERT"
    assert [g["sources"] for g in result["groups"]] == [["sessions_last_30d"]]
    derived = next(s for s in result["segments"] if s["feature"] == "engagement_intensity")
    assert derived["pattern"] == "segment-correlated" and set(derived["shifted_segments"]) == {"premium", "family"}

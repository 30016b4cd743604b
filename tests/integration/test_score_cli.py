"""`keel score` end to end: real Prefect, the bundle `keel run` registered, and the real service over HTTP.

One row must score the same three ways: `keel score`, `keel run`'s high-risk list and `/score_batch`.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.data.sources import load_source
from pipeline.registry import BundleStore
from pipeline.registry.tabular import load_tabular_bundle
from pipeline.spec.load import load_spec
from tests.integration.serving_fixtures import _plain, running_service

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamflow_churn.yaml")
SMALL = ["data.rows=5000"]

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def keel(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One `keel run` (a champion and its high-risk list) and the raw rows it trained on, as a file."""
    root = tmp_path_factory.mktemp("score")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("BENTOML_HOME", str(root / "bentoml"))
        code, run = keel("run", SPEC, *SMALL)
    assert code == 0, run
    loaded = load_spec(SPEC, SMALL)
    raw = load_source(loaded.spec.data, loaded.base_dir)
    raw.to_parquet(root / "rows.parquet", index=False)
    return {"root": root, "run": run, "raw": raw}


@pytest.fixture
def in_root(trained: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(trained["root"])
    monkeypatch.setenv("BENTOML_HOME", str(trained["root"] / "bentoml"))
    return trained["root"]


def test_scores_match_the_high_risk_list_and_quarantine_names_reasons(trained: dict, in_root: Path) -> None:
    code, result = keel("score", SPEC, *SMALL, "--data", str(in_root / "rows.parquet"), "--reasons", "3")
    assert code == 0, result
    run = trained["run"]
    assert result["bundle"] == run["bundle"] and len(result["spec_sha256"]) == 64
    assert result["rows_in"] == 5000 == result["rows_scored"] + result["rows_quarantined"]
    assert result["rows_quarantined"] == run["report"]["quarantined"] > 0
    scores = pd.read_parquet(result["outputs"]["scores"])
    assert len(scores) == result["rows_scored"]
    assert set(scores.columns) >= {"subscriber_id", "row", "probability", "decision", "rank", "reasons", "bundle"}
    assert (scores["bundle"] == run["bundle"]).all() and (scores["spec_sha256"] == result["spec_sha256"]).all()
    assert (scores["decision"] == (scores["probability"] >= 0.20)).all()
    assert sorted(scores["rank"]) == list(range(1, len(scores) + 1))
    listing = pd.read_parquet(run["scoring"]["high_risk_parquet"])
    joined = listing.merge(scores, on="subscriber_id", suffixes=("_list", "_score"))
    assert len(joined) == len(listing) > 0
    assert (joined["probability_list"] == joined["probability_score"]).all()  # bit for bit
    assert (joined["rank_list"] == joined["rank_score"]).all()
    assert [list(r) for r in joined["reasons_list"]] == [list(r) for r in joined["reasons_score"]]
    assert scores["decision"].sum() == len(listing)
    quarantine = pd.read_parquet(result["outputs"]["quarantine"])
    assert len(quarantine) == result["rows_quarantined"]
    assert quarantine["_keel_reasons"].str.len().gt(0).all()
    assert set(quarantine["_keel_row"]).isdisjoint(scores["row"])


def test_label_is_optional_and_csv_out(trained: dict, in_root: Path) -> None:
    unlabelled = trained["raw"].drop(columns=["churned"]).head(400)
    unlabelled.to_csv(in_root / "new.csv", index=False)
    code, result = keel("score", SPEC, *SMALL, "--data", "new.csv", "--out", "out/scores.csv")
    assert code == 0, result
    assert any("no label column" in n for n in result["notes"])
    scores = pd.read_csv(in_root / "out" / "scores.csv")
    assert len(scores) == result["rows_scored"] and "reasons" not in scores.columns
    full = pd.read_parquet(sorted(in_root.glob("runs/streamflow-churn/*-score-*/scores.parquet"))[0])
    both = scores.merge(full, on="subscriber_id", suffixes=("_csv", "_parquet"))
    assert len(both) == len(scores)
    np.testing.assert_allclose(both["probability_csv"], both["probability_parquet"], rtol=0, atol=1e-15)


def test_bad_bundle_and_suffix_are_usage_errors(in_root: Path) -> None:
    code, result = keel("score", SPEC, *SMALL, "--data", "rows.parquet", "--bundle", "challenger")
    assert code == 2 and "no challenger" in result["problems"][0]["reason"]
    code, result = keel("score", SPEC, *SMALL, "--data", "rows.parquet", "--out", "scores.xlsx")
    assert code == 2 and "suffix" in result["problems"][0]["reason"]
    code, result = keel("score", SPEC, *SMALL, "--data", "missing.parquet")
    assert code == 2 and "does not exist" in result["problems"][0]["reason"]


def test_score_batch_over_http_answers_the_same_and_echoes_ids(trained: dict, in_root: Path) -> None:
    code, result = keel("score", SPEC, *SMALL, "--data", "rows.parquet", "--reasons", "3")
    assert code == 0, result
    scores = pd.read_parquet(result["outputs"]["scores"]).head(300)
    home = in_root / "bentoml"
    bundle = load_tabular_bundle(BundleStore(home).get(result["bundle"]))
    raw = trained["raw"].iloc[scores["row"].to_numpy()]
    records = [
        {"subscriber_id": row["subscriber_id"], **{c: _plain(row[c]) for c in bundle.input_columns}}
        for row in raw.to_dict("records")
    ]
    env = {"KEEL_REQUEST_LOG": "0", "KEEL_MAX_BATCH": "1000"}
    with running_service(home, env) as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        answer = client.post("/score_batch", json={"records": records})
        plain = client.post("/score_batch?explain=false", json={"records": records})
    assert answer.status_code == 200 and plain.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["subscriber_id"] for r in results] == scores["subscriber_id"].tolist()
    assert [r["index"] for r in results] == list(range(len(records)))
    np.testing.assert_allclose([r["probability"] for r in results], scores["probability"], rtol=0, atol=1e-12)
    assert [r["probability"] for r in plain.json()["results"]] == scores["probability"].tolist()
    assert [r["flagged"] for r in results] == scores["decision"].tolist()
    assert [r["reasons"] for r in results] == [list(r) for r in scores["reasons"]]

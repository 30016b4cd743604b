"""`vs: champion` compares like with like: the champion bundle re-scored on the challenger's test rows.

Two runs with different split seeds (`data.seed`): the second run's `auc_vs_champion` gate compares
with the champion scored on the second run's own test rows, which this test recomputes by hand.
Then the cases where the champion cannot score the rows: not comparable, and `if_not_comparable`.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from flows.train import prepare_data
from pipeline.cli import main
from pipeline.data.derived import add_derived
from pipeline.gates.champion import rescore_champion
from pipeline.registry import BundleStore
from pipeline.registry.aliases import aliases
from pipeline.registry.tabular import load_tabular_bundle
from pipeline.spec.load import load_spec

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamflow_churn.yaml")
SMALL = ["data.rows=4000"]

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))


def keel(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def test_second_run_gates_against_the_champion_rescored_on_its_own_test_rows(tmp_path: Path) -> None:
    code, first = keel("run", SPEC, *SMALL, "data.seed=7")
    assert code == 0 and first["promoted"], first
    store = BundleStore(tmp_path / "bentoml")
    champion_tag = first["bundle"]

    second_overrides = [*SMALL, "data.seed=8"]
    code, second = keel("run", SPEC, *second_overrides)
    assert second["previous_champion"] == champion_tag
    [gate] = [g for g in second["gates"]["gates"] if g["name"] == "auc_vs_champion"]
    assert gate["comparable"] is True and gate["reference_split"] == "test"
    assert gate["reference_rows"] == second["report"]["test"]

    # by hand: the champion bundle on the second run's test rows, the same metric
    loaded = load_spec(SPEC, second_overrides)
    data = prepare_data.fn(loaded.spec, loaded.base_dir)
    test = data.splits["test"]
    bundle = load_tabular_bundle(store.get(champion_tag))
    features = add_derived(test[bundle.input_columns].reset_index(drop=True), bundle.derived)
    by_hand = roc_auc_score(
        data.labels("test", loaded.spec.data), bundle.model.predict_proba(features[bundle.model.features])
    )
    assert gate["reference"] == pytest.approx(by_hand, abs=1e-12)
    recorded = store.get(champion_tag).manifest.metrics["auc"]
    assert gate["reference"] != recorded  # the first run's own test rows gave another number
    assert gate["value"] == second["metrics"]["auc"]

    report = (Path(second["run_dir"]) / "gate_report.md").read_text()
    assert f"(same {len(test):,} test rows)" in report
    assert f"vs champion: {champion_tag} re-scored on this run's {len(test):,} test rows" in report

    # the champion cannot score rows that lack one of its inputs, or hold a value its contract refuses
    labels = data.labels("test", loaded.spec.data)
    ref = store.get(champion_tag)
    missing = rescore_champion(loaded.spec, ref, test.drop(columns=["tenure_months"]), labels)
    assert not missing.comparable and "tenure_months" in missing.reason and missing.metrics is None
    odd = test.copy()
    odd["plan_type"] = odd["plan_type"].astype("string")
    odd.iloc[0, odd.columns.get_loc("plan_type")] = "platinum"
    refused = rescore_champion(loaded.spec, ref, odd, labels)
    assert not refused.comparable and "refuses 1 of" in refused.reason
    other_label = load_spec(SPEC, [*second_overrides, "data.positive=0"]).spec
    assert not rescore_champion(other_label, ref, test, labels).comparable
    same = rescore_champion(loaded.spec, ref, test, labels)
    assert same.comparable and same.metrics["auc"] == gate["reference"]
    assert np.isfinite(same.metrics["brier"])
    assert aliases("streamflow-churn", store=store)["champion"] in (champion_tag, second["bundle"])

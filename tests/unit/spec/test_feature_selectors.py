"""`model.features: all` and `{include, exclude, dtypes}` resolve to a plain list at load."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from pipeline.cli import main
from pipeline.models.registry import build_model
from pipeline.spec.errors import SpecError
from pipeline.spec.load import load_spec

REPO = Path(__file__).resolve().parents[3]
BASE = REPO / "specs" / "streamflow_churn.yaml"
ALL_STREAMFLOW = [
    "sessions_last_30d",
    "avg_session_minutes",
    "days_since_last_activity",
    "monthly_charges",
    "support_tickets_last_90d",
    "tenure_months",
    "distinct_titles_last_30d",
    "engagement_intensity",
    "recency_score",
    "support_burden",
    "charges_per_session",
    "content_diversity_ratio",
]


def variant(tmp_path: Path, features: str, extra: str = "") -> Path:
    """StreamFlow with its model.features block replaced by `features`."""
    text = BASE.read_text()
    start, end = text.index("model:\n  features:\n"), text.index("\nevaluation:")
    path = tmp_path / "specs" / "variant.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text[:start] + f"model:\n  features: {features}\n" + extra + text[end:])
    return path


def reasons(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return [p.reason for p in caught.value.problems]


def test_all_is_every_column_but_roles_and_fairness_groups_then_derived(tmp_path: Path) -> None:
    spec = load_spec(variant(tmp_path, "all")).spec
    # subscriber_id (id), snapshot_date (timestamp), churned (label), age_band and plan_type (fairness groups) are out
    assert spec.model.features == ALL_STREAMFLOW


def test_include_exclude_dtypes_and_a_literal_fairness_column(tmp_path: Path) -> None:
    selector = '{include: ["s*", plan_type, "*_ratio"], exclude: ["*_90d"], dtypes: [int, category, float]}'
    spec = load_spec(variant(tmp_path, selector)).spec
    assert spec.model.features == ["sessions_last_30d", "plan_type", "support_burden", "content_diversity_ratio"]
    only_ints = load_spec(variant(tmp_path, "{dtypes: [int]}")).spec.model.features
    ints = ["sessions_last_30d", "days_since_last_activity", "support_tickets_last_90d", "tenure_months"]
    assert only_ints == [*ints, "distinct_titles_last_30d"]


def test_candidates_resolve_too_including_an_interpolated_selector(tmp_path: Path) -> None:
    extra = "candidates:\n  - {family: logistic, features: all}\n"
    extra += "  - {family: logistic, features: '${model.features}'}\n"
    spec = load_spec(variant(tmp_path, "{include: [tenure_months, recency_score]}", extra)).spec
    assert spec.candidates[0].features == ALL_STREAMFLOW
    assert spec.candidates[1].features == ["tenure_months", "recency_score"]


@pytest.mark.parametrize(
    ("selector", "reason"),
    [
        ("{include: [tenure], bogus: [x]}", "unknown feature selector key 'bogus'"),
        ("{dtypes: [text]}", "unknown dtype 'text'"),
        ("{include: [tenure]}", "unknown feature 'tenure' (did you mean 'tenure_months'?)"),
        ("{include: [churned]}", "'churned' is the label; a selector never picks it"),
        ("{include: ['nothing_*']}", "the feature selector matches no feature"),
        ("everything", "features is a list of names, 'all' or {include, exclude, dtypes}"),
    ],
)
def test_a_bad_selector_is_a_spec_error_at_its_line(tmp_path: Path, selector: str, reason: str) -> None:
    if selector == "everything":  # a plain string that is not `all` reaches the type check
        assert any("list" in r for r in reasons(variant(tmp_path, selector)))
        return
    assert any(reason in r for r in reasons(variant(tmp_path, selector))), reasons(variant(tmp_path, selector))


def test_show_prints_the_list_and_diff_names_what_a_selector_adds_and_removes(tmp_path: Path) -> None:
    new = variant(tmp_path, "all")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["show", str(new), "--json"]) == 0
    assert json.loads(out.getvalue().splitlines()[-1])["resolved"]["model"]["features"] == ALL_STREAMFLOW
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["diff", str(BASE), str(new)]) == 0
    assert "model.features: added distinct_titles_last_30d; removed plan_type" in out.getvalue()


def test_all_gives_the_same_spec_and_the_same_model_as_the_explicit_list(tmp_path: Path) -> None:
    """A real table (breast cancer): `all` and the explicit list hash alike and train identical trees."""
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    (tmp_path / "cancer.parquet").write_bytes(b"")  # data is not read at load
    columns = "\n".join(f"    {c}: {{dtype: {'int' if c == 'target' else 'float'}}}" for c in frame.columns)
    explicit = [c for c in frame.columns if c != "target"]
    head = (
        "defaults:\n  - model: lightgbm\n  - _self_\nname: cancer\ntask: binary_classification\n"
        "data: {source: ../cancer.parquet, label: target, positive: 1}\n"
        f"contract:\n  name: cancer\n  columns:\n{columns}\n"
        "model:\n  params: {n_estimators: 20, num_leaves: 7, early_stopping_rounds: null}\n  features: "
    )
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "all.yaml").write_text(head + "all\n")
    (specs / "list.yaml").write_text(head + json.dumps(explicit) + "\n")
    by_all, by_list = load_spec(specs / "all.yaml"), load_spec(specs / "list.yaml")
    assert by_all.spec.model.features == explicit
    assert by_all.sha256 == by_list.sha256
    x, y = frame[explicit], frame["target"].to_numpy()
    first = build_model(by_all.spec.model, seed=0).fit(x[by_all.spec.model.features], y).predict_proba(x)
    second = build_model(by_list.spec.model, seed=0).fit(x[by_list.spec.model.features], y).predict_proba(x)
    np.testing.assert_array_equal(first, second)

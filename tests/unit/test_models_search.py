"""`search`: a small grid per family, cross-validated on the selection folds; the best point is what ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from pipeline.models.search import configurations, grid_points
from pipeline.models.select import select_model
from pipeline.spec.diff import diff_specs
from pipeline.spec.errors import SpecError
from pipeline.spec.load import load_spec
from pipeline.spec.schema import SEARCH_MAX_POINTS, LightGBMModel, LightGBMSearch, LogisticModel

REPO = Path(__file__).resolve().parents[2]
ATTRITION = REPO / "examples" / "attrition" / "attrition.yaml"
FEATURES = ["x0", "x1", "x2", "x3"]


def _data(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    logit = 1.5 * x.x0 - x.x1 + 0.8 * x.x2
    return x, (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)


def test_the_grid_expands_first_key_slowest_and_each_point_is_validated_params() -> None:
    grid = LightGBMSearch(learning_rate=[0.03, 0.1], num_leaves=[7, 15, 31])
    points = grid_points(grid)
    assert len(points) == 6  # params order: num_leaves before learning_rate, whatever order it was written in
    assert points[:2] == [{"num_leaves": 7, "learning_rate": 0.03}, {"num_leaves": 7, "learning_rate": 0.1}]
    model = LightGBMModel(family="lightgbm", features=FEATURES, params={"n_estimators": 50}, search=grid)
    configured = configurations(model)
    assert [point for point, _ in configured] == points
    _, last = configured[-1]
    assert (last.params.num_leaves, last.params.learning_rate, last.params.n_estimators) == (31, 0.1, 50)
    assert last.search is None  # a point is a plain configuration: what fit, refit and the bundle use
    assert grid_points(None) == [{}] and configurations(model.model_copy(update={"search": None})) == [
        ({}, model.model_copy(update={"search": None}))
    ]


def test_more_points_than_the_cap_are_refused_naming_each_key() -> None:
    fine = {"num_leaves": [7, 15, 31], "learning_rate": [0.03, 0.1], "min_child_samples": [10, 20, 40, 80]}
    assert len(grid_points(LightGBMSearch(**fine))) == SEARCH_MAX_POINTS == 24
    with pytest.raises(ValidationError, match=r"25 points \(num_leaves 5 x learning_rate 5\); the most is 24"):
        LightGBMSearch(num_leaves=[4, 7, 15, 31, 63], learning_rate=[0.01, 0.03, 0.1, 0.2, 0.3])
    with pytest.raises(ValidationError, match="greater than or equal to 2"):
        LightGBMSearch(num_leaves=[1, 7])  # each value is held to the param's own rule
    with pytest.raises(ValidationError, match="a value twice for num_leaves"):
        LightGBMSearch(num_leaves=[7, 7])
    with pytest.raises(ValidationError, match="names no params"):
        LightGBMSearch()


def test_the_best_point_wins_and_is_the_spec_selection_returns(capfd: pytest.CaptureFixture[str]) -> None:
    x, y = _data(600, 0)
    # min_child_samples 1000 on 400 training rows per fold: no split is possible, every score the same, AUC 0.5
    model = LightGBMModel(
        family="lightgbm",
        features=FEATURES,
        params={"n_estimators": 60, "early_stopping_rounds": 10},
        search={"min_child_samples": [1000, 20], "num_leaves": [4]},
    )
    selection = select_model([model], x, y, metric="auc", folds=3, seed=0, inner_valid_fraction=0.2)
    [row] = selection.table
    assert row["params"] == {"num_leaves": 4, "min_child_samples": 20}
    starved, good = row["search"]
    assert starved["mean"] == pytest.approx(0.5) and good["mean"] > 0.75
    assert row["mean"] == good["mean"] and len(row["folds"]) == 3 and len(good["trees"]) == 3
    assert selection.spec.params.min_child_samples == 20 and selection.spec.search is None
    assert capfd.readouterr().err == ""  # the progress bar shows on a terminal only, never in a log or a pipe


def test_each_family_competes_with_its_best_point() -> None:
    x, y = _data(900, 1)
    y = (np.sign(x.x0 * x.x1) > 0).astype(int)  # an interaction: trees can learn it, a linear model cannot
    trees = LightGBMModel(
        family="lightgbm",
        features=FEATURES,
        params={"n_estimators": 60, "num_leaves": 4},
        search={"min_child_samples": [1000, 20]},
    )
    logistic = LogisticModel(family="logistic", features=FEATURES, search={"C": [1e-3, 1.0]})
    selection = select_model([logistic, trees], x, y, metric="auc", folds=3, seed=1)
    assert selection.index == 1 and selection.spec.params.min_child_samples == 20
    linear, boosted = selection.table
    assert boosted["mean"] > 0.85 > 0.6 > linear["mean"] and boosted["selected"] and not linear["selected"]
    means = [point["mean"] for point in linear["search"]]
    assert [p["params"] for p in linear["search"]] == [{"C": 1e-3}, {"C": 1.0}]
    assert linear["params"] == linear["search"][int(np.argmax(means))]["params"] and linear["mean"] == max(means)


def test_search_default_takes_the_group_grid_and_keel_show_sees_it() -> None:
    loaded = load_spec(ATTRITION, ["model.search=default", "candidates.0.search=default"])
    assert loaded.spec.model.search.lists() == {
        "num_leaves": [7, 15, 31],
        "learning_rate": [0.03, 0.1],
        "min_child_samples": [10, 40],
    }
    assert loaded.resolved["candidates"][0]["search"] == {"C": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]}
    assert "default_search" not in loaded.resolved["model"]  # the group file's grid never becomes a spec key
    other = load_spec(ATTRITION, ["model.search={num_leaves: [7, 15]}"])
    assert other.sha256 != loaded.sha256 and other.resolved["model"]["search"] == {"num_leaves": [7, 15]}
    said = [change.text for change in diff_specs(loaded.resolved, other.resolved)]
    assert "model.search.num_leaves: [7, 15, 31] -> [7, 15]" in said, said  # keel diff names the grid's change
    # another family on the command line: a grid written for lightgbm is left out, `default` follows the family
    assert load_spec(ATTRITION, ["model=logistic", "model.search=default"]).spec.model.search.lists() == {
        "C": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    }


def test_a_bad_grid_is_a_spec_error_at_its_file_and_line(tmp_path: Path) -> None:
    lines = ATTRITION.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  search: default"))  # model's, the first
    spec = tmp_path / "attrition.yaml"
    spec.write_text("\n".join([*lines[:at], "  search:", "    num_leafs: [7, 15]", *lines[at + 1 :]]) + "\n")
    with pytest.raises(SpecError) as error:
        load_spec(spec)
    rendered = error.value.render()
    assert f"attrition.yaml:{at + 2}: model.search.num_leafs" in rendered, rendered
    assert "did you mean 'num_leaves'" in rendered
    big = "  search: {num_leaves: [3, 7, 15, 31, 63], learning_rate: [0.01, 0.03, 0.1, 0.2, 0.3]}"
    spec.write_text("\n".join([*lines[:at], big, *lines[at + 1 :]]) + "\n")
    with pytest.raises(SpecError, match=rf"attrition.yaml:{at + 1}: model.search: search holds 25 points"):
        load_spec(spec)

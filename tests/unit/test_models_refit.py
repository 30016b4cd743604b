"""evaluation.refit: the registered model learns from the declared parts, with early stopping's tree count."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.prepare import prepare
from pipeline.data.synthetic.streamflow import generate
from pipeline.models import build_model
from pipeline.models.refit import refit, trained_on_text
from pipeline.spec.load import load_spec
from pipeline.spec.schema import ScenarioSpec
from tests.integration.serving_fixtures import SPEC_PATH


@pytest.fixture(scope="module")
def fitted():
    loaded = load_spec(SPEC_PATH, ["model.params.n_estimators=120"])
    data = prepare(loaded.spec, generate(3000, 5, ScenarioSpec()))
    model = build_model(loaded.spec.model, seed=loaded.spec.data.seed)
    valid = (data.splits["valid"][model.features], data.labels("valid", loaded.spec.data))
    model.fit(data.splits["train"][model.features], data.labels("train", loaded.spec.data), valid)
    return loaded.spec, data, model


@pytest.mark.parametrize(("mode", "parts"), [("none", ["train"]), ("train_valid", ["train", "valid"]),
                                             ("all", ["train", "valid", "test"])])  # fmt: skip
def test_refit_trains_on_the_declared_parts(fitted, mode: str, parts: list[str]) -> None:
    spec, data, model = fitted
    spec = spec.model_copy(update={"evaluation": spec.evaluation.model_copy(update={"refit": mode})})
    registered, rows, info = refit(spec, spec.model, model, data)
    assert info["parts"] == parts and info["rows"] == len(rows) == sum(len(data.splits[p]) for p in parts)
    if mode == "none":
        assert registered is model and "the model the gates measured" in trained_on_text(info)
        return
    assert registered is not model
    assert registered.num_trees == model.best_iteration == info["n_estimators"]  # the tree count early stopping chose
    x = data.splits["test"][model.features]
    assert not np.array_equal(registered.predict_proba(x), model.predict_proba(x))
    assert f"evaluation.refit: {mode}" in trained_on_text(info)

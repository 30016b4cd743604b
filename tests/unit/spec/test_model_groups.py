"""Model params come from the family group file: candidates inherit it; a family chosen on the command line takes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.spec.errors import SpecError
from pipeline.spec.load import load_spec

REPO = Path(__file__).resolve().parents[3]
ATTRITION = REPO / "examples" / "attrition" / "attrition.yaml"
CHURN = REPO / "specs" / "streamflow_churn.yaml"


def test_a_lightgbm_candidate_inherits_the_group_params_under_its_own() -> None:
    override = "candidates=[{family: lightgbm, features: ${model.features}, params: {num_leaves: 7}}]"
    spec = load_spec(CHURN, [override]).spec
    [candidate] = spec.candidates
    assert candidate.params.num_leaves == 7  # its own
    assert candidate.params.early_stopping_rounds == 30  # conf/model/lightgbm.yaml, as `model` gets it
    assert candidate.params.learning_rate == 0.05
    logistic = load_spec(CHURN, ["candidates=[{family: logistic, features: ${model.features}}]"]).spec.candidates[0]
    assert (logistic.params.C, logistic.params.max_iter) == (1.0, 200)


def test_choosing_another_family_takes_that_groups_params() -> None:
    # the spec's model.params are lightgbm's (num_leaves, learning_rate...): before, model=logistic was a spec error
    spec = load_spec(ATTRITION, ["model=logistic"]).spec
    assert spec.model.family == "logistic" and spec.model.params.C == 1.0 and spec.model.params.max_iter == 200
    assert spec.model.features == load_spec(ATTRITION).spec.model.features
    tuned = load_spec(ATTRITION, ["model=logistic", "model.params.C=0.3"]).spec
    assert tuned.model.params.C == 0.3  # a command-line param still applies
    same = load_spec(ATTRITION, ["model=lightgbm"]).spec  # the spec's own family keeps the spec's params
    assert same.model.params.n_estimators == 1000 and same.model.params.early_stopping_rounds == 30
    with pytest.raises(SpecError, match="num_leaves"):
        load_spec(ATTRITION, ["model=logistic", "model.params.num_leaves=3"])  # not a logistic param

"""The serving Scorer gives the batch path's answers: same probabilities, same reasons, same words."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.data.derived import add_derived
from pipeline.models.explain import _describe_number, describe_numbers, top_reasons
from pipeline.registry import BundleStore
from pipeline.registry.tabular import TabularBundle, load_tabular_bundle
from pipeline.serving.errors import RequestError
from pipeline.serving.scorer import Scorer
from tests.integration.serving_fixtures import BuiltBundle, build_bundle


def _load(built: BuiltBundle) -> TabularBundle:
    return load_tabular_bundle(BundleStore(built.home).get(built.tag))


@pytest.fixture(scope="module", params=["lightgbm", "logistic"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    built = build_bundle(tmp_path_factory.mktemp(request.param) / "home", overrides=[f"model={request.param}"])
    bundle = _load(built)
    return built, bundle, Scorer(bundle)


def _batch_answers(bundle: TabularBundle, records: list[dict]) -> tuple[np.ndarray, list[list[str]]]:
    frame = add_derived(pd.DataFrame(records), bundle.derived)[bundle.model.features]
    return bundle.model.predict_proba(frame), top_reasons(bundle.model, frame, bundle.reference)


def test_scores_and_reasons_match_the_batch_path(served) -> None:
    built, bundle, scorer = served
    records = built.sample
    want_proba, want_reasons = _batch_answers(bundle, records)
    one_by_one = [scorer.score([r])[0] for r in records]
    together = scorer.score(records)
    for got in (one_by_one, together):
        assert [g["probability"] for g in got] == pytest.approx(want_proba.tolist(), abs=1e-12)
        assert [g["reasons"] for g in got] == want_reasons
        assert [g["flagged"] for g in got] == [p >= bundle.threshold for p in want_proba]
    assert sum(len(r) for r in want_reasons) > len(records)  # the comparison covered real reasons


def test_explain_false_gives_the_same_probability_without_reasons(served) -> None:
    built, _, scorer = served
    with_reasons = scorer.score(built.sample[:10])
    without = scorer.score(built.sample[:10], explain=False)
    assert all("reasons" not in r for r in without)
    assert [r["probability"] for r in without] == pytest.approx([r["probability"] for r in with_reasons], abs=1e-12)


def test_lightgbm_scores_with_one_call_when_shap_sums_to_the_output(served) -> None:
    _, bundle, scorer = served
    assert scorer.proba_from_contributions is (bundle.model.family == "lightgbm")


def test_null_categorical_and_unknown_fields_follow_the_contract(served) -> None:
    built, _, scorer = served
    record = dict(built.sample[0], surprise=1)
    with pytest.raises(RequestError) as err:
        scorer.score([record])
    assert any("surprise" in p for p in err.value.problems)


def test_describe_numbers_words_values_as_the_batch_path_does() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [
            rng.lognormal(1.0, 2.0, 400),
            -rng.lognormal(0.0, 1.0, 50),
            10.0 ** np.arange(-4, 6),
            [0.0, 14.0, 14.000001, 13.99999, 0.1, 0.01, 99.96, 100.0, 1e6 + 0.5, math.nan],
        ]
    )
    for median in (14.0, 0.1, 1e-3, 99.96, None, math.nan):
        want = _describe_number("x", values, median).tolist()
        got = describe_numbers(["x"] * len(values), values.tolist(), [median] * len(values))
        assert got == want, median


def test_the_entity_id_field_is_accepted_checked_and_ignored_by_the_model(served) -> None:
    built, bundle, _ = served
    scorer = Scorer(bundle, id_field="subscriber_id")
    plain = scorer.score([built.sample[0]])[0]
    assert scorer.score([{**built.sample[0], "subscriber_id": "sub-1"}])[0] == plain
    assert scorer.score([{**built.sample[0], "subscriber_id": 42}])[0] == plain
    for bad in ({"subscriber_id": ["x"]}, {"subscriber_id": True}, {"subscriber_id": ""}, {"surprise": 1}):
        with pytest.raises(RequestError) as info:
            scorer.score([{**built.sample[0], **bad}])
        assert info.value.problems[0].startswith(next(iter(bad)))
    with pytest.raises(RequestError, match="subscriber_id: unexpected field"):
        Scorer(bundle).score([{**built.sample[0], "subscriber_id": "sub-1"}])  # no id field configured

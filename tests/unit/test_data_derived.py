"""Safe derived-feature expressions: whitelist, numpy semantics, ordering, lineage, batch checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.data.derived import add_derived, derived_lineage, parse_expression
from pipeline.data.errors import ExpressionError
from pipeline.spec.expressions import check_expressions
from pipeline.spec.schema import DerivedFeature

ROOT = Path(__file__).resolve().parents[2]


def feats(**exprs: str) -> dict[str, DerivedFeature]:
    return {name: DerivedFeature(expr=expr) for name, expr in exprs.items()}


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("__import__('os')", "__import__"),
        ("df.x", "attribute access 'df.x'"),
        ("a[0]", "subscript 'a[0]'"),
        ("lambda: 1", "lambda"),
        ('"s"', "only numbers"),
        ("True", "only numbers"),
        ("_hidden + 1", "'_hidden'"),
        ("open(a)", "allowed functions are abs, clip, exp"),
        ("log(a, base=2)", "positional arguments only"),
        ("clip(a, 0)", "takes 3 argument"),
        ("a % 2", "operator"),
        ("a and b", "boolean operator"),
        ("a if b else c", "conditional expression"),
        ("a +", "cannot parse"),
        ("(a).__class__.__bases__", "attribute access"),
        ("[a, b]", "List"),
    ],
)
def test_whitelist_rejects(expr: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_expression(expr)
    assert message in str(info.value)


def test_inputs_are_the_column_names_not_the_functions() -> None:
    e = parse_expression("safe_div(monthly_charges, sessions_last_30d, 0) + log1p(x) * 2")
    assert e.inputs == frozenset({"monthly_charges", "sessions_last_30d", "x"})


def test_evaluation_follows_numpy_semantics() -> None:
    a = np.array([1.0, 2.0, 0.0, np.nan])
    b = np.array([0.0, 4.0, 0.0, 1.0])
    cols = {"a": a, "b": b}
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(parse_expression("a / b").evaluate(cols), a / b)  # inf and nan, no error
    np.testing.assert_array_equal(parse_expression("safe_div(a, b, -1)").evaluate(cols), [-1.0, 0.5, -1.0, np.nan])
    np.testing.assert_array_equal(parse_expression("a >= 1").evaluate(cols), [1.0, 1.0, 0.0, np.nan])
    np.testing.assert_array_equal(parse_expression("where(a > 1, a, -b)").evaluate(cols), [-0.0, 2.0, -0.0, np.nan])
    np.testing.assert_allclose(parse_expression("-a ** 2 + sqrt(b)").evaluate(cols), -(a**2) + np.sqrt(b))
    np.testing.assert_array_equal(parse_expression("clip(b, 0.5, 2)").evaluate(cols), [0.5, 2.0, 0.5, 1.0])
    np.testing.assert_array_equal(parse_expression("maximum(a, b)").evaluate(cols), np.maximum(a, b))
    out = parse_expression("0 < b <= 1").evaluate(cols)
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.0, 1.0])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(parse_expression("7").evaluate(cols), np.full(4, 7.0))


def test_add_derived_uses_earlier_features_nullable_columns_and_copies() -> None:
    df = pd.DataFrame({"s": pd.array([10, 0, None], dtype="Int64"), "m": [3.0, 4.0, 5.0]})
    out = add_derived(df, feats(total="s * m", per_day="total / 30", flag="per_day > 0.5"))
    assert list(out.columns) == ["s", "m", "total", "per_day", "flag"]
    np.testing.assert_allclose(out["total"], [30.0, 0.0, np.nan])
    np.testing.assert_allclose(out["per_day"], [1.0, 0.0, np.nan])
    np.testing.assert_array_equal(out["flag"], [1.0, 0.0, np.nan])
    assert list(df.columns) == ["s", "m"]  # input untouched


def test_add_derived_unknown_column_suggests_closest() -> None:
    df = pd.DataFrame({"sessions_last_30d": [1.0]})
    with pytest.raises(ExpressionError, match=r"'rate'.*'sesions_last_30d'.*did you mean 'sessions_last_30d'"):
        add_derived(df, feats(rate="sesions_last_30d / 30"))


def test_add_derived_rejects_forward_reference_and_non_numeric() -> None:
    df = pd.DataFrame({"x": [1.0], "plan": pd.Categorical(["basic"])})
    with pytest.raises(ExpressionError, match="'later'"):
        add_derived(df, feats(first="later + 1", later="x"))
    with pytest.raises(ExpressionError, match=r"'plan'.*not numeric"):
        add_derived(df, feats(bad="plan * 2"))


def test_lineage_is_transitive_and_sorted() -> None:
    lineage = derived_lineage(feats(a="z * y", b="a + x", c="log(b) + a", d="1"))
    assert lineage == {"a": ["y", "z"], "b": ["x", "y", "z"], "c": ["x", "y", "z"], "d": []}


def test_check_expressions_reports_every_problem_at_once() -> None:
    derived = feats(
        ok="x + 1",
        typo="sesion_count * 2",
        broken="x +",
        fwd="later * 2",
        later="x",
        loop_a="loop_b + 1",
        loop_b="loop_a + 1",
        me="me + 1",
        evil="x.__class__",
        x="2",
    )
    problems = check_expressions(derived, ["x", "session_count"])
    by_name: dict[str, list[str]] = {}
    for name, reason in problems:
        by_name.setdefault(name, []).append(reason)
    assert set(by_name) == {"typo", "broken", "fwd", "loop_a", "me", "evil", "x"}
    assert "did you mean 'session_count'" in by_name["typo"][0]
    assert "cannot parse" in by_name["broken"][0]
    assert "forward reference to 'later'" in by_name["fwd"][0]
    assert "cycle loop_a -> loop_b -> loop_a" in by_name["loop_a"][0]
    assert "cycle me -> me" in by_name["me"][0]
    assert "existing column" in by_name["x"][0]
    assert [name for name, _ in problems] == sorted((n for n, _ in problems), key=list(derived).index)


def test_seed_spec_expressions_are_valid_against_the_contract() -> None:
    spec = yaml.safe_load((ROOT / "specs" / "streamflow_churn.yaml").read_text())
    contract = yaml.safe_load((ROOT / "conf" / "contract" / "streamflow.yaml").read_text())
    derived = {name: DerivedFeature(**body) for name, body in spec["features"]["derived"].items()}
    assert check_expressions(derived, contract["columns"]) == []
    assert derived_lineage(derived)["engagement_intensity"] == ["avg_session_minutes", "sessions_last_30d"]

"""Keel engine: each bad input is a test asserting the report by name and the row invariant."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.contracts.result import REASONS_COL, ROW_COL
from pipeline.contracts.validate import validate_frame
from tests.unit.contracts_fixtures import as_csv_strings, interactions, load_contract


def _invariant(r) -> None:
    assert r.rows_in == len(r.accepted) + len(r.quarantined)


def _reasons(r) -> dict[int, str]:
    return dict(zip(r.quarantined[ROW_COL].tolist(), r.quarantined[REASONS_COL].tolist(), strict=True))


def test_clean_frame_is_accepted_with_contract_dtypes():
    r = validate_frame(interactions(), load_contract("streamrec_interactions"))
    _invariant(r)
    assert r.ok and len(r.quarantined) == 0 and r.check_counts == {}
    assert r.accepted["interaction_id"].dtype == np.int64
    assert r.accepted["watch_minutes"].dtype == np.float64
    assert r.accepted["timestamp"].dtype == "datetime64[ns]"
    assert list(r.accepted["platform"].cat.categories) == ["web", "ios", "android", "tv"]
    json.dumps(r.to_dict())


def test_nan_and_inf_in_non_nullable_float():
    df = interactions()
    df.loc[3, "watch_minutes"] = np.nan
    df.loc[7, "watch_minutes"] = np.inf
    df.loc[8, "watch_minutes"] = -np.inf
    r = validate_frame(df, load_contract("streamrec_interactions"))
    _invariant(r)
    reasons = _reasons(r)
    assert reasons == {
        3: "watch_minutes: null",
        7: "watch_minutes: not_finite (inf)",
        8: "watch_minutes: not_finite (-inf)",
    }
    assert r.check_counts == {"watch_minutes:null": 1, "watch_minutes:not_finite": 2}
    assert r.per_column == {"watch_minutes": {"null": 1, "not_finite": 2}}


def test_strings_in_numeric_columns_of_csv_frame():
    df = as_csv_strings(interactions(20))
    df.loc[2, "position"] = "abc"
    df.loc[4, "watch_minutes"] = "12,5"
    df.loc[5, "user_id"] = None
    df.loc[6, "user_id"] = "-3"
    df.loc[9, "position"] = "2.5"
    r = validate_frame(df, load_contract("streamrec_interactions"))
    _invariant(r)
    assert not r.schema_problems
    assert _reasons(r) == {
        2: "position: not_a_number ('abc')",
        4: "watch_minutes: not_a_number ('12,5')",
        5: "user_id: null",
        6: "user_id: below_min (-3 < 0)",
        9: "position: not_an_integer (2.5)",
    }
    assert r.accepted["position"].dtype == np.int64 and len(r.accepted) == 15
    assert r.quarantined.loc[0, "position"] == "abc"  # original value kept


def test_missing_column_is_a_schema_problem_not_quarantine():
    df = interactions().drop(columns=["propensity"])
    r = validate_frame(df, load_contract("streamrec_interactions"))
    _invariant(r)
    assert not r.ok
    assert [(p.column, p.problem) for p in r.schema_problems] == [("propensity", "missing_column")]
    assert len(r.quarantined) == 0 and "propensity" in r.policy_reason


def test_extra_column_is_an_error_by_default():
    df = interactions().assign(debug_flag=1)
    r = validate_frame(df, load_contract("streamrec_interactions"))
    _invariant(r)
    assert not r.ok
    assert [(p.column, p.problem) for p in r.schema_problems] == [("debug_flag", "unexpected_column")]


def test_extra_column_allowed_is_dropped_from_accepted():
    df = interactions().assign(debug_flag=1)
    df.loc[0, "clicked"] = 5
    r = validate_frame(df, load_contract("streamrec_interactions", allow_extra_columns=True))
    _invariant(r)
    assert r.ok and not r.schema_problems
    assert "debug_flag" not in r.accepted.columns
    assert "debug_flag" in r.quarantined.columns  # quarantine keeps everything


def test_zero_row_frame():
    df = interactions().iloc[:0]
    r = validate_frame(df, load_contract("streamrec_interactions"))
    _invariant(r)
    assert r.rows_in == 0 and r.quarantine_fraction == 0.0
    assert not r.ok and "fewer than min_rows 1" in r.policy_reason
    assert ROW_COL in r.quarantined.columns
    assert validate_frame(df, load_contract("streamrec_interactions", min_rows=0)).ok


def test_zero_column_frame():
    r = validate_frame(pd.DataFrame(), load_contract("streamrec_interactions"))
    _invariant(r)
    assert not r.ok
    assert {p.problem for p in r.schema_problems} == {"missing_column"}
    assert len(r.schema_problems) == 9


def test_unknown_category():
    df = interactions()
    df.loc[11, "platform"] = "xbox"
    df.loc[12, "platform"] = None
    r = validate_frame(df, load_contract("streamrec_interactions"))
    _invariant(r)
    assert _reasons(r) == {11: "platform: not_allowed ('xbox')", 12: "platform: null"}


def test_unknown_category_in_pandas_categorical():
    df = interactions()
    df["platform"] = pd.Categorical(df["platform"])
    df["platform"] = df["platform"].cat.add_categories(["xbox"])
    df.loc[11, "platform"] = "xbox"
    r = validate_frame(df, load_contract("streamrec_interactions"))
    assert _reasons(r) == {11: "platform: not_allowed ('xbox')"}


def test_duplicates_on_unique_column_keep_first():
    df = interactions()
    df.loc[[10, 20, 30], "interaction_id"] = 5
    r = validate_frame(df, load_contract("streamrec_interactions"))
    _invariant(r)
    assert _reasons(r) == {i: "interaction_id: duplicate (5)" for i in (10, 20, 30)}
    assert 5 in r.accepted.index  # the first occurrence stays


def test_wrong_dtype_datetime_contract_on_floats():
    df = interactions()
    df["timestamp"] = np.linspace(0, 1, len(df))
    r = validate_frame(df, load_contract("streamrec_interactions"))
    _invariant(r)
    assert not r.ok
    [p] = r.schema_problems
    assert (p.column, p.problem) == ("timestamp", "wrong_dtype") and "float64" in p.detail
    assert "timestamp" not in r.accepted.columns


def test_bad_datetime_string_is_row_level():
    df = as_csv_strings(interactions(10))
    df.loc[1, "timestamp"] = "2024-13-45"
    r = validate_frame(df, load_contract("streamrec_interactions"))
    assert _reasons(r) == {1: "timestamp: bad_datetime ('2024-13-45')"}
    assert r.accepted["timestamp"].dtype == "datetime64[ns]"


def test_nullable_int_becomes_Int64():
    from pipeline.spec.schema import ContractSpec

    c = ContractSpec(name="t", columns={"n": {"dtype": "int", "nullable": True, "min": 0}})
    r = validate_frame(pd.DataFrame({"n": ["1", None, "3", "-1"]}), c)
    _invariant(r)
    assert str(r.accepted["n"].dtype) == "Int64" and r.accepted["n"].isna().sum() == 1
    assert _reasons(r) == {3: "n: below_min (-1 < 0)"}


def test_policy_fail_and_fraction():
    df = interactions(100)
    df.loc[0, "clicked"] = 3
    assert validate_frame(df, load_contract("streamrec_interactions")).ok  # 1% <= 5%
    r = validate_frame(df, load_contract("streamrec_interactions", on_violation="fail"))
    assert not r.ok and "fail" in r.policy_reason
    df.loc[:9, "clicked"] = 3
    r = validate_frame(df, load_contract("streamrec_interactions"))
    assert not r.ok and "max_quarantine_fraction" in r.policy_reason


def _independent_bad_rows(df: pd.DataFrame) -> set[int]:
    """Straightforward per-row reimplementation of the interactions contract."""
    bad = set()
    seen: set = set()
    for i, row in enumerate(df.itertuples(index=False)):
        fails = False
        for col, lo, hi in (
            ("user_id", 0, None),
            ("item_id", 0, None),
            ("position", 0, 1000),
            ("watch_minutes", 0, 600),
            ("propensity", 0, 1),
        ):
            v = getattr(row, col)
            if v is None or not np.isfinite(v) or v < lo or (hi is not None and v > hi):
                fails = True
        if row.clicked not in (0, 1) or row.platform not in ("web", "ios", "android", "tv"):
            fails = True
        if row.interaction_id in seen:
            fails = True
        seen.add(row.interaction_id)
        if fails:
            bad.add(i)
    return bad


@pytest.mark.parametrize("seed", range(5))
def test_random_corruption_matches_independent_implementation(seed):
    rng = np.random.default_rng(seed)
    df = interactions(500, seed)
    df["watch_minutes"] = df["watch_minutes"].astype(float)
    for _ in range(60):
        i = int(rng.integers(0, len(df)))
        kind = rng.integers(0, 6)
        if kind == 0:
            df.loc[i, "watch_minutes"] = rng.choice([np.nan, np.inf, -1.0, 601.0])
        elif kind == 1:
            df.loc[i, "position"] = int(rng.choice([-5, 1001]))
        elif kind == 2:
            df.loc[i, "clicked"] = 2
        elif kind == 3:
            df.loc[i, "platform"] = "fax"
        elif kind == 4:
            df.loc[i, "interaction_id"] = int(rng.integers(0, len(df)))
        else:
            df.loc[i, "propensity"] = rng.choice([1.5, -0.1])
    r = validate_frame(df, load_contract("streamrec_interactions"))
    _invariant(r)
    assert set(r.quarantined[ROW_COL].tolist()) == _independent_bad_rows(df)
    assert r.quarantined[REASONS_COL].str.len().min() > 0


def test_nulls_in_pandas_nullable_ints_are_named() -> None:
    """Regression: Int64 columns report 'kind' i like numpy ints but can hold <NA>."""
    from pipeline.spec.schema import ContractSpec

    contract = ContractSpec(name="x", columns={"a": {"dtype": "int", "min": 0, "max": 10}})
    frame = pd.DataFrame({"a": pd.array([1, None, 30], dtype="Int64")})
    result = validate_frame(frame, contract)
    assert result.quarantined[REASONS_COL].tolist() == ["a: null", "a: above_max (30 > 10)"]


def test_every_quarantined_row_of_the_synthetic_data_has_a_reason() -> None:
    from pipeline.data.synthetic.streamflow import generate
    from pipeline.spec.schema import ScenarioSpec

    contract = load_contract("streamflow")
    frame = generate(5000, 3, ScenarioSpec(corrupt_fraction=0.05))
    result = validate_frame(frame, contract)
    assert result.rows_in == result.rows_accepted + result.rows_quarantined
    assert 0.03 < result.quarantine_fraction < 0.08
    assert (result.quarantined[REASONS_COL].str.len() > 0).all()


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_parallel_pass_matches_the_serial_one(monkeypatch, chunk) -> None:
    """The row-chunked, threaded fail-mask pass (used on big frames) gives exactly the serial result."""
    import pipeline.contracts.validate as v

    rng = np.random.default_rng(chunk)
    df = as_csv_strings(interactions(300, chunk))
    df["watch_minutes"] = rng.uniform(0, 700, len(df))  # a numpy float column: its null mask is lazy
    df.loc[[3, 50], "watch_minutes"] = [np.nan, np.inf]
    df.loc[[7, 8, 9], "platform"] = ["fax", None, "web"]
    df.loc[[10, 20], "interaction_id"] = "5"
    df.loc[11, "position"] = "abc"
    df["platform"] = df["platform"].astype("category")
    contract = load_contract("streamrec_interactions", max_quarantine_fraction=1.0)
    serial = validate_frame(df, contract)
    monkeypatch.setattr(v, "_PARALLEL_ROWS", 0)
    monkeypatch.setattr(v, "_WORKERS", 2)
    monkeypatch.setattr(v, "_CHUNK", chunk)
    chunked = validate_frame(df, contract)
    _invariant(chunked)
    assert len(serial.quarantined) > 20 and chunked.check_counts == serial.check_counts
    pd.testing.assert_frame_equal(chunked.accepted, serial.accepted, check_index_type=True)
    pd.testing.assert_frame_equal(chunked.quarantined, serial.quarantined)


def test_accepted_index_keeps_labels_and_range_type() -> None:
    """index[keep] semantics: positions reused as labels for a default RangeIndex, RangeIndex when equally spaced."""
    df = interactions(50)
    df.loc[49, "clicked"] = 3  # only the last row fails: the kept rows are still a range
    r = validate_frame(df, load_contract("streamrec_interactions"))
    assert isinstance(r.accepted.index, pd.RangeIndex) and list(r.accepted.index) == list(range(49))
    df.loc[[5, 17], "clicked"] = 3
    r = validate_frame(df, load_contract("streamrec_interactions", max_quarantine_fraction=1.0))
    assert r.accepted.index.dtype == np.int64 and 5 not in r.accepted.index and 6 in r.accepted.index
    df.index = pd.RangeIndex(100, 200, 2, name="row")
    r = validate_frame(df, load_contract("streamrec_interactions", max_quarantine_fraction=1.0))
    assert r.accepted.index.name == "row" and 110 not in r.accepted.index and 112 in r.accepted.index

"""Synthetic generators: contract conformance, determinism, planted signal, scenario knobs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.data.errors import DataSourceError
from pipeline.data.synthetic import streamflow, streamrec
from pipeline.spec.schema import ColumnContract, ContractSpec, ScenarioSpec

CONTRACTS = Path(__file__).resolve().parents[2] / "conf" / "contract"
NUMERIC = ["sessions_last_30d", "avg_session_minutes", "days_since_last_activity", "monthly_charges",
           "support_tickets_last_90d", "tenure_months", "distinct_titles_last_30d"]  # fmt: skip


def assert_same(a: pd.DataFrame | pd.Series, b: pd.DataFrame | pd.Series) -> None:
    """Exact equality incl. dtypes; faster than pandas' assert_*_equal on categoricals."""
    a_types = a.dtypes.tolist() if isinstance(a, pd.DataFrame) else [a.dtype]
    b_types = b.dtypes.tolist() if isinstance(b, pd.DataFrame) else [b.dtype]
    assert a_types == b_types
    assert a.equals(b)


def contract(name: str) -> ContractSpec:
    return ContractSpec(**yaml.safe_load((CONTRACTS / f"{name}.yaml").read_text()))


def violating_rows(df: pd.DataFrame, spec: ContractSpec) -> np.ndarray:
    """Rows breaking the contract, by direct checks (independent of the generators' own rules)."""
    bad = np.zeros(len(df), dtype=bool)
    for name, col in spec.columns.items():
        values = df[name]
        missing = values.isna().to_numpy()
        if not col.nullable:
            bad |= missing
        if col.dtype in ("int", "float"):
            x = values.to_numpy(dtype=np.float64, na_value=np.nan)
            if col.min is not None:
                bad |= x < col.min
            if col.max is not None:
                bad |= x > col.max
        if col.allowed is not None:
            allowed = {str(v) for v in col.allowed}
            bad |= ~missing & ~values.astype(str).isin(allowed).to_numpy()
        if col.unique:
            bad |= values.duplicated(keep="first").to_numpy()
    return bad


def dtype_ok(series: pd.Series, col: ColumnContract) -> bool:
    checks = {
        "int": pd.api.types.is_integer_dtype,
        "float": pd.api.types.is_float_dtype,
        "str": pd.api.types.is_string_dtype,
        "category": lambda d: isinstance(d, pd.CategoricalDtype),
        "datetime": pd.api.types.is_datetime64_any_dtype,
    }
    return bool(checks[col.dtype](series.dtype))


def rank_auc(score: np.ndarray, label: np.ndarray) -> float:
    ranks = pd.Series(score).rank().to_numpy()
    pos = label == 1
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


@pytest.fixture(scope="module")
def flow() -> pd.DataFrame:
    return streamflow.generate(20_000, 7, ScenarioSpec())


@pytest.fixture(scope="module")
def rec() -> dict[str, pd.DataFrame]:
    return streamrec.generate(50_000, 11, ScenarioSpec())


# ---------------------------------------------------------------- contract conformance


@pytest.mark.parametrize(("name", "which"), [("streamflow", "flow"), ("streamrec_interactions", "rec")])
def test_clean_output_conforms_to_contract(name: str, which: str, request: pytest.FixtureRequest) -> None:
    data = request.getfixturevalue(which)
    df = data if isinstance(data, pd.DataFrame) else data["interactions"]
    spec = contract(name)
    assert list(df.columns) == list(spec.columns)
    wrong = [c for c, col in spec.columns.items() if not dtype_ok(df[c], col)]
    assert wrong == []
    assert violating_rows(df, spec).sum() == 0


@pytest.mark.parametrize(("module", "name"), [(streamflow, "streamflow"), (streamrec, "streamrec_interactions")])
def test_generator_rules_mirror_the_contract(module: object, name: str) -> None:
    spec = contract(name)
    rules = module.RULES  # type: ignore[attr-defined]
    assert list(rules) == list(spec.columns)
    for column, col in spec.columns.items():
        rule = rules[column]
        assert (rule.min, rule.max, rule.unique, rule.nullable) == (col.min, col.max, col.unique, col.nullable), column
        if col.allowed is not None and col.dtype == "category":
            assert list(rule.allowed) == col.allowed, column


# ---------------------------------------------------------------- determinism


def test_same_seed_is_byte_identical_and_other_seed_differs(flow: pd.DataFrame) -> None:
    again = streamflow.generate(20_000, 7, ScenarioSpec())
    assert_same(flow, again)
    assert (pd.util.hash_pandas_object(flow) == pd.util.hash_pandas_object(again)).all()
    other = streamflow.generate(20_000, 8, ScenarioSpec())
    assert not flow["sessions_last_30d"].equals(other["sessions_last_30d"])


def test_streamrec_is_deterministic() -> None:
    a = streamrec.generate(5_000, 3, ScenarioSpec(corrupt_fraction=0.05))
    b = streamrec.generate(5_000, 3, ScenarioSpec(corrupt_fraction=0.05))
    for table in a:
        assert_same(a[table], b[table])
    assert not a["interactions"]["item_id"].equals(
        streamrec.generate(5_000, 4, ScenarioSpec())["interactions"]["item_id"]
    )


# ---------------------------------------------------------------- planted signal (streamflow)


def test_churn_rate_and_signal_are_realistic(flow: pd.DataFrame) -> None:
    y = flow["churned"].to_numpy()
    assert 0.10 <= y.mean() <= 0.20
    assert flow.loc[y == 1, "sessions_last_30d"].mean() < 0.8 * flow.loc[y == 0, "sessions_last_30d"].mean()
    assert rank_auc(-flow["sessions_last_30d"].to_numpy(float), y) > 0.65
    assert rank_auc(flow["days_since_last_activity"].to_numpy(float), y) > 0.65
    by_plan = flow.groupby("plan_type", observed=True)["churned"].mean()
    assert by_plan["basic"] > by_plan["family"]
    # Not a trivial problem: no single feature separates the classes almost perfectly.
    assert all(rank_auc(flow[c].to_numpy(float), y) < 0.85 for c in NUMERIC)


def test_snapshots_are_weekly_time_ordered_with_unique_ids(flow: pd.DataFrame) -> None:
    dates = flow["snapshot_date"]
    assert dates.is_monotonic_increasing and dates.nunique() == 12
    assert set(dates.diff().dropna().unique()) <= {pd.Timedelta(0), pd.Timedelta(days=7)}
    assert flow["subscriber_id"].is_unique and flow["subscriber_id"].iloc[0] == "sub_000001"
    assert 0 < flow["age_band"].isna().mean() < 0.1


# ---------------------------------------------------------------- scenario knobs


def others_unchanged(base: pd.DataFrame, changed: pd.DataFrame, touched: set[str]) -> None:
    for column in base.columns:
        if column not in touched:
            assert_same(base[column], changed[column])


def test_drift_shifts_only_the_named_feature_by_k_std(flow: pd.DataFrame) -> None:
    k = 1.5
    drifted = streamflow.generate(20_000, 7, ScenarioSpec(drift={"days_since_last_activity": k}))
    std = flow["days_since_last_activity"].std(ddof=0)
    shift = drifted["days_since_last_activity"].mean() - flow["days_since_last_activity"].mean()
    assert shift == pytest.approx(k * std, abs=0.5)
    others_unchanged(flow, drifted, {"days_since_last_activity", "churned"})
    assert drifted["churned"].mean() > flow["churned"].mean()  # a real population change moves churn


def test_unit_bug_scales_by_factor_stays_in_range_and_keeps_labels(flow: pd.DataFrame) -> None:
    bugged = streamflow.generate(20_000, 7, ScenarioSpec(unit_bug={"avg_session_minutes": 1 / 60}))
    ratio = bugged["avg_session_minutes"].median() / flow["avg_session_minutes"].median()
    assert ratio == pytest.approx(1 / 60, rel=0.01)
    assert bugged["avg_session_minutes"].between(0, 600).all()
    others_unchanged(flow, bugged, {"avg_session_minutes"})


def test_unit_bug_upwards_is_clipped_to_contract_max(flow: pd.DataFrame) -> None:
    bugged = streamflow.generate(20_000, 7, ScenarioSpec(unit_bug={"avg_session_minutes": 60}))
    assert bugged["avg_session_minutes"].max() == 600
    assert violating_rows(bugged, contract("streamflow")).sum() == 0


def test_segment_shift_moves_one_segment_only(flow: pd.DataFrame) -> None:
    k = 2.0
    shifted = streamflow.generate(20_000, 7, ScenarioSpec(segment_shift={"premium": {"monthly_charges": k}}))
    premium = (flow["plan_type"] == "premium").to_numpy()
    delta = shifted["monthly_charges"] - flow["monthly_charges"]
    assert delta[premium].to_numpy() == pytest.approx(k * flow["monthly_charges"].std(ddof=0))
    assert (delta[~premium] == 0).all()
    others_unchanged(flow, shifted, {"monthly_charges", "churned"})


def test_scenario_naming_unknown_feature_is_an_error() -> None:
    with pytest.raises(DataSourceError, match="sessions_last_31d"):
        streamflow.generate(100, 0, ScenarioSpec(drift={"sessions_last_31d": 1.0}))
    with pytest.raises(DataSourceError, match="student"):
        streamflow.generate(100, 0, ScenarioSpec(segment_shift={"student": {"monthly_charges": 1.0}}))


@pytest.mark.parametrize(("generate", "name", "table"), [
    (streamflow.generate, "streamflow", None), (streamrec.generate, "streamrec_interactions", "interactions"),
])  # fmt: skip
def test_corrupt_fraction_gives_that_share_of_violating_rows(generate: object, name: str, table: str | None) -> None:
    out = generate(20_000, 5, ScenarioSpec(corrupt_fraction=0.02))  # type: ignore[operator]
    df = out if table is None else out[table]
    bad = violating_rows(df, contract(name))
    assert bad.mean() == pytest.approx(0.02, abs=0.002)


def test_corruption_uses_every_violation_kind() -> None:
    df = streamflow.generate(20_000, 5, ScenarioSpec(corrupt_fraction=0.02))
    numeric = df[NUMERIC].astype("float64")
    assert numeric.isna().any(axis=None)
    assert (numeric < 0).any(axis=None)
    assert (df["sessions_last_30d"] > 1000).any() or (df["avg_session_minutes"] > 600).any()
    assert "student" in set(df["plan_type"].astype(str))
    assert df["subscriber_id"].duplicated().any()
    assert isinstance(df["sessions_last_30d"].dtype, pd.Int64Dtype) or df[NUMERIC].isna().any(axis=None)


# ---------------------------------------------------------------- streamrec structure


def test_streamrec_tables_sizes_and_keys(rec: dict[str, pd.DataFrame]) -> None:
    inter, users, items, creators = rec["interactions"], rec["users"], rec["items"], rec["creators"]
    assert len(inter) == 50_000 and len(users) == 2_500 and len(items) == 1_000
    assert {"user_id", "signup_date", "language", "is_new", "age_band"} <= set(users.columns)
    assert {"item_id", "creator_id", "language", "genre", "release_date", "duration_minutes"} <= set(items.columns)
    assert list(creators.columns) == ["creator_id", "language", "is_new_creator"]
    assert inter["user_id"].isin(users["user_id"]).all() and inter["item_id"].isin(items["item_id"]).all()
    assert items["creator_id"].isin(creators["creator_id"]).all()
    assert inter["timestamp"].is_monotonic_increasing
    span = inter["timestamp"].max() - inter["timestamp"].min()
    assert pd.Timedelta(days=50) < span <= pd.Timedelta(weeks=8)


def test_small_streamrec_has_at_least_50_users_and_items() -> None:
    tables = streamrec.generate(100, 0, ScenarioSpec())
    assert len(tables["users"]) == 50 and len(tables["items"]) == 50


def test_streamrec_biases_are_planted(rec: dict[str, pd.DataFrame]) -> None:
    inter, users, items = rec["interactions"], rec["users"], rec["items"]
    counts = inter["item_id"].value_counts()
    assert counts.iloc[: len(items) // 10].sum() / len(inter) > 0.4  # popularity head
    shown_hi = (items["language"].to_numpy()[inter["item_id"]] == "hi").mean()
    assert shown_hi < 0.5 * (items["language"] == "hi").mean()  # under-exposed language
    per_user = inter["user_id"].value_counts().reindex(users["user_id"], fill_value=0)
    assert per_user[users["is_new"].to_numpy()].mean() < 0.3 * per_user[~users["is_new"].to_numpy()].mean()
    ctr = inter.groupby("position")["clicked"].mean()
    assert ctr.loc[0] > 2 * ctr.loc[20:].mean()  # position bias
    assert inter["propensity"].gt(0).all() and inter["propensity"].le(1).all()


def test_streamrec_clicks_follow_user_item_taste() -> None:
    """Clicks carry a user x item signal beyond item popularity: what a two-tower model learns."""
    rec = streamrec.generate(30_000, 2, ScenarioSpec())
    inter, users, items = rec["interactions"], rec["users"], rec["items"]
    user, item, y = inter["user_id"].to_numpy(), inter["item_id"].to_numpy(), inter["clicked"].to_numpy()
    same_language = users["language"].to_numpy()[user] == items["language"].to_numpy()[item]
    assert y[same_language].mean() > 1.15 * y[~same_language].mean()
    cut = int(0.7 * len(inter))
    clicks = np.zeros((len(users), len(items)))
    np.add.at(clicks, (user[:cut], item[:cut]), y[:cut])
    # Rank-12 projection of the click matrix (randomised range finder: a full SVD is slow on small CI boxes).
    basis, _ = np.linalg.qr(clicks @ (clicks.T @ (clicks @ np.random.default_rng(0).normal(size=(len(items), 12)))))
    low_rank = basis.T @ clicks
    score = np.einsum("ij,ji->i", basis[user[cut:]], low_rank[:, item[cut:]])
    item_ctr = pd.Series(y[:cut]).groupby(item[:cut]).mean().reindex(range(len(items)), fill_value=0).to_numpy()
    bins = pd.qcut(item_ctr[item[cut:]], 5, labels=False, duplicates="drop")
    within = [rank_auc(score[bins == b], y[cut:][bins == b]) for b in np.unique(bins)]
    assert np.mean(within) > 0.55  # taste predicts clicks even among equally popular items


def test_streamrec_unit_bug_on_watch_minutes(rec: dict[str, pd.DataFrame]) -> None:
    bugged = streamrec.generate(50_000, 11, ScenarioSpec(unit_bug={"watch_minutes": 1 / 60}))["interactions"]
    clicked = rec["interactions"]["clicked"] == 1
    ratio = bugged["watch_minutes"][clicked].median() / rec["interactions"]["watch_minutes"][clicked].median()
    assert ratio == pytest.approx(1 / 60, rel=0.01)
    others_unchanged(rec["interactions"], bugged, {"watch_minutes"})


# ---------------------------------------------------------------- earlier snapshot (masked churners)


def test_previous_snapshot_same_subscribers_four_weeks_earlier(flow: pd.DataFrame) -> None:
    previous = streamflow.generate_previous(20_000, 7, ScenarioSpec())
    assert_same(previous, streamflow.generate_previous(20_000, 7, ScenarioSpec()))
    spec = contract("streamflow")
    assert list(previous.columns) == list(spec.columns)
    assert [c for c, col in spec.columns.items() if not dtype_ok(previous[c], col)] == []
    assert violating_rows(previous, spec).sum() == 0
    assert previous["subscriber_id"].equals(flow["subscriber_id"])
    assert ((flow["snapshot_date"] - previous["snapshot_date"]) == pd.Timedelta(weeks=4)).all()
    assert (previous["churned"] == 0).all()  # all of them were still subscribers four weeks later
    others_unchanged(
        flow,
        previous,
        {"snapshot_date", "sessions_last_30d", "distinct_titles_last_30d", "tenure_months", "churned"},
    )
    change = (flow["sessions_last_30d"] - previous["sessions_last_30d"]).groupby(flow["plan_type"], observed=True)
    medians = change.median()
    assert medians.idxmax() == "premium" and medians.idxmin() == "basic"
    grew = flow["sessions_last_30d"] - previous["sessions_last_30d"]
    assert grew[flow["churned"] == 1].mean() < 0.3 * grew[flow["churned"] == 0].mean()  # churners barely grew
    assert (previous["distinct_titles_last_30d"] <= previous["sessions_last_30d"]).all()


def test_previous_snapshot_follows_the_scenario_but_is_not_corrupted() -> None:
    scenario = ScenarioSpec(unit_bug={"avg_session_minutes": 1 / 60}, corrupt_fraction=0.02)
    previous = streamflow.generate_previous(5_000, 3, scenario)
    current = streamflow.generate(5_000, 3, scenario)
    assert violating_rows(previous, contract("streamflow")).sum() == 0
    clean = ~violating_rows(current, contract("streamflow"))
    assert_same(previous["avg_session_minutes"][clean], current["avg_session_minutes"][clean])

"""Masked churners: who is listed against their segment's median change, and who never is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data.errors import DataSourceError
from pipeline.data.synthetic import streamflow
from pipeline.scoring.masked import find_masked_churners, masked_churner_outputs
from pipeline.spec.load import load_spec
from pipeline.spec.schema import ScenarioSpec

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "streamflow_churn.yaml"

# (entity, segment, previous, current). Changes per segment:
#   A: -2, 4, 5, 10, 10, 12, 14 -> median 10, bar 5: a4 (-2) and a3 (4) listed; a6 (exactly 5) is not.
#   B: 0.5, 1.5, 2, 2, 3        -> median 2,  bar 1: b4 listed; b3 (1.5) is not, though A's bar would list it.
#   C: -5, -3, -3, -1, 0        -> median -3: a declining segment lists no one with direction increase.
ROWS = [
    ("a1", "A", 20, 30), ("a2", "A", 20, 32), ("a3", "A", 20, 24), ("a4", "A", 20, 18),
    ("a5", "A", 20, 30), ("a6", "A", 20, 25), ("a7", "A", 20, 34),
    ("b1", "B", 5, 7), ("b2", "B", 5, 7), ("b3", "B", 5, 6.5), ("b4", "B", 5, 5.5), ("b5", "B", 5, 8),
    ("c1", "C", 10, 7), ("c2", "C", 10, 7), ("c3", "C", 10, 9), ("c4", "C", 10, 5), ("c5", "C", 10, 10),
]  # fmt: skip


def snapshots() -> tuple[pd.DataFrame, pd.DataFrame]:
    ids, segments, before, after = map(list, zip(*ROWS, strict=True))
    previous = pd.DataFrame({"id": ids, "sessions": before, "plan": segments})
    current = pd.DataFrame({"id": ids, "sessions": after, "plan": segments})
    extra_current = pd.DataFrame(
        {
            "id": ["a_new", "a_null_now", "a_null_before", "no_segment"],
            "sessions": [0.0, np.nan, 1.0, 0.0],
            "plan": ["A", "A", "A", None],
        }
    )
    extra_previous = pd.DataFrame(
        {"id": ["a_null_now", "a_null_before", "no_segment", "gone"], "sessions": [50.0, np.nan, 50.0, 50.0]}
    )
    previous = pd.concat([previous.drop(columns="plan"), extra_previous], ignore_index=True)
    current = pd.concat([current, extra_current], ignore_index=True)
    current["plan"] = current["plan"].astype("category")
    return previous, current


def masked(**kwargs) -> pd.DataFrame:
    previous, current = snapshots()
    return find_masked_churners(previous, current, "id", "sessions", "plan", **kwargs).frame


def test_lists_exactly_the_entities_below_their_own_segments_bar() -> None:
    previous, current = snapshots()
    result = find_masked_churners(previous, current, "id", "sessions", "plan", fraction=0.5)
    assert result.frame["id"].tolist() == ["a4", "b4", "a3"]  # ranked by share of the expected change
    assert result.frame["rank"].tolist() == [1, 2, 3]
    assert result.expected == {"A": 10.0, "B": 2.0, "C": -3.0}
    assert result.compared == len(ROWS)  # new, null and segment-less entities are not compared
    row = result.frame.set_index("id").loc["a3"]
    assert (row["plan"], row["sessions_previous"], row["sessions_current"]) == ("A", 20, 24)
    assert (row["change"], row["expected_change"], row["share_of_expected"]) == (4, 10, pytest.approx(0.4))


def test_missing_previous_and_nulls_are_never_listed() -> None:
    listed = set(masked(fraction=1.0)["id"])
    assert not listed & {"a_new", "a_null_now", "a_null_before", "no_segment", "gone"}
    assert {"a4", "a3", "a6", "b4", "b3"} <= listed  # fraction 1: everyone below the median


def test_fraction_zero_lists_those_who_went_backwards_in_an_improving_segment() -> None:
    assert masked(fraction=0.0)["id"].tolist() == ["a4"]


def test_direction_decrease_judges_falling_segments_only() -> None:
    frame = masked(fraction=0.5, direction="decrease")
    assert frame["id"].tolist() == ["c5", "c3"]  # fell 0 and 1 where the segment fell 3
    assert frame["expected_change"].tolist() == [-3.0, -3.0]
    assert frame["share_of_expected"].tolist() == pytest.approx([0.0, 1 / 3])


def test_small_segments_have_no_expected_change() -> None:
    previous, current = snapshots()
    result = find_masked_churners(previous, current, "id", "sessions", "plan", min_segment_size=6)
    assert result.frame["id"].tolist() == ["a4", "a3"]
    assert result.expected == {"A": 10.0, "B": None, "C": None}


def test_ids_match_as_text_and_high_risk_is_marked() -> None:
    previous, current = snapshots()
    previous = previous[previous["id"].str.startswith("b")].assign(id=lambda f: f["id"].str[1:].astype(int))
    current = current[current["id"].str.startswith("b")].assign(id=lambda f: f["id"].str[1:])
    result = find_masked_churners(previous, current, "id", "sessions", "plan", flagged=pd.Series(["4", "9"]))
    assert result.frame[["id", "high_risk"]].values.tolist() == [["4", True]]


def test_write_gives_parquet_csv_and_count(tmp_path: Path) -> None:
    previous, current = snapshots()
    outputs = find_masked_churners(previous, current, "id", "sessions", "plan").write(tmp_path)
    assert outputs["masked_churners"] == 3 and outputs["masked_churners_compared"] == len(ROWS)
    assert pd.read_parquet(outputs["masked_churners_parquet"])["id"].tolist() == ["a4", "b4", "a3"]
    assert pd.read_csv(outputs["masked_churners_csv"])["id"].tolist() == ["a4", "b4", "a3"]


# ---------------------------------------------------------------- from a spec


@pytest.fixture(scope="module")
def current() -> pd.DataFrame:
    return streamflow.generate(3_000, 7, ScenarioSpec())


def test_default_spec_lists_synthetic_masked_churners_enriched_in_churners(tmp_path: Path, current) -> None:
    spec = load_spec(SPEC, ["data.rows=3000", "data.scenario.corrupt_fraction=0"]).spec
    outputs = masked_churner_outputs(spec, current, REPO, tmp_path)
    listing = pd.read_parquet(outputs["masked_churners_parquet"])
    assert outputs["masked_churners"] == len(listing) > 0
    assert outputs["masked_churners_compared"] == len(current)
    churned = current.set_index("subscriber_id")["churned"]
    assert churned[listing["subscriber_id"]].mean() > 2 * churned.mean()
    expected = listing.groupby("plan_type", observed=True)["expected_change"].first()
    planted = streamflow.SEGMENT_SESSION_GAIN  # churners barely grew, so medians sit a little below
    assert expected.to_dict() == {plan: pytest.approx(gain, abs=1.0) for plan, gain in planted.items()}
    assert expected.idxmax() == "premium"


def test_file_previous_and_derived_feature(tmp_path: Path, current) -> None:
    path = tmp_path / "previous.parquet"
    streamflow.generate_previous(3_000, 7, ScenarioSpec()).to_parquet(path)
    overrides = [f"masked_churners.previous={{source: {path}}}", "masked_churners.feature=engagement_intensity"]
    spec = load_spec(SPEC, overrides).spec
    outputs = masked_churner_outputs(spec, current, REPO, tmp_path / "run")
    listing = pd.read_csv(outputs["masked_churners_csv"])
    assert outputs["masked_churners"] == len(listing) > 0
    assert {"engagement_intensity_previous", "engagement_intensity_current"} <= set(listing.columns)


def test_disabled_or_absent_section_writes_nothing(tmp_path: Path, current) -> None:
    spec = load_spec(SPEC, ["masked_churners.enabled=false"]).spec
    assert masked_churner_outputs(spec, current, REPO, tmp_path) == {}
    spec = load_spec(SPEC, ["~masked_churners"]).spec
    assert masked_churner_outputs(spec, current, REPO, tmp_path) == {}
    assert not list(tmp_path.iterdir())


def test_previous_breaking_the_contract_is_a_data_error(tmp_path: Path, current) -> None:
    path = tmp_path / "previous.csv"
    current.drop(columns="plan_type").to_csv(path, index=False)
    spec = load_spec(SPEC, [f"masked_churners.previous={{source: {path}}}"]).spec
    with pytest.raises(DataSourceError, match=r"masked_churners\.previous .*plan_type"):
        masked_churner_outputs(spec, current, REPO, tmp_path)


def test_missing_previous_file_names_the_key(tmp_path: Path, current) -> None:
    spec = load_spec(SPEC, ["masked_churners.previous={source: nowhere.parquet}"]).spec
    with pytest.raises(DataSourceError, match=r"masked_churners\.previous: cannot read .*nowhere\.parquet"):
        masked_churner_outputs(spec, current, tmp_path, tmp_path)

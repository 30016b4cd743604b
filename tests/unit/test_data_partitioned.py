"""Partitioned Parquet sources (issue 17): a directory, a glob, file:// and memory:// URIs read as one table.

The table is the partitions concatenated in sorted path order, whatever form names them.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data.errors import DataSourceError
from pipeline.data.partitioned import is_partitioned, list_partitions
from pipeline.data.sources import load_path, load_source
from pipeline.spec.schema import SourceSpec


def _frame(n: int, start: int) -> pd.DataFrame:
    rng = np.random.default_rng(start)
    return pd.DataFrame(
        {"id": [f"u{start + i}" for i in range(n)], "x": rng.normal(size=n), "k": rng.integers(0, 9, n)}
    )


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    root = tmp_path / "table"
    root.mkdir()
    frames = [_frame(50, 0), _frame(5, 50).iloc[:0], _frame(70, 50), _frame(30, 120)]
    for i, frame in reversed(list(enumerate(frames))):  # written out of order: the read sorts by path
        frame.to_parquet(root / f"part-{i:03d}.parquet", index=False)
    (root / "_SUCCESS").write_text("")
    (root / "notes.txt").write_text("not data")
    return root, pd.concat(frames, ignore_index=True)


def test_directory_glob_and_file_uri_read_the_same_table(parts: tuple[Path, pd.DataFrame]) -> None:
    root, expected = parts
    for source in (str(root), f"{root}/*.parquet", f"file://{root}", "table", "table/part-*.parquet"):
        got = load_source(SourceSpec(source=source), root.parent)
        pd.testing.assert_frame_equal(got, expected)
    pd.testing.assert_frame_equal(load_path(root), expected)  # --data DIR


def test_memory_uri_reads_through_fsspec(parts: tuple[Path, pd.DataFrame]) -> None:
    import fsspec

    root, expected = parts
    fs = fsspec.filesystem("memory")
    base = f"/keel-{uuid.uuid4().hex[:8]}"
    for path in sorted(root.glob("part-*.parquet")):
        fs.pipe(f"{base}/{path.name}", path.read_bytes())
    try:
        got = load_source(SourceSpec(source=f"memory://{base}"), root)
        pd.testing.assert_frame_equal(got, expected)
        assert list_partitions(f"memory://{base}/part-00[02].parquet").urls() == [
            f"memory://{base}/part-000.parquet",
            f"memory://{base}/part-002.parquet",
        ]
    finally:
        fs.rm(base, recursive=True)


def test_what_counts_as_partitioned(tmp_path: Path) -> None:
    (tmp_path / "one.parquet").write_bytes(b"")
    assert not is_partitioned("one.parquet", tmp_path)
    assert not is_partitioned("synthetic:streamflow", tmp_path)
    assert is_partitioned(str(tmp_path), None) and is_partitioned("x/*.parquet") and is_partitioned("s3://b/k")


def test_an_empty_or_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match="holds no Parquet files"):
        load_source(SourceSpec(source="empty"), tmp_path)
    with pytest.raises(DataSourceError, match="holds no Parquet files"):
        load_source(SourceSpec(source="nothing/*.parquet"), tmp_path)
    with pytest.raises(DataSourceError, match="no such file or directory"):
        load_source(SourceSpec(source="file:///nonexistent-keel-dir"), tmp_path)

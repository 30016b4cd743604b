"""Partitioned Parquet sources: a directory, a glob, or an fsspec URI (file://, memory://, s3://...).

`data.source` may name many Parquet files instead of one. The partitions are the files, in sorted
order of their paths; the table is their concatenation in that order, so row positions (the quarantine's
row numbers, `keel score`'s `row`) are the same whether one process reads them (local executor, through
pyarrow.dataset) or each Dask worker reads its own (runtime.executor dask, pipeline/distributed/).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.data.errors import DataSourceError

PARQUET_SUFFIXES = (".parquet", ".pq")
GLOB_CHARS = ("*", "?", "[")


@dataclass(frozen=True)
class Partitions:
    """The files of a partitioned source, as paths their filesystem understands, with that filesystem."""

    source: str
    protocol: str  # "file", "memory", "s3", ...
    paths: list[str]

    def urls(self) -> list[str]:
        """Each partition as a URL another process can open (local files as plain paths)."""
        return list(self.paths) if self.protocol == "file" else [f"{self.protocol}://{p}" for p in self.paths]


def is_uri(source: str) -> bool:
    return "://" in source and not source.startswith("synthetic:")


def is_partitioned(source: str, base_dir: Path | None = None) -> bool:
    """A URI, a glob or a directory: anything but one local file (or a synthetic generator)."""
    if source.startswith("synthetic:"):
        return False
    if is_uri(source) or any(c in source for c in GLOB_CHARS):
        return True
    path = Path(source)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path.is_dir()


def list_partitions(source: str, base_dir: Path | None = None) -> Partitions:
    """The Parquet files `source` names, sorted; a DataSourceError when there are none."""
    import fsspec

    if not is_uri(source):
        path = Path(source)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        source_path = str(path)
    else:
        source_path = source
    try:
        fs, root = fsspec.core.url_to_fs(source_path)
    except (ImportError, ValueError) as exc:
        raise DataSourceError(f"cannot read {source}: {exc}") from None
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    protocol = "file" if protocol in ("file", "local") else protocol
    try:
        if any(c in root for c in GLOB_CHARS):
            found = fs.glob(root)
        elif fs.isdir(root):
            found = fs.find(root)
        elif fs.isfile(root):
            found = [root]
        else:
            raise DataSourceError(f"cannot read {source}: no such file or directory.")
    except OSError as exc:
        raise DataSourceError(f"cannot read {source}: {exc}") from None
    hidden = ("_", ".")  # _SUCCESS, _common_metadata, .part-0.tmp: never data
    files = sorted(p for p in found if p.lower().endswith(PARQUET_SUFFIXES) and not Path(p).name.startswith(hidden))
    if not files:
        raise DataSourceError(f"cannot read {source}: it holds no Parquet files (*.parquet, *.pq).")
    return Partitions(source, protocol, files)


def open_filesystem(protocol: str) -> Any:
    import fsspec

    return fsspec.filesystem(protocol)


def read_partition(url: str, columns: list[str] | None = None) -> pd.DataFrame:
    """One partition (a local path or a URL) as pandas; failures name the partition."""
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with fsspec.open(url, "rb") as handle:
            return pq.read_table(handle, columns=columns).to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataSourceError(f"cannot read partition {url}: {reason}") from exc


def partition_rows(url: str) -> int:
    """Rows of one partition from its Parquet footer (no data read)."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(url, "rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def load_partitioned(source: str, base_dir: Path | None = None) -> pd.DataFrame:
    """The local executor's read: every partition through pyarrow.dataset, concatenated in sorted path order."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    parts = list_partitions(source, base_dir)
    filesystem = None
    if parts.protocol != "file":
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        filesystem = PyFileSystem(FSSpecHandler(open_filesystem(parts.protocol)))
    try:
        dataset = ds.dataset(parts.paths, format="parquet", filesystem=filesystem)
        table = dataset.to_table()  # fragments keep the order of `paths`
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataSourceError(f"cannot read {source}: {reason}") from exc
    return table.to_pandas()

"""Load a spec's dataset from a Parquet/CSV path, a partitioned Parquet source or a synthetic generator.

CSV columns are read as strings on purpose: the contract layer, not the reader,
decides types, so one "abc" in a numeric column is a quarantined row rather than a
reader crash or a silently object-typed column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from pipeline.data.errors import DataSourceError
from pipeline.data.partitioned import is_partitioned, load_partitioned
from pipeline.spec.schema import SourceSpec

SYNTHETIC_PREFIX = "synthetic:"
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz")


def load_source(src: SourceSpec, base_dir: Path) -> pd.DataFrame:
    """Return the table `src` names; relative paths are resolved against `base_dir`."""
    if src.source.startswith(SYNTHETIC_PREFIX):
        return _load_synthetic(src)
    if is_partitioned(src.source, base_dir):  # a directory, glob or fsspec URI of Parquet files
        return load_partitioned(src.source, base_dir)
    path = Path(src.source)
    if not path.is_absolute():
        path = Path(base_dir) / path
    return load_path(path, csv_delimiter=src.csv_delimiter)


def load_path(path: Path, csv_delimiter: str = ",") -> pd.DataFrame:
    """Read one Parquet or CSV file (or a directory / glob of Parquet files); failures are DataSourceErrors."""
    if is_partitioned(str(path)):
        return load_partitioned(str(path))
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        reader = _read_parquet
    elif name.endswith(CSV_SUFFIXES):
        reader = _read_csv
    else:
        known = ", ".join(PARQUET_SUFFIXES + CSV_SUFFIXES)
        raise DataSourceError(f"cannot read {path}: unknown file extension (expected one of {known}).")
    if not path.exists():
        raise DataSourceError(f"cannot read {path}: the file does not exist.")
    if not path.is_file():
        raise DataSourceError(f"cannot read {path}: it is not a regular file.")
    if path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        frame = reader(path, csv_delimiter)
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataSourceError(f"cannot read {path}: the file is unreadable or corrupt ({reason}).") from exc
    _check_columns(path, [str(c) for c in frame.columns])
    return frame


def _check_columns(path: Path, columns: list[str]) -> None:
    """Column names must be unique: frame[name] would otherwise be a frame, not a column, and every
    later step (contract, features, scoring) would fail far from the cause."""
    seen: set[str] = set()
    repeated = sorted({c for c in columns if c in seen or seen.add(c)})
    if repeated:
        names = ", ".join(repr(c) for c in repeated)
        raise DataSourceError(f"cannot read {path}: column name(s) {names} appear more than once in the header.")


def _read_parquet(path: Path, _delimiter: str) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def _read_csv(path: Path, delimiter: str) -> pd.DataFrame:
    """Read the header first so every column can be typed as string before the data is parsed."""
    parse = pa_csv.ParseOptions(delimiter=delimiter)
    header = _csv_header(path, parse)
    convert = pa_csv.ConvertOptions(
        column_types={col: pa.string() for col in header},
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    table = pa_csv.read_csv(path, parse_options=parse, convert_options=convert)
    frame = table.to_pandas()
    # pyarrow gives either object or the pandas string dtype depending on pandas' options; pin one.
    return frame.astype("string") if len(frame.columns) else frame


def _csv_header(path: Path, parse: pa_csv.ParseOptions) -> list[str]:
    """Column names from the first block only (1 MiB: rows longer than that are not expected)."""
    with pa_csv.open_csv(path, parse_options=parse, read_options=pa_csv.ReadOptions(block_size=1 << 20)) as reader:
        return list(reader.schema.names)


def _load_synthetic(src: SourceSpec) -> pd.DataFrame:
    from pipeline.data.synthetic import GENERATORS

    name = src.source[len(SYNTHETIC_PREFIX) :]
    generator = GENERATORS.get(name)
    if generator is None:
        known = ", ".join(sorted(GENERATORS))
        raise DataSourceError(f"unknown synthetic generator {name!r} in {src.source!r}: known generators are {known}.")
    result = generator(src.rows, src.seed, src.scenario)
    if isinstance(result, pd.DataFrame):
        return result
    tables = ", ".join(result)
    if src.table is None:
        raise DataSourceError(f"{src.source!r} has several tables: set `table` to one of {tables}.")
    if src.table not in result:
        raise DataSourceError(f"{src.source!r} has no table {src.table!r}: available tables are {tables}.")
    return result[src.table]

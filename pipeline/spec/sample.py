"""Read a bounded sample of a Parquet/CSV file for `keel init-spec`, and say how much was read.

A 10M-row file must not be loaded whole to guess a contract: Parquet row groups spread over
the file are read until the sample is full (a file sorted by time is then not profiled from
its first day only), and the footer's per-row-group statistics give the whole file's numeric
ranges and null counts for free. CSV is read in blocks as text (as Keel's loader does) until
the sample is full, then typed here, so one odd value late in the file cannot crash inference.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from pipeline.contracts.coerce import NULL_TOKENS, TRUE_TOKENS
from pipeline.data.sources import CSV_SUFFIXES, PARQUET_SUFFIXES

DEFAULT_SAMPLE_ROWS = 100_000
_BOOL_WORDS = ("true", "false", "t", "f")
SPREAD_GROUPS = 10  # a sample of a file with few large row groups takes the head of this many
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


class SampleError(ValueError):
    """The file cannot be sampled (missing, unknown suffix, unreadable); exit 2."""


@dataclass(frozen=True)
class FileStats:
    """Whole-file facts from Parquet footers: exact even when only a sample was read."""

    min: float | None
    max: float | None
    nulls: int | None


@dataclass
class Sample:
    frame: pd.DataFrame
    rows_read: int
    total_rows: int | None  # None: a CSV not read to its end
    how: str  # one sentence: what was read
    stats: dict[str, FileStats] = field(default_factory=dict)


def read_sample(path: Path, sample_rows: int = DEFAULT_SAMPLE_ROWS) -> Sample:
    """At most about `sample_rows` rows of `path`; the whole file when it is smaller."""
    if sample_rows < 1:
        raise SampleError(f"--sample-rows must be at least 1, got {sample_rows}")
    if not path.is_file():
        raise SampleError(f"cannot read {path}: the file does not exist")
    name = path.name.lower()
    try:
        if name.endswith(PARQUET_SUFFIXES):
            return _parquet(path, sample_rows)
        if name.endswith(CSV_SUFFIXES):
            return _csv(path, sample_rows)
    except (pa.ArrowException, OSError) as exc:
        raise SampleError(f"cannot read {path}: {str(exc).strip().splitlines()[0]}") from None
    raise SampleError(f"cannot read {path}: expected one of {', '.join(PARQUET_SUFFIXES + CSV_SUFFIXES)}")


def _parquet(path: Path, sample_rows: int) -> Sample:
    pf = pq.ParquetFile(path)
    total, groups = pf.metadata.num_rows, pf.num_row_groups
    stats = _footer_stats(pf)
    if total <= sample_rows or groups == 0:
        table = pf.read()
        return Sample(_to_pandas(table), table.num_rows, total, f"all {total:,} rows", stats)
    per_group = total / groups
    wanted = min(groups, max(1, math.ceil(sample_rows / per_group)))
    sizes = [pf.metadata.row_group(g).num_rows for g in range(groups)]
    while True:  # a short last group can leave the spread short of the sample: take one group more
        picked = sorted({round(float(i)) for i in np.linspace(0, groups - 1, wanted)})
        if wanted >= groups or sum(sizes[g] for g in picked) >= sample_rows:
            break
        wanted += 1
    if len(picked) < SPREAD_GROUPS and groups > len(picked):  # few large groups: the head of several
        picked = sorted({round(float(i)) for i in np.linspace(0, groups - 1, min(groups, SPREAD_GROUPS))})
        per = math.ceil(sample_rows / len(picked))
        heads = [_head(pf, g, per) for g in picked]
        table = pa.Table.from_batches([b for h in heads for b in h], schema=pf.schema_arrow).slice(0, sample_rows)
        how = (
            f"{table.num_rows:,} of {total:,} rows (the first {per:,} rows of {len(picked)} of {groups} "
            "row groups, spread over the file)"
        )
    else:
        table = pf.read_row_groups(picked)
        if table.num_rows > sample_rows:  # evenly spaced rows of the groups read
            table = table.take(np.linspace(0, table.num_rows - 1, sample_rows).astype(np.int64))
        spread = "evenly spaced rows" if len(picked) == groups else f"{len(picked)} of {groups} row groups"
        how = f"{table.num_rows:,} of {total:,} rows ({spread}, spread over the file)"
    return Sample(_to_pandas(table), table.num_rows, total, how, stats)


def _head(pf: pq.ParquetFile, group: int, rows: int) -> list[pa.RecordBatch]:
    """The first `rows` rows of one row group, streamed: the rest of the group is not decoded."""
    out: list[pa.RecordBatch] = []
    for batch in pf.iter_batches(batch_size=min(rows, 65_536), row_groups=[group]):
        out.append(batch.slice(0, rows - sum(b.num_rows for b in out)))
        if sum(b.num_rows for b in out) >= rows:
            break
    return out


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Integer columns stay integer with missing values (pandas would make them float)."""
    return table.to_pandas(types_mapper=lambda t: pd.Int64Dtype() if pa.types.is_integer(t) else None)


def _footer_stats(pf: pq.ParquetFile) -> dict[str, FileStats]:
    """Min, max and null count per numeric column over every row group (None where a group lacks them)."""
    meta, schema = pf.metadata, pf.schema_arrow
    out: dict[str, FileStats] = {}
    for index, arrow_field in enumerate(schema):
        numeric = pa.types.is_integer(arrow_field.type) or pa.types.is_floating(arrow_field.type)
        lo = hi = None
        nulls: int | None = 0
        ranged = numeric
        for group in range(meta.num_row_groups):
            if index >= meta.row_group(group).num_columns:
                ranged, nulls = False, None
                break
            st = meta.row_group(group).column(index).statistics
            if st is None:
                ranged, nulls = False, None
                break
            nulls = None if nulls is None or not st.has_null_count else nulls + st.null_count
            if ranged and st.has_min_max and isinstance(st.min, int | float) and isinstance(st.max, int | float):
                lo = st.min if lo is None else min(lo, st.min)
                hi = st.max if hi is None else max(hi, st.max)
            elif ranged and meta.row_group(group).num_rows > (st.null_count or 0):
                ranged = False
        if ranged and lo is not None and (math.isnan(float(lo)) or math.isnan(float(hi))):
            ranged = False
        out[arrow_field.name] = FileStats(lo if ranged else None, hi if ranged else None, nulls)
    return out


def _csv(path: Path, sample_rows: int) -> Sample:
    with pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=1 << 20)) as probe:
        header = list(probe.schema.names)
    convert = pa_csv.ConvertOptions(column_types={c: pa.string() for c in header}, strings_can_be_null=True)
    batches, rows, ended = [], 0, True
    with pa_csv.open_csv(path, convert_options=convert) as reader:
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            if rows >= sample_rows:
                ended = False
                break
    table = pa.Table.from_batches(batches).slice(0, sample_rows) if batches else pa.table({c: [] for c in header})
    frame = pd.DataFrame({c: _type_text(table.column(c).to_pandas()) for c in header})
    total = rows if ended else None
    how = f"all {rows:,} rows" if ended else f"the first {table.num_rows:,} rows (a CSV is read from the top)"
    return Sample(frame, table.num_rows, total, how)


def _type_text(text: pd.Series) -> pd.Series:
    """The narrowest type every present value of a text column parses as: int, float, bool, datetime, else text."""
    lowered = text.str.strip().str.lower()
    present = text[~lowered.isin(NULL_TOKENS) & text.notna()]
    cleaned = text.where(~lowered.isin(NULL_TOKENS) & text.notna())
    if present.empty:
        return cleaned
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().all():
        parsed = pd.to_numeric(cleaned, errors="coerce")
        integral = bool(np.all(np.mod(numbers.to_numpy(dtype=float), 1) == 0))
        return parsed.astype("Int64") if integral and numbers.abs().max() < 2**53 else parsed.astype(float)
    words = present.str.strip().str.lower()
    if words.isin(_BOOL_WORDS).all():  # true/false only: Yes/No stays text (a category the label can name)
        return cleaned.str.strip().str.lower().map(lambda v: v in TRUE_TOKENS if isinstance(v, str) else None)
    if present.str.strip().str.match(_ISO_DATE).all():
        parsed = pd.to_datetime(cleaned, errors="coerce", format="ISO8601")
        if parsed.notna().sum() == len(present):
            return parsed
    return cleaned.astype(object)

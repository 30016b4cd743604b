"""`keel check SPEC --data [FILE]`: the spec against a first look at the data, in seconds.

What a first try with your own table most often gets wrong, caught before a run starts: the file
is missing or unreadable, a declared column is not in it, the positive label value never occurs
(`"yes"` vs `"Yes"`, `1` vs `"1"`), the label has one class only, epoch numbers in a datetime
column without `data.timestamp_unit`. Each problem names the spec key (file:line) to change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.data.prepare import label_vector, load_frame
from pipeline.spec.errors import Problem
from pipeline.spec.load import LoadedSpec

SHOWN = 10  # distinct label values named in a message


def check_data(loaded: LoadedSpec, data_path: Path | None) -> tuple[list[Problem], dict[str, Any]]:
    """Problems (spec file:line where a key is to blame) and the facts seen; DataSourceError if unreadable."""
    spec, data = loaded.spec, loaded.spec.data
    frame = load_frame(spec, loaded.base_dir, data_path)
    where = str(data_path) if data_path is not None else data.source
    found: list[tuple[str, str]] = []
    columns = set(map(str, frame.columns))
    roles = {"entity_id": data.entity_id, "timestamp": data.timestamp, "label": data.label}
    roles["split.group_column"] = data.split.group_column
    for role, column in roles.items():
        if column is not None and column not in columns:
            found.append((f"data.{role}", f"column {column!r} is not in {where} (columns: {_names(frame.columns)})"))
    for column in spec.contract.columns:
        if column not in columns and column not in roles.values():
            found.append((f"contract.columns.{column}", f"declared column {column!r} is not in {where}"))
    facts: dict[str, Any] = {"data": where, "rows": len(frame), "columns": len(frame.columns)}
    if data.label in columns and spec.task == "binary_classification":
        found += _label_findings(frame, loaded, facts)
    found += _timestamp_findings(frame, loaded)
    notes = [] if data.entity_id else ["no data.entity_id: rows are named by their position (`row`)"]
    facts["notes"] = notes
    return [loaded.provenance.problem(key, reason) for key, reason in found], facts


def _label_findings(frame: pd.DataFrame, loaded: LoadedSpec, facts: dict[str, Any]) -> list[tuple[str, str]]:
    data = loaded.spec.data
    column = frame[data.label]
    present = column.dropna()
    values = pd.unique(present.astype("string"))
    y = label_vector(frame.loc[present.index], data)
    facts["label"] = {"column": data.label, "values": [str(v) for v in values[:SHOWN]], "positives": int(y.sum())}
    if present.empty:
        return [("data.label", f"column {data.label!r} has no values")]
    shown = ", ".join(repr(str(v)) for v in values[:SHOWN]) + (", ..." if len(values) > SHOWN else "")
    if y.sum() == 0:
        return [("data.positive", f"{data.positive!r} never occurs in {data.label!r} (values seen: {shown})")]
    if len(values) == 1 or y.all():
        return [("data.label", f"{data.label!r} has one class only ({shown}): a classifier needs both")]
    return []


def _timestamp_findings(frame: pd.DataFrame, loaded: LoadedSpec) -> list[tuple[str, str]]:
    data, contract = loaded.spec.data, loaded.spec.contract
    column = data.timestamp
    if column is None or column not in frame.columns or column not in contract.columns:
        return []
    values = frame[column]
    if contract.columns[column].dtype != "datetime":
        return []
    if data.timestamp_unit is None and _numeric(values):
        return [("data.timestamp", f"{column!r} holds numbers: if they are epoch times set data.timestamp_unit")]
    if data.timestamp_unit is not None and len(values) and values.isna().all():
        return [("data.timestamp_unit", f"no value of {column!r} is a number of {data.timestamp_unit} since 1970")]
    return []


def _numeric(values: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return False
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return True
    sample = values.dropna().head(100)
    return bool(len(sample)) and bool(np.all(pd.to_numeric(sample, errors="coerce").notna()))


def _names(columns: pd.Index, limit: int = 12) -> str:
    names = [str(c) for c in columns]
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def data_text(facts: dict[str, Any]) -> str:
    label = facts.get("label")
    text = f"  data: {facts['data']}: {facts['rows']:,} rows, {facts['columns']} columns"
    if label:
        text += f"; {label['column']}: {label['positives']:,} positive"
    return "\n".join([text, *(f"  note: {n}" for n in facts["notes"])])

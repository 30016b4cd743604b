"""From a spec's data section to train/valid/test frames with labels.

Load -> hold to the contract (bad rows quarantined, never trained on) -> derived
features -> split (time-based when the spec has a timestamp). One function so the
training flow, batch scoring and tests prepare data the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.contracts.result import ContractResult
from pipeline.contracts.validate import validate_frame
from pipeline.data.derived import add_derived
from pipeline.data.errors import DataSourceError, TrainingDataError
from pipeline.data.sources import load_path, load_source
from pipeline.data.split import split_frame
from pipeline.data.timestamps import apply_timestamp_unit
from pipeline.spec.schema import DataSpec, Spec, split_method


@dataclass
class Prepared:
    contract: ContractResult
    splits: dict[str, pd.DataFrame]

    def labels(self, part: str, data: DataSpec) -> np.ndarray:
        return label_vector(self.splits[part], data)


def label_vector(frame: pd.DataFrame, data: DataSpec) -> np.ndarray:
    """1 where the label equals the spec's positive value (compared as text: 1, "1", "Yes")."""
    if data.label is None:
        raise TrainingDataError("the spec declares no data.label: nothing to train on")
    column = frame[data.label]
    positive = data.positive
    if pd.api.types.is_numeric_dtype(column.dtype) and isinstance(positive, int | float):
        return (column.to_numpy(dtype=float, na_value=np.nan) == float(positive)).astype(np.int8)
    return (column.astype("string").to_numpy(dtype=object, na_value="") == str(positive)).astype(np.int8)


def load_frame(spec: Spec, base_dir: Path, data_path: Path | None = None) -> pd.DataFrame:
    """The spec's data (or `data_path`), epoch timestamps already times (data.timestamp_unit)."""
    frame = load_path(data_path, spec.data.csv_delimiter) if data_path is not None else load_source(spec.data, base_dir)
    return apply_timestamp_unit(frame, spec.data, spec.contract)


def prepare(spec: Spec, frame: pd.DataFrame) -> Prepared:
    """Validate, derive and split `frame`; raise TrainingDataError when it cannot train."""
    result = validate_frame(frame, spec.contract)
    if not result.ok:
        raise TrainingDataError(f"the data breaks its contract: {result.policy_reason}")
    accepted = add_derived(result.accepted, spec.features.derived)
    data = spec.data
    method = split_method(data.split, data.timestamp)
    group = data.split.group_column or data.entity_id
    splits = split_frame(
        accepted,
        data.split,
        data.timestamp if method == "time" else None,
        data.seed,  # seeds the split, the CV folds and the model alike
        label_vector(accepted, data) if method == "stratified" else None,
        accepted[group] if method == "group" and group in accepted.columns else None,
    )
    prepared = Prepared(result, splits)
    for part in ("train", "test"):
        y = prepared.labels(part, spec.data)
        if len(y) == 0:
            raise TrainingDataError(f"the {part} split is empty ({result.rows_accepted} accepted rows)")
        if y.min() == y.max():
            only = "positive" if y[0] else "negative"
            raise TrainingDataError(
                f"the {part} split has only {only} labels ({data_label(spec)}): a classifier needs both classes"
            )
    return prepared


def data_label(spec: Spec) -> str:
    return f"{spec.data.label} == {spec.data.positive!r}"


__all__ = ["DataSourceError", "Prepared", "TrainingDataError", "label_vector", "load_frame", "prepare"]

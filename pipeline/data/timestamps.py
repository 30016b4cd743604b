"""Epoch timestamps: `data.timestamp_unit: s|ms|us` turns numbers into times before the contract check.

Exports from databases and event logs often store time as seconds (or ms, us) since 1970. The
contract declares the column `dtype: datetime`; converting first means the contract, the time
split and the latest-snapshot pick all see real times. A value that is not a number becomes a
missing time, which the contract then quarantines (unless the column is nullable).
"""

from __future__ import annotations

import pandas as pd

from pipeline.spec.schema import ContractSpec, DataSpec


def apply_timestamp_unit(frame: pd.DataFrame, data: DataSpec, contract: ContractSpec) -> pd.DataFrame:
    """`frame` with its epoch timestamp column as datetime64[ns]; unchanged without a unit or column."""
    column, unit = data.timestamp, data.timestamp_unit
    if unit is None or column is None or column not in frame.columns:
        return frame
    spec = contract.columns.get(column)
    values = frame[column]
    if spec is None or spec.dtype != "datetime" or pd.api.types.is_datetime64_any_dtype(values.dtype):
        return frame
    numbers = pd.to_numeric(values, errors="coerce")
    out = frame.copy(deep=False)
    out[column] = pd.to_datetime(numbers, unit=unit, errors="coerce")
    return out

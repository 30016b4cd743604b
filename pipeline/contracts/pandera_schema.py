"""to_pandera: the same contract as a pandera DataFrameSchema.

For users who want pandera's engine (or its YAML/`to_yaml` export) rather than Keel's
vectorised one. Finiteness is an explicit check because pandera's range checks let inf
through on columns without both bounds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from pipeline.spec.schema import ColumnContract, ContractSpec


def pandera_dtype(spec: ColumnContract) -> Any:
    """The pandas dtype pandera coerces a column to (None: keep as stored, checks decide)."""
    if spec.dtype == "int":
        return "Int64" if spec.nullable else "int64"
    if spec.dtype == "float":
        return "float64"
    if spec.dtype == "bool":
        return "boolean" if spec.nullable else "bool"
    if spec.dtype == "datetime":
        return "datetime64[ns]"
    if spec.dtype == "str":
        return pd.StringDtype()
    return None  # category: values are checked with isin; Keel builds the Categorical itself


def _finite(s: pd.Series) -> pd.Series:
    return pd.Series(~np.isinf(s.to_numpy(dtype=np.float64, na_value=np.nan)), index=s.index)


def column_checks(spec: ColumnContract) -> list[pa.Check]:
    checks: list[pa.Check] = []
    if spec.dtype in ("int", "float"):
        checks.append(pa.Check(_finite, name="not_finite", ignore_na=True))
        if spec.min is not None and spec.max is not None:
            checks.append(pa.Check.in_range(spec.min, spec.max))
        elif spec.min is not None:
            checks.append(pa.Check.ge(spec.min))
        elif spec.max is not None:
            checks.append(pa.Check.le(spec.max))
    if spec.allowed is not None:
        allowed = [str(a) for a in spec.allowed] if spec.dtype in ("str", "category") else list(spec.allowed)
        checks.append(pa.Check.isin(allowed))
    return checks


def to_pandera(contract: ContractSpec) -> pa.DataFrameSchema:
    """DataFrameSchema with dtype, nullable, range/isin/finite checks and uniqueness per column."""
    columns = {
        name: pa.Column(
            pandera_dtype(spec),
            checks=column_checks(spec),
            nullable=spec.nullable,
            unique=spec.unique,
            report_duplicates="exclude_first",
            coerce=pandera_dtype(spec) is not None,
            required=True,
            description=spec.description or None,
            title=name,
        )
        for name, spec in contract.columns.items()
    }
    return pa.DataFrameSchema(columns, name=contract.name, strict=not contract.allow_extra_columns)

"""The pandera engine: pandera finds the failing rows, Keel turns them into the same result.

Schema problems come from Keel's own schema pass (so both engines name them identically and
pandera never silently coerces, say, floats into datetimes); pandera then validates the
checkable columns lazily and its `failure_cases` become quarantine reasons in Keel's vocabulary.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pandera.pandas as pa

from pipeline.contracts.checks import fmt
from pipeline.contracts.coerce import PARSE_REASON, coerce
from pipeline.contracts.pandera_schema import to_pandera
from pipeline.contracts.result import ContractResult, SchemaProblem, apply_policy
from pipeline.contracts.validate import accepted_frame, checkable_columns, quarantine_frame, schema_problems
from pipeline.spec.schema import ColumnContract, ContractSpec

_SCHEMA_CHECKS = {"column_in_schema": "unexpected_column", "column_in_dataframe": "missing_column"}


def _reason(check: str, value: object, spec: ColumnContract) -> str | None:
    """Keel's check name for one pandera failure case (None: a duplicate of another case)."""
    is_nan = value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA
    if check == "not_nullable":
        return "null"
    if check.startswith(("coerce_dtype", "dtype(")):
        if is_nan:
            return None if check.startswith("dtype(") else "null"
        return PARSE_REASON.get(spec.dtype, "not_a_number") if check.startswith("coerce") else None
    if check == "not_finite":
        return "not_finite"
    if check == "field_uniqueness":
        return "duplicate"
    if check.startswith("isin"):
        return "not_allowed"
    if re.match(r"(in_range|greater_than|less_than)", check):
        if isinstance(value, float) and math.isinf(value):
            return None  # already reported as not_finite
        try:
            v = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        if spec.min is not None and v < spec.min:
            return "below_min"
        return "above_max"
    return check


def _detail(reason: str, value: object, spec: ColumnContract) -> str:
    if reason == "null":
        return ""
    if reason == "below_min":
        return f" ({fmt(value)} < {fmt(spec.min)})"
    if reason == "above_max":
        return f" ({fmt(value)} > {fmt(spec.max)})"
    return f" ({fmt(value)})"


def validate_with_pandera(
    df: pd.DataFrame, contract: ContractSpec, duplicates: dict[str, np.ndarray] | None = None
) -> ContractResult:
    """Validate with `to_pandera(contract).validate(df, lazy=True)`; same result shape as the keel engine.

    `duplicates`: {unique column: bool mask} of rows whose value is also in another partition of the
    table (pipeline/distributed/unique.py): flagged `duplicate` as pandera flags a repeat within a frame."""
    n = len(df)
    problems = schema_problems(df, contract)
    names = checkable_columns(df, contract, problems)
    schema = to_pandera(contract)
    schema = schema.remove_columns([c for c in contract.columns if c not in names])
    schema.strict = False  # extra columns are a Keel schema problem already
    frame = df[names].reset_index(drop=True)  # failure_cases index == row position
    cases = pd.DataFrame(columns=["column", "check", "failure_case", "index"])
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
    per_row: dict[int, list[str]] = {}
    counts: dict[str, int] = {}
    seen: set[tuple[int, str, str]] = set()
    for col, check, value, pos in cases[["column", "check", "failure_case", "index"]].itertuples(index=False):
        if pos is None or (isinstance(pos, float) and math.isnan(pos)):
            if check in _SCHEMA_CHECKS or col not in contract.columns:
                problems.append(SchemaProblem(str(value), _SCHEMA_CHECKS.get(check, "engine_error"), str(check)))
            else:
                problems.append(SchemaProblem(str(col), "engine_error", f"{check}: {value}"))
            continue
        spec = contract.columns[col]
        reason = _reason(str(check), value, spec)
        if reason is None or (int(pos), col, reason) in seen:
            continue
        seen.add((int(pos), col, reason))
        counts[f"{col}:{reason}"] = counts.get(f"{col}:{reason}", 0) + 1
        per_row.setdefault(int(pos), []).append(f"{col}: {reason}{_detail(reason, value, spec)}")
    for col, mask in (duplicates or {}).items():
        if col not in names or not contract.columns[col].unique:
            continue
        values = frame[col].to_numpy(dtype=object)
        for pos in np.flatnonzero(mask).tolist():
            if (pos, col, "duplicate") in seen:
                continue
            seen.add((pos, col, "duplicate"))
            counts[f"{col}:duplicate"] = counts.get(f"{col}:duplicate", 0) + 1
            per_row.setdefault(pos, []).append(
                f"{col}: duplicate{_detail('duplicate', values[pos], contract.columns[col])}"
            )
    idx = np.array(sorted(per_row), dtype=np.int64)
    keep = None
    if len(idx):
        keep = np.ones(n, dtype=bool)
        keep[idx] = False
    kept = df if keep is None else df[keep]
    coerced = {c: coerce(kept[c], contract.columns[c]) for c in names}
    result = ContractResult(
        contract=contract.name,
        engine="pandera",
        rows_in=n,
        accepted=accepted_frame(kept, names, coerced, contract, None),
        quarantined=quarantine_frame(df, idx, ["; ".join(per_row[i]) for i in idx.tolist()]),
        check_counts=counts,
        schema_problems=problems,
    )
    return apply_policy(result, contract)

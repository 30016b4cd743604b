"""validate_frame: check a frame against its contract and split it into accepted / quarantined.

Schema problems (missing, unexpected or wrongly typed columns) fail the whole dataset and are
reported by name; they never turn into row-level quarantine. Row-level rule breaks send the row
to quarantine with one reason per broken rule. Whatever happens,
`rows_in == len(accepted) + len(quarantined)`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from pipeline.contracts.checks import ColumnChecker
from pipeline.contracts.coerce import COMPATIBLE, Coerced, coerce, stored_kind, typed_column
from pipeline.contracts.result import REASONS_COL, ROW_COL, ContractResult, SchemaProblem, apply_policy
from pipeline.spec.schema import ContractSpec


def schema_problems(df: pd.DataFrame, contract: ContractSpec) -> list[SchemaProblem]:
    """Dataset-level problems, by column name, in contract order then input order."""
    problems: list[SchemaProblem] = []
    present = set(map(str, df.columns))
    for name, spec in contract.columns.items():
        if name not in present:
            problems.append(SchemaProblem(name, "missing_column", f"contract expects a {spec.dtype} column"))
            continue
        kind = stored_kind(df[name])
        if kind not in COMPATIBLE[spec.dtype]:
            detail = f"stored as {df[name].dtype} ({kind}), cannot represent contract dtype {spec.dtype}"
            problems.append(SchemaProblem(name, "wrong_dtype", detail))
    if not contract.allow_extra_columns:
        for name in df.columns:
            if str(name) not in contract.columns:
                problems.append(SchemaProblem(str(name), "unexpected_column", "not in the contract"))
    if df.columns.duplicated().any():
        for name in df.columns[df.columns.duplicated()].unique():
            problems.append(SchemaProblem(str(name), "duplicate_column", "column name appears more than once"))
    return problems


def checkable_columns(df: pd.DataFrame, contract: ContractSpec, problems: list[SchemaProblem]) -> list[str]:
    """Contract columns that are present, typed compatibly and unambiguous: the ones rows are checked on."""
    broken = {p.column for p in problems}
    return [name for name in contract.columns if name in df.columns and name not in broken]


def _reasons(checkers: list[ColumnChecker], idx: np.ndarray) -> tuple[list[str], dict[str, int]]:
    """'; '-joined reasons for the failing rows idx, and counts per "column:check"."""
    per_row: list[list[str]] = [[] for _ in range(len(idx))]
    counts: dict[str, int] = {}
    for ch in checkers:
        for check, pos, msgs in ch.explain(idx):
            counts[f"{ch.name}:{check}"] = counts.get(f"{ch.name}:{check}", 0) + len(pos)
            for p, m in zip(pos.tolist(), msgs, strict=True):
                per_row[p].append(m)
    return ["; ".join(r) for r in per_row], counts


def quarantine_frame(df: pd.DataFrame, idx: np.ndarray, reasons: list[str]) -> pd.DataFrame:
    """The failing rows with every original column (extras too) plus their position and reasons."""
    q = df.iloc[idx].reset_index(drop=True)
    q.insert(0, REASONS_COL, pd.array(reasons, dtype="string"))
    q.insert(0, ROW_COL, idx.astype(np.int64))
    return q


def accepted_frame(
    df: pd.DataFrame, names: list[str], coerced: dict[str, Coerced], contract: ContractSpec, keep: np.ndarray | None
) -> pd.DataFrame:
    """Contract-typed frame of the kept rows (keep=None: all rows, no copy of numeric columns)."""

    def one(n: str):
        return typed_column(coerced[n], contract.columns[n], df[n], keep)

    if keep is not None and len(names) > 1:  # numpy's take drops the GIL: copy columns in parallel
        with ThreadPoolExecutor(max_workers=min(len(names), os.cpu_count() or 1)) as pool:
            data = dict(zip(names, pool.map(one, names), strict=True))
    else:
        data = {n: one(n) for n in names}
    index = df.index if keep is None else df.index[keep]
    return pd.DataFrame(data, index=index, copy=False)


def validate_frame(df: pd.DataFrame, contract: ContractSpec) -> ContractResult:
    """Validate df against contract with the engine the contract names (keel or pandera)."""
    if contract.engine == "pandera":
        from pipeline.contracts.pandera_engine import validate_with_pandera

        return validate_with_pandera(df, contract)
    return validate_keel(df, contract)


def validate_keel(df: pd.DataFrame, contract: ContractSpec) -> ContractResult:
    """The vectorised engine: one fail mask per column, OR-ed once; reasons only for failing rows."""
    n = len(df)
    problems = schema_problems(df, contract)
    names = checkable_columns(df, contract, problems)
    coerced: dict[str, Coerced] = {}
    checkers: list[ColumnChecker] = []
    bad = np.zeros(n, dtype=bool)
    for name in names:
        c = coerce(df[name], contract.columns[name])
        coerced[name] = c
        ch = ColumnChecker(name, contract.columns[name], df[name], c)
        fail = ch.fail_mask()
        if fail is not None:
            np.logical_or(bad, fail, out=bad)
            checkers.append(ch)
    idx = np.flatnonzero(bad)
    reasons, counts = _reasons(checkers, idx)
    keep = np.flatnonzero(~bad) if len(idx) else None
    result = ContractResult(
        contract=contract.name,
        engine="keel",
        rows_in=n,
        accepted=accepted_frame(df, names, coerced, contract, keep),
        quarantined=quarantine_frame(df, idx, reasons),
        check_counts=counts,
        schema_problems=problems,
    )
    return apply_policy(result, contract)

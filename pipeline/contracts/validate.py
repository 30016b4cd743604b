"""validate_frame: check a frame against its contract and split it into accepted / quarantined.

Schema problems (missing, unexpected or wrongly typed columns) fail the whole dataset and are
reported by name; they never turn into row-level quarantine. Row-level rule breaks send the row
to quarantine with one reason per broken rule. Whatever happens,
`rows_in == len(accepted) + len(quarantined)`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from pipeline.contracts.checks import ColumnChecker
from pipeline.contracts.coerce import COMPATIBLE, Coerced, coerce, stored_kind, typed_column
from pipeline.contracts.result import REASONS_COL, ROW_COL, ContractResult, SchemaProblem, apply_policy
from pipeline.spec.schema import ContractSpec

_CHUNK = 1 << 17  # rows per chunk of the fail-mask pass: a chunk's temporaries stay in cache
_PARALLEL_ROWS = 1 << 18  # below this many rows threads cost more than they save
_WORKERS = os.cpu_count() or 1


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


def _reasons(checkers: list[ColumnChecker], idx: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """'; '-joined reasons for the failing rows idx (object array), and counts per "column:check"."""
    counts: dict[str, int] = {}
    pos_parts: list[np.ndarray] = []
    msgs: list[str] = []
    for ch in checkers:
        for check, pos, m in ch.explain(idx):
            counts[f"{ch.name}:{check}"] = counts.get(f"{ch.name}:{check}", 0) + len(pos)
            pos_parts.append(pos)
            msgs.extend(m)
    out = np.full(len(idx), "", dtype=object)
    if not pos_parts:
        return out, counts
    pos = np.concatenate(pos_parts)
    text = np.empty(len(msgs), dtype=object)
    text[:] = msgs
    per_row = np.bincount(pos, minlength=len(idx))
    single = per_row[pos] == 1
    out[pos[single]] = text[single]  # most failing rows break exactly one rule
    if not single.all():  # the rest: join in checker order, then rule order (a stable sort keeps it)
        multi = np.flatnonzero(~single)
        multi = multi[np.argsort(pos[multi], kind="stable")]
        joined: dict[int, list[str]] = {}
        for p, m in zip(pos[multi].tolist(), text[multi].tolist(), strict=True):
            joined.setdefault(p, []).append(m)
        for p, parts in joined.items():
            out[p] = "; ".join(parts)
    return out, counts


def quarantine_frame(df: pd.DataFrame, idx: np.ndarray, reasons: list[str] | np.ndarray) -> pd.DataFrame:
    """The failing rows with every original column (extras too) plus their position and reasons."""
    q = df.iloc[idx].reset_index(drop=True)
    q.insert(0, REASONS_COL, pd.array(reasons, dtype="string"))
    q.insert(0, ROW_COL, idx.astype(np.int64))
    return q


def _kept_index(index: pd.Index, keep: np.ndarray) -> pd.Index:
    """index[keep]. For the default RangeIndex the labels are the positions: reuse keep instead of copying it."""
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1) or len(keep) < 2:
        return index[keep]
    step = int(keep[1] - keep[0])
    if int(keep[-1] - keep[0]) == step * (len(keep) - 1) and (np.diff(keep) == step).all():
        return index[keep]  # equally spaced: pandas gives a RangeIndex
    return pd.Index(keep, name=index.name, copy=False)


def _start_accepted(
    df: pd.DataFrame,
    names: list[str],
    coerced: dict[str, Coerced],
    contract: ContractSpec,
    keep: np.ndarray | None,
    pool: ThreadPoolExecutor | None,
) -> Callable[[], pd.DataFrame]:
    """Start building the accepted frame (column takes in `pool`); the returned function finishes it."""
    raws = {n: df[n] for n in names}
    if pool is None or keep is None:
        data = {n: typed_column(coerced[n], contract.columns[n], raws[n], keep) for n in names}
        return lambda: pd.DataFrame(data, index=df.index if keep is None else _kept_index(df.index, keep), copy=False)
    # numpy's take drops the GIL: the columns are copied in parallel while the caller explains the failures
    futures = {n: pool.submit(typed_column, coerced[n], contract.columns[n], raws[n], keep) for n in names}
    index = _kept_index(df.index, keep)
    return lambda: pd.DataFrame({n: f.result() for n, f in futures.items()}, index=index, copy=False)


def accepted_frame(
    df: pd.DataFrame, names: list[str], coerced: dict[str, Coerced], contract: ContractSpec, keep: np.ndarray | None
) -> pd.DataFrame:
    """Contract-typed frame of the kept rows (keep=None: all rows, no copy of numeric columns)."""
    if keep is not None and len(names) > 1:
        with ThreadPoolExecutor(max_workers=min(len(names), os.cpu_count() or 1)) as pool:
            return _start_accepted(df, names, coerced, contract, keep, pool)()
    return _start_accepted(df, names, coerced, contract, keep, None)()


def validate_frame(
    df: pd.DataFrame, contract: ContractSpec, duplicates: dict[str, np.ndarray] | None = None
) -> ContractResult:
    """Validate df against contract with the engine the contract names (keel or pandera).

    `duplicates`: {unique column: bool mask} of rows that repeat a value seen in an earlier part of a
    partitioned table (pipeline/distributed/unique.py); they fail `unique` as a repeat inside df does.
    """
    if contract.engine == "pandera":
        from pipeline.contracts.pandera_engine import validate_with_pandera

        return validate_with_pandera(df, contract, duplicates)
    return validate_keel(df, contract, duplicates)


def _fail_rows(checkers: list[ColumnChecker], n: int, pool: ThreadPoolExecutor | None) -> np.ndarray:
    """True where any checker fails: all rules per row chunk (cache-sized temporaries), chunk ranges in threads."""
    bad = np.empty(n, dtype=bool)

    def fill(lo: int, hi: int) -> None:
        for start in range(lo, hi, _CHUNK):
            rows = slice(start, min(start + _CHUNK, hi))
            out = bad[rows]
            out.fill(False)
            for ch in checkers:
                ch.fail_into(out, rows)

    chunks = -(-n // _CHUNK)
    parts = min(_WORKERS, chunks) if pool is not None else 1
    bounds = [min(n, (chunks * i // parts) * _CHUNK) for i in range(parts)] + [n]
    if parts > 1:
        for f in [pool.submit(fill, lo, hi) for lo, hi in itertools.pairwise(bounds)]:
            f.result()
    else:
        fill(0, n)
    return bad


def validate_keel(
    df: pd.DataFrame, contract: ContractSpec, duplicates: dict[str, np.ndarray] | None = None
) -> ContractResult:
    """The vectorised engine: rules folded per row chunk in threads; reasons only for failing rows."""
    n = len(df)
    problems = schema_problems(df, contract)
    names = checkable_columns(df, contract, problems)
    coerced: dict[str, Coerced] = {}
    checkers: list[ColumnChecker] = []
    for name in names:
        raw = df[name]
        c = coerce(raw, contract.columns[name])
        coerced[name] = c
        ch = ColumnChecker(name, contract.columns[name], raw, c)
        can_fail = ch.prepare()
        if duplicates and name in duplicates and contract.columns[name].unique:
            ch.dup = duplicates[name] if ch.dup is None else ch.dup | duplicates[name]
            can_fail = True
        if can_fail:
            checkers.append(ch)
    parallel = n >= _PARALLEL_ROWS and _WORKERS > 1
    with ThreadPoolExecutor(max_workers=_WORKERS) if parallel else contextlib.nullcontext() as pool:
        bad = _fail_rows(checkers, n, pool)
        idx = np.flatnonzero(bad)
        keep = np.flatnonzero(~bad) if len(idx) else None
        finish_accepted = _start_accepted(df, names, coerced, contract, keep, pool)
        reasons, counts = _reasons(checkers, idx)
        quarantined = quarantine_frame(df, idx, reasons)
        accepted = finish_accepted()
    result = ContractResult(
        contract=contract.name,
        engine="keel",
        rows_in=n,
        accepted=accepted,
        quarantined=quarantined,
        check_counts=counts,
        schema_problems=problems,
    )
    return apply_policy(result, contract)

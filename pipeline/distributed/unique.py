"""`unique: true` over a partitioned table: a value repeated in another partition is a duplicate too.

Locally a repeat is every occurrence after the first in table order (the keel engine, and pandera's
schema with report_duplicates exclude_first). Across partitions: each
partition sends, per unique column, its first occurrences (value, global row) to hash buckets; each
bucket (one task) marks every occurrence after the earliest as a duplicate; each partition then gets
back the rows of its own that repeat an earlier one, and validate_frame counts them as it counts a
repeat inside the partition (same reason text, same check count). Only keys and row numbers move.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import pandas as pd

from pipeline.contracts.coerce import coerce
from pipeline.spec.schema import ContractSpec


def unique_columns(contract: ContractSpec, columns: list[str]) -> list[str]:
    return [n for n, s in contract.columns.items() if s.unique and n in columns]


def _keys(frame: pd.DataFrame, name: str, contract: ContractSpec) -> tuple[np.ndarray, np.ndarray]:
    """(values as the local check compares them, positions) of the non-null rows of one column."""
    spec = contract.columns[name]
    raw = frame[name]
    c = coerce(raw, spec)
    values = raw.to_numpy(dtype=object) if spec.dtype in ("str", "category") else np.asarray(c.values)
    keep = ~np.asarray(c.null) if c.may_be_null else np.ones(len(frame), dtype=bool)
    return values[keep], np.flatnonzero(keep)


def bucket_keys(
    frame: pd.DataFrame, offset: int, columns: list[str], contract: ContractSpec, buckets: int
) -> list[dict[str, pd.DataFrame]]:
    """On a worker: per bucket, per column, the partition's first occurrences as (key, row) frames."""
    out: list[dict[str, pd.DataFrame]] = [{} for _ in range(buckets)]
    for name in columns:
        values, pos = _keys(frame, name, contract)
        first = ~pd.Series(values, dtype=object).duplicated(keep="first").to_numpy()
        values, pos = values[first], pos[first]
        hashed = pd.util.hash_array(values)  # a fixed hash key: equal in every worker process
        which = (hashed % np.uint64(buckets)).astype(np.int64)
        for b in range(buckets):
            sel = which == b
            out[b][name] = pd.DataFrame({"key": values[sel], "row": pos[sel] + offset})
    return out


def repeats_in_bucket(pieces: list[dict[str, pd.DataFrame]]) -> dict[str, np.ndarray]:
    """On a worker: the global rows whose key appeared at an earlier row in another partition (both
    engines keep the first copy: pandera's schema reports duplicates with exclude_first).

    `pieces`: this bucket's piece of every partition (only they travel to this task)."""
    out: dict[str, np.ndarray] = {}
    names = {n for piece in pieces for n in piece}
    for name in names:
        frames = [piece[name] for piece in pieces if name in piece]
        both = pd.concat(frames, ignore_index=True).sort_values("row", kind="stable")
        dup = both["key"].duplicated(keep="first").to_numpy()
        out[name] = both["row"].to_numpy()[dup]
    return out


def cross_partition_repeats(
    client: Any, frames: list[Any], starts: list[int], rows: list[int], contract: ContractSpec, columns: list[str]
) -> list[dict[str, np.ndarray]]:
    """Per partition: {unique column: bool mask of its rows that repeat an earlier partition's value}."""
    names = unique_columns(contract, columns)
    if not names or len(frames) < 2:
        return [{} for _ in frames]
    buckets = len(frames)
    keyed = client.map(bucket_keys, frames, starts, columns=names, contract=contract, buckets=buckets, pure=False)
    pieces = [[client.submit(operator.getitem, k, b, pure=False) for k in keyed] for b in range(buckets)]
    found = client.gather([client.submit(repeats_in_bucket, pieces[b], pure=False) for b in range(buckets)])
    masks: list[dict[str, np.ndarray]] = []
    for start, n in zip(starts, rows, strict=True):
        mask = {}
        for name in names:
            hit = np.concatenate([f.get(name, np.zeros(0, dtype=np.int64)) for f in found]).astype(np.int64)
            local = hit[(hit >= start) & (hit < start + n)] - start
            if len(local):
                m = np.zeros(n, dtype=bool)
                m[local] = True
                mask[name] = m
        masks.append(mask)
    return masks

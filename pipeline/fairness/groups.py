"""Groups from declared columns and their intersections (e.g. is_new_creator x region).

A missing value is a group of its own ("(missing)"): people whose attribute was not
recorded are exactly the ones a fairness report must not lose.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.data.errors import DataSourceError

MISSING = "(missing)"


def grouping_name(columns: Sequence[str]) -> str:
    """`age_band`, or `is_new_creator*region` for an intersection; used in metric names."""
    return "*".join(columns)


def group_codes(frame: pd.DataFrame, columns: Sequence[str], where: str) -> tuple[np.ndarray, list[str]]:
    """(code per row, label per code); labels join the values with '/' in column order, sorted."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataSourceError(f"{where}: group columns {missing} are not columns of the data (have: {list(frame)})")
    if not columns:
        raise DataSourceError(f"{where}: a group needs at least one column")
    parts = [frame[c].astype(object).where(frame[c].notna(), MISSING).astype(str).to_numpy() for c in columns]
    labels = parts[0] if len(parts) == 1 else np.array(["/".join(v) for v in zip(*parts, strict=True)], dtype=object)
    uniques, codes = np.unique(labels.astype(str), return_inverse=True)
    return codes.astype(np.int64), [str(u) for u in uniques]


def groupings(declared: Sequence[Sequence[str]], fallback: Sequence[str]) -> list[list[str]]:
    """The declared group sets, or each fallback column alone (evaluation.group_columns)."""
    if declared:
        return [list(g) for g in declared]
    return [[c] for c in fallback]

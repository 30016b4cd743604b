"""What a generator knows about its columns: the contract's ranges, mirrored in code.

Generators clip to these ranges and corrupt against them. A test checks them against
conf/contract/*.yaml so the two cannot drift apart silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Kind = Literal["int", "float", "category", "str", "datetime"]


@dataclass(frozen=True)
class ColumnRule:
    kind: Kind
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] = ()
    unique: bool = False
    nullable: bool = False
    invalid: str = "unknown"
    """A value outside `allowed` that corruption plants (e.g. plan_type 'student')."""

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "float")


def build_frame(columns: Mapping[str, np.ndarray], rules: Mapping[str, ColumnRule]) -> pd.DataFrame:
    """Assemble generated arrays in contract order and final dtypes.

    Ints are int64, or nullable Int64 where corruption planted nulls; category columns become
    pandas categoricals whose categories are the allowed values plus any planted unknown ones.
    """
    data: dict[str, object] = {}
    for name, rule in rules.items():
        values = columns[name]
        if rule.kind == "int":
            data[name] = pd.array(values, dtype="Int64") if np.isnan(values).any() else values.astype(np.int64)
        elif rule.kind == "category":
            present = pd.unique(values[pd.notna(values)])
            extras = sorted(set(present) - set(rule.allowed))
            data[name] = pd.Categorical(values, categories=[*rule.allowed, *extras])
        else:
            data[name] = values
    return pd.DataFrame(data)

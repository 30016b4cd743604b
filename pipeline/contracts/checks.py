"""Row-level checks of one coerced column: a cheap fail mask over all rows, reasons for the few.

Two passes on purpose: `fail_mask` folds every rule of a column into as few vectorised
comparisons as possible (e.g. `~((v >= min) & (v <= max))` also catches NaN and inf), and
`explain` re-runs the individual rules only on the rows that failed somewhere, to name each
broken rule. Counting on the failing subset gives exact per-check counts because a rule can
only fire on a row that failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.contracts.coerce import PARSE_REASON, Coerced
from pipeline.spec.schema import ColumnContract


def fmt(x: object) -> str:
    """Short, stable rendering of a value inside a reason string."""
    if isinstance(x, float | np.floating):
        return str(int(x)) if float(x).is_integer() else f"{float(x):g}"
    if isinstance(x, str):
        return repr(x)
    return str(x)


@dataclass
class ColumnChecker:
    name: str
    spec: ColumnContract
    raw: pd.Series
    c: Coerced
    dup: np.ndarray | None = None

    @property
    def numeric(self) -> bool:
        return self.spec.dtype in ("int", "float")

    def _duplicates(self) -> np.ndarray:
        if self.spec.dtype in ("str", "category"):
            dup = self.raw.duplicated(keep="first").to_numpy()
        else:
            dup = pd.Series(self.c.values, copy=False).duplicated(keep="first").to_numpy()
        if self.c.null is not None:
            dup = dup & ~self.c.null  # nulls are the null check's business, not duplicates
        return dup

    def fail_mask(self) -> np.ndarray | None:
        """True where any rule of this column fails; None when nothing can fail."""
        s, c = self.spec, self.c
        fail: np.ndarray | None = None
        if self.numeric:
            v = c.values
            if v.dtype.kind == "f":
                if s.min is not None and s.max is not None:
                    fail = ~((v >= s.min) & (v <= s.max))  # also NaN and +-inf
                else:
                    fail = ~np.isfinite(v)
                    if s.min is not None:
                        fail |= v < s.min
                    if s.max is not None:
                        fail |= v > s.max
                if s.dtype == "int":
                    with np.errstate(invalid="ignore"):
                        fail |= np.fmod(v, 1.0) != 0
            else:
                if s.min is not None:
                    fail = v < s.min
                if s.max is not None:
                    fail = v > s.max if fail is None else fail | (v > s.max)
            if s.allowed is not None:
                bad = ~np.isin(v, np.asarray(s.allowed, dtype=v.dtype if v.dtype.kind == "f" else None))
                fail = bad if fail is None else fail | bad
            if s.nullable and fail is not None and c.null is not None:
                fail &= ~c.null
        else:
            if c.null is not None and not s.nullable:
                fail = c.null.copy()
            if c.unparsed is not None:
                fail = c.unparsed.copy() if fail is None else fail | c.unparsed
            bad = self._not_allowed_all()
            if bad is not None:
                fail = bad if fail is None else fail | bad
        if s.unique:
            self.dup = self._duplicates()
            fail = self.dup if fail is None else fail | self.dup
        return fail

    def _not_allowed_all(self) -> np.ndarray | None:
        s, c = self.spec, self.c
        if s.allowed is None:
            return None
        if s.dtype == "category":
            bad = c.codes == -1
        elif s.dtype == "str":
            bad = ~self.raw.isin([str(a) for a in s.allowed]).to_numpy(dtype=bool)
        else:
            return None
        return bad & ~c.null if c.null is not None else bad

    def explain(self, idx: np.ndarray) -> Iterator[tuple[str, np.ndarray, list[str]]]:
        """Yield (check, positions into idx, reason strings) for the rows idx (which failed somewhere)."""
        s, c, col = self.spec, self.c, self.name
        n = len(idx)
        null = c.null[idx] if c.null is not None else np.zeros(n, bool)
        unp = c.unparsed[idx] if c.unparsed is not None else np.zeros(n, bool)

        def raw_at(pos: np.ndarray) -> list:  # original values, for messages only (one batched lookup)
            return self.raw.iloc[idx[pos]].tolist()

        if unp.any():
            why = PARSE_REASON.get(s.dtype, "unparseable")
            pos = np.flatnonzero(unp)
            yield why, pos, [f"{col}: {why} ({fmt(x)})" for x in raw_at(pos)]
        if not s.nullable and (null & ~unp).any():
            pos = np.flatnonzero(null & ~unp)
            yield "null", pos, [f"{col}: null"] * len(pos)
        rest = ~null & ~unp
        if self.numeric:
            yield from self._explain_numeric(idx, rest)
        elif s.allowed is not None and s.dtype in ("category", "str"):
            if s.dtype == "category":
                bad = c.codes[idx] == -1
            else:
                bad = ~self.raw.iloc[idx].isin([str(a) for a in s.allowed]).to_numpy(dtype=bool)
            pos = np.flatnonzero(bad & rest)
            if len(pos):
                yield "not_allowed", pos, [f"{col}: not_allowed ({fmt(x)})" for x in raw_at(pos)]
        if self.dup is not None:
            pos = np.flatnonzero(self.dup[idx])
            if len(pos):
                yield "duplicate", pos, [f"{col}: duplicate ({fmt(x)})" for x in raw_at(pos)]

    def _explain_numeric(self, idx: np.ndarray, rest: np.ndarray) -> Iterator[tuple[str, np.ndarray, list[str]]]:
        s, col = self.spec, self.name
        v = self.c.values[idx]
        finite = rest & np.isfinite(v) if v.dtype.kind == "f" else rest
        rules: list[tuple[str, np.ndarray, str]] = []
        if v.dtype.kind == "f":
            rules.append(("not_finite", rest & np.isinf(v), ""))
            if s.dtype == "int":
                rules.append(("not_an_integer", finite & (np.fmod(np.where(finite, v, 0), 1.0) != 0), ""))
        if s.min is not None:
            rules.append(("below_min", finite & (v < s.min), f" < {fmt(s.min)}"))
        if s.max is not None:
            rules.append(("above_max", finite & (v > s.max), f" > {fmt(s.max)}"))
        if s.allowed is not None:
            rules.append(("not_allowed", finite & ~np.isin(v, np.asarray(s.allowed)), ""))
        for check, mask, tail in rules:
            pos = np.flatnonzero(mask)
            if len(pos):
                yield check, pos, [f"{col}: {check} ({fmt(x)}{tail})" for x in v[pos].tolist()]

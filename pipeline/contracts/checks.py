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


def messages(head: str, values: np.ndarray | list, tail: str = "") -> list[str]:
    """`[f"{head}{fmt(x)}{tail})" for x in values]`, formatting each distinct value once.

    Failing values repeat a lot (-1, inf, an unknown category), and the per-row f-string plus
    `fmt` is most of the cost of explaining 50k failing rows.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf" and len(values) > 1:
        uniq, inv = np.unique(values, return_inverse=True)  # equal values format equally (-0.0 and 0.0: "0")
        text = np.array([f"{head}{fmt(x)}{tail})" for x in uniq.tolist()], dtype=object)
        return text[inv].tolist()
    items = values.tolist() if isinstance(values, np.ndarray) else values
    seen: dict = {}
    try:  # keyed by type too: 1, 1.0 and True are equal but format differently
        for x in items:
            if (type(x), x) not in seen:
                seen[type(x), x] = f"{head}{fmt(x)}{tail})"
        return [seen[type(x), x] for x in items]
    except (TypeError, ValueError):  # unhashable or ambiguous values (arrays, pd.NA comparisons)
        return [f"{head}{fmt(x)}{tail})" for x in items]


@dataclass
class ColumnChecker:
    name: str
    spec: ColumnContract
    raw: pd.Series
    c: Coerced
    dup: np.ndarray | None = None
    whole: np.ndarray | None = None  # rules_fail over all rows, for columns that are not chunkable

    @property
    def numeric(self) -> bool:
        return self.spec.dtype in ("int", "float")

    @property
    def chunkable(self) -> bool:
        """Can `rules_fail` run on row slices? (all rules are elementwise numpy, except str `allowed`)."""
        return not (self.spec.dtype == "str" and self.spec.allowed is not None)

    def _duplicates(self) -> np.ndarray:
        if self.spec.dtype in ("str", "category"):
            dup = self.raw.duplicated(keep="first").to_numpy()
        else:
            dup = pd.Series(self.c.values, copy=False).duplicated(keep="first").to_numpy()
        if self.c.may_be_null:
            dup = dup & ~self.c.null  # nulls are the null check's business, not duplicates
        return dup

    def fail_mask(self) -> np.ndarray | None:
        """True where any rule of this column fails; None when nothing can fail."""
        fail = self.rules_fail(slice(None))
        if self.spec.unique:
            self.dup = self._duplicates()
            fail = self.dup if fail is None else fail | self.dup
        return fail

    def prepare(self) -> bool:
        """Whole-column work before the chunked pass (duplicates, pandas-backed rules); False if nothing can fail."""
        if self.spec.unique:
            self.dup = self._duplicates()
        if self.chunkable:
            can_fail = self.rules_fail(slice(0, 0)) is not None  # which rules apply does not depend on the rows
        else:
            self.whole = self.rules_fail(slice(None))
            can_fail = self.whole is not None
        return can_fail or self.dup is not None

    def fail_into(self, out: np.ndarray, rows: slice) -> None:
        """OR this column's failures on `rows` into `out` (after `prepare`; numpy only, so safe in threads)."""
        fail = self.rules_fail(rows) if self.chunkable else None if self.whole is None else self.whole[rows]
        if fail is not None:
            np.logical_or(out, fail, out=out)
        if self.dup is not None:
            np.logical_or(out, self.dup[rows], out=out)

    def rules_fail(self, rows: slice) -> np.ndarray | None:
        """True where a rule other than `unique` fails, for the rows `rows`; None when nothing can fail.

        Every rule is elementwise, so the answer for a slice is the slice of the whole-column
        answer: the engine evaluates it in cache-sized row chunks, in parallel.
        """
        s, c = self.spec, self.c
        fail: np.ndarray | None = None
        if self.numeric:
            v = c.values[rows]
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
            if s.nullable and fail is not None and c.may_be_null:
                fail &= ~c.null_at(rows)
        else:
            null = c.null_at(rows)
            if null is not None and not s.nullable:
                fail = null.copy()
            if c.unparsed is not None:
                fail = c.unparsed[rows].copy() if fail is None else fail | c.unparsed[rows]
            bad = self._not_allowed(rows, null)
            if bad is not None:
                fail = bad if fail is None else fail | bad
        return fail

    def _not_allowed(self, rows: slice, null: np.ndarray | None) -> np.ndarray | None:
        s, c = self.spec, self.c
        if s.allowed is None:
            return None
        if s.dtype == "category":
            bad = c.codes[rows] == -1
        elif s.dtype == "str":
            bad = ~self.raw.iloc[rows].isin([str(a) for a in s.allowed]).to_numpy(dtype=bool)
        else:
            return None
        return bad & ~null if null is not None else bad

    def explain(self, idx: np.ndarray) -> Iterator[tuple[str, np.ndarray, list[str]]]:
        """Yield (check, positions into idx, reason strings) for the rows idx (which failed somewhere)."""
        s, c, col = self.spec, self.c, self.name
        n = len(idx)
        null = c.null_at(idx)
        if null is None:
            null = np.zeros(n, bool)
        unp = c.unparsed[idx] if c.unparsed is not None else np.zeros(n, bool)

        def raw_at(pos: np.ndarray) -> list:  # original values, for messages only (one batched lookup)
            return self.raw.iloc[idx[pos]].tolist()

        if unp.any():
            why = PARSE_REASON.get(s.dtype, "unparseable")
            pos = np.flatnonzero(unp)
            yield why, pos, messages(f"{col}: {why} (", raw_at(pos))
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
                yield "not_allowed", pos, messages(f"{col}: not_allowed (", raw_at(pos))
        if self.dup is not None:
            pos = np.flatnonzero(self.dup[idx])
            if len(pos):
                yield "duplicate", pos, messages(f"{col}: duplicate (", raw_at(pos))

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
                yield check, pos, messages(f"{col}: {check} (", v[pos], tail)

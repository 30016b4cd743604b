"""Exact order statistics of a column split over partitions, without gathering the column.

np.quantile (method linear) of n values needs, per quantile, two order statistics and a weight that
depend on n only. Each partition keeps its finite values sorted (on its worker); the k-th smallest
over all partitions is found by bisection over the 64-bit ordered keys of float64, 255 pivots a round
(about 8 rounds), each round one `searchsorted` per partition. The result is bit-for-bit np.quantile's
(tests/unit/test_distributed_exact.py holds it to that for many sizes).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib import _function_base_impl as _nf  # np.quantile's own index/weight/lerp helpers

SIGN = 1 << 63
MAG = SIGN - 1
SPLITS = 256


def float_key(x: float) -> int:
    """An integer that orders like the float (-0.0 just below +0.0)."""
    bits = int(np.float64(x).view(np.int64)) & ((1 << 64) - 1)
    return bits if bits < SIGN else -(bits & MAG) - 1


def key_floats(keys: list[int]) -> np.ndarray:
    bits = [k if k >= 0 else ((-k - 1) | SIGN) for k in keys]
    return np.array(bits, dtype=np.uint64).view(np.float64)


def key_float(key: int) -> float:
    return float(key_floats([key])[0])


def quantile_plan(n: int, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(previous index, next index, weight) per quantile, as np.quantile computes them for n values."""
    method = _nf._QuantileMethods["linear"]
    virtual = np.asanyarray(method["get_virtual_index"](n, qs))
    previous, following = _nf._get_indexes(np.empty(0, dtype=np.float64), virtual, n)
    gamma = _nf._get_gamma(virtual, previous, method)
    return previous, following, gamma


def lerp(a: np.ndarray, b: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    return np.asarray(_nf._lerp(np.asarray(a, np.float64), np.asarray(b, np.float64), gamma))


CountLE = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def select_ranks(
    count_le: CountLE, ranks: dict[str, list[int]], bounds: dict[str, tuple[float, float]]
) -> dict[str, dict[int, float]]:
    """The value of each 0-based rank per column. `count_le({col: pivots})` -> #values <= pivot over all parts;
    `bounds[col]` = (min, max) of the column's finite values."""
    state: dict[tuple[str, int], list[int]] = {}
    for col, wanted in ranks.items():
        lo, hi = bounds[col]
        for r in wanted:
            state[(col, r)] = [float_key(lo) - 1, float_key(hi)]  # count(<= lo side) < r+1 <= count(<= hi side)
    while True:
        open_ = {k: v for k, v in state.items() if v[1] - v[0] > 1}
        if not open_:
            break
        pivots: dict[tuple[str, int], list[int]] = {}
        for k, (lo, hi) in open_.items():
            step = hi - lo
            pivots[k] = sorted({lo + step * j // SPLITS for j in range(1, SPLITS)} - {lo, hi})
        query: dict[str, list[np.ndarray]] = {}
        where: dict[tuple[str, int], tuple[int, int]] = {}
        for (col, r), keys in pivots.items():
            values = query.setdefault(col, [])
            where[(col, r)] = (sum(len(a) for a in values), len(keys))
            values.append(key_floats(keys))
        counts = count_le({c: np.concatenate(v) for c, v in query.items()})
        for (col, r), keys in pivots.items():
            start, size = where[(col, r)]
            got = counts[col][start : start + size]
            below = np.flatnonzero(got < r + 1)
            above = np.flatnonzero(got >= r + 1)
            if len(below):
                state[(col, r)][0] = max(state[(col, r)][0], keys[int(below[-1])])
            if len(above):
                state[(col, r)][1] = min(state[(col, r)][1], keys[int(above[0])])
    out: dict[str, dict[int, float]] = {}
    for (col, r), (_, hi) in state.items():
        out.setdefault(col, {})[r] = key_float(hi) + 0.0  # + 0.0: -0.0 and 0.0 count alike; report 0.0
    return out


def quantile_ranks(n: int, bins: int) -> tuple[list[int], Callable[[dict[int, float]], np.ndarray]]:
    """The ranks np.quantile(v, linspace(0, 1, bins + 1)[1:-1]) reads, and how to finish it from their values."""
    qs = np.linspace(0, 1, bins + 1)[1:-1]
    previous, following, gamma = quantile_plan(n, qs)
    ranks = sorted({int(i) for i in previous} | {int(i) for i in following})

    def finish(values: dict[int, float]) -> np.ndarray:
        a = np.array([values[int(i)] for i in previous], dtype=np.float64)
        b = np.array([values[int(i)] for i in following], dtype=np.float64)
        return lerp(a, b, gamma)

    return ranks, finish


def median_ranks(n: int) -> tuple[list[int], Callable[[dict[int, float]], float]]:
    """np.median: the middle value, or the mean of the two middle values."""
    if n % 2:
        return [n // 2], lambda values: float(values[n // 2])
    return [n // 2 - 1, n // 2], lambda values: float(np.mean(np.array([values[n // 2 - 1], values[n // 2]])))

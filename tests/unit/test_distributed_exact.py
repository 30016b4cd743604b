"""Order statistics over partitions (pipeline/distributed/exact.py) are np.quantile's and np.median's, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.distributed.exact import float_key, key_float, median_ranks, quantile_ranks, select_ranks


def _split_quantiles(v: np.ndarray, parts: int, bins: int) -> tuple[np.ndarray, float]:
    sorted_parts = [np.sort(p) for p in np.array_split(v, parts)]

    def count_le(query: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {c: sum(np.searchsorted(s, p, side="right") for s in sorted_parts) for c, p in query.items()}

    ranks, finish = quantile_ranks(len(v), bins)
    mranks, mfinish = median_ranks(len(v))
    got = select_ranks(count_le, {"x": sorted(set(ranks) | set(mranks))}, {"x": (v.min(), v.max())})["x"]
    return finish(got), mfinish(got)


@pytest.mark.parametrize("seed", range(40))
def test_equal_to_numpy_on_the_whole_array(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 2500))
    kind = seed % 4
    if kind == 0:
        v = rng.normal(size=n)
    elif kind == 1:
        v = rng.integers(-5, 5, n).astype(float)  # many ties
    elif kind == 2:
        v = rng.exponential(size=n) * 1e9
    else:
        v = np.round(rng.normal(size=n), 2) * -1e-300
    bins = int(rng.integers(2, 21))
    edges, median = _split_quantiles(v, int(rng.integers(1, 7)), bins)
    assert np.array_equal(edges, np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1]))
    assert median == np.median(v)


def test_keys_order_like_floats() -> None:
    values = [-np.inf, -1e308, -1.0, -5e-324, -0.0, 0.0, 5e-324, 1.0, 1e308, np.inf]
    keys = [float_key(v) for v in values]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert [key_float(k) for k in keys][1:-1] == values[1:-1]

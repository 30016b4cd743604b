"""The count-matrix bootstrap equals `classification_metrics` recomputed on each resampled array."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pipeline.metrics.classification import CLASSIFICATION_METRICS, classification_metrics
from pipeline.metrics.resampled import draw_counts, resampled_metrics


def _per_replicate(y: np.ndarray, p: np.ndarray, threshold: float, k: int, replicates: int, seed: int) -> dict:
    """The reference: draw rows exactly as draw_counts does, recompute every metric on the copy."""
    rng, out = np.random.default_rng(seed), {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(replicates):
            rows = rng.integers(0, len(y), size=len(y))
            for name, value in classification_metrics(y[rows], p[rows], threshold, k).items():
                out.setdefault(name, []).append(value)
    return {name: np.asarray(values) for name, values in out.items()}


@pytest.mark.parametrize(("n", "decimals", "k"), [(400, None, 50), (400, 1, 50), (23, 1, 100), (60, 2, 0)])
def test_every_metric_matches_the_per_replicate_reference(n: int, decimals: int | None, k: int) -> None:
    rng = np.random.default_rng(n)
    y = (rng.random(n) < 0.25).astype(float)
    p = np.clip(0.3 + 0.3 * y + rng.normal(0, 0.2, n), 0, 1)
    if decimals is not None:
        p = np.round(p, decimals)  # many ties, as a small LightGBM model gives
    reference = _per_replicate(y, p, 0.4, k, 60, seed=7)
    fast = resampled_metrics(y, p, 0.4, k, draw_counts(np.random.default_rng(7), n, 60))
    assert set(fast) == set(CLASSIFICATION_METRICS)
    for name in CLASSIFICATION_METRICS:
        if name == "precision_at_k" and decimals is not None:
            continue  # ties at the k-th row: broken by row order here, by draw order in the copy
        np.testing.assert_allclose(fast[name], reference[name], rtol=0, atol=1e-12, err_msg=name)


def test_single_class_replicates_are_nan_not_an_exception() -> None:
    y = np.array([1.0, 0.0, 0.0, 0.0])
    p = np.array([0.9, 0.2, 0.3, 0.1])
    counts = np.array([[0, 4, 0, 0], [1, 1, 1, 1]])  # the first replicate drew no positive
    got = resampled_metrics(y, p, 0.5, 2, counts)
    assert np.isnan(got["auc"][0]) and np.isnan(got["pr_auc"][0]) and got["recall"][0] == 0.0
    assert got["auc"][1] == 1.0 and got["precision_at_k"][1] == 0.5


def test_precision_at_k_breaks_ties_by_row_order_like_the_point_estimate() -> None:
    y = np.array([0.0, 1.0, 1.0, 0.0])
    p = np.array([0.5, 0.5, 0.5, 0.1])
    identity = np.ones((1, 4), dtype=np.int32)
    got = resampled_metrics(y, p, 0.5, 1, identity)["precision_at_k"][0]
    assert got == classification_metrics(y, p, 0.5, 1)["precision_at_k"] == 0.0


def test_large_inputs_are_worked_in_blocks_with_the_same_result() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    y = (rng.random(n) < 0.1).astype(float)
    p = rng.random(n)
    counts = draw_counts(np.random.default_rng(0), n, 250)  # 5M cells: more than one block
    whole = resampled_metrics(y, p, 0.5, 100, counts)
    halves = [resampled_metrics(y, p, 0.5, 100, part) for part in (counts[:125], counts[125:])]
    for name in CLASSIFICATION_METRICS:
        np.testing.assert_allclose(whole[name], np.concatenate([h[name] for h in halves]), rtol=0, atol=1e-12)

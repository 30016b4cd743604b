"""LightGBM's training threads: one for small fits, else two, capped by OMP_NUM_THREADS (a Dask worker sets 1)."""

from __future__ import annotations

import pytest

from pipeline.models.lightgbm_model import ONE_THREAD_BELOW_ROWS, training_threads


@pytest.mark.parametrize(
    ("rows", "omp", "threads"),
    [
        (ONE_THREAD_BELOW_ROWS - 1, None, 1),
        (ONE_THREAD_BELOW_ROWS, None, 2),
        (ONE_THREAD_BELOW_ROWS, "1", 1),  # a Dask worker's nanny: one thread per task
        (ONE_THREAD_BELOW_ROWS, "8", 2),
        (ONE_THREAD_BELOW_ROWS, "0", 1),
        (ONE_THREAD_BELOW_ROWS, "many", 2),  # not a number: ignored
    ],
)
def test_training_threads(monkeypatch: pytest.MonkeyPatch, rows: int, omp: str | None, threads: int) -> None:
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert training_threads(rows) == threads

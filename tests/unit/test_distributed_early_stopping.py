"""Early stopping replayed after distributed training keeps the iteration lgb.early_stopping keeps."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from pipeline.distributed.train import best_prefix


@pytest.mark.parametrize(("seed", "rounds"), [(0, 5), (1, 10), (2, 3)])
def test_best_prefix_is_lightgbms_best_iteration(seed: int, rounds: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    x = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.integers(0, 5, n).astype(float)})
    y = (x["a"] + 0.5 * rng.normal(size=n) > 0.8).astype(int).to_numpy()
    params = {"objective": "binary", "learning_rate": 0.3, "num_leaves": 15, "verbosity": -1, "seed": seed}
    train, valid = lgb.Dataset(x[:2000], y[:2000]), lgb.Dataset(x[2000:], y[2000:])
    stopped = lgb.train(params, train, 200, valid_sets=[valid], callbacks=[lgb.early_stopping(rounds, verbose=False)])
    full = lgb.train(params, lgb.Dataset(x[:2000], y[:2000]), 200)
    assert best_prefix(full, x[2000:], y[2000:], rounds) == stopped.best_iteration

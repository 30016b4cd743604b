"""evaluation.refit for recommendations: the served system is fitted on the full history."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.recsys.examples import FeedbackColumns, build_examples, interaction_matrix
from pipeline.recsys.refit import refit_examples, refit_info
from pipeline.recsys.splits import RecSplit

COLUMNS = FeedbackColumns("u", "i", "t", "y", True)


def examples(method: str = "global_time"):
    rng = np.random.default_rng(1)
    n = 3000
    frame = pd.DataFrame(
        {
            "u": rng.integers(0, 100, n),
            "i": rng.integers(0, 300, n),
            "t": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.permutation(n), unit="min"),
            "y": rng.random(n) < 0.6,
        }
    )
    return build_examples(frame, np.arange(300), COLUMNS, split=RecSplit(method, 0.1, 0.2))  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["global_time", "per_user_time"])
def test_refit_all_trains_on_every_part(method: str) -> None:
    ex = examples(method)
    full = refit_examples(ex, "all")
    assert len(full.train) == len(ex.train) + len(ex.valid) + len(ex.test) and len(full.test) == 0
    shape = (ex.n_users, ex.n_items)
    expected = sum(
        (interaction_matrix(p, shape) for p in (ex.train, ex.valid, ex.test)), interaction_matrix(ex.train, shape) * 0
    )
    assert (full.train_positives != expected).nnz == 0
    assert full.seen.nnz > ex.seen.nnz and set(full.seen.data) == {1.0}
    assert len(full.test_users) == 0 and full.test_relevant.nnz == 0
    assert full.valid_start == pd.Timestamp(int(full.train.times.max()))  # features as of the end of the history
    assert full.user_map is ex.user_map and full.item_map is ex.item_map


def test_refit_train_valid_leaves_test_out() -> None:
    ex = examples()
    part = refit_examples(ex, "train_valid")
    assert len(part.train) == len(ex.train) + len(ex.valid)
    assert not np.isin(ex.test.rows, part.train.rows).any()
    with pytest.raises(ValueError, match="refit must be"):
        refit_examples(ex, "none")


def test_refit_info_says_what_was_served() -> None:
    ex = examples()
    info = refit_info(ex, "all", ranker_used=True)
    assert info["parts"] == "all" and info["rows"] == ex.n_input and info["gated_rows"] == len(ex.train)
    assert "refit on train + valid + test" in info["what"] and "ranker" in info["kept"]
    assert refit_info(ex, "none", ranker_used=False)["what"].startswith("the model the gates measured")

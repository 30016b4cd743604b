"""Cross-validation fits on a real LocalCluster (2 worker processes): the same selection table as in-process.

The candidates, search points and folds of a table shaped like credit's (missing values, a categorical with
unused levels) are
fitted on the workers from one Parquet copy of the split; every fold's metrics, the kept trees, the winner
and its point must equal the local run's exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.models.select import select_model
from pipeline.spec.load import load_spec

pytest.importorskip("distributed")
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CREDIT = REPO / "examples" / "credit" / "credit.yaml"


def test_selection_on_the_cluster_equals_the_local_one(tmp_path: Path) -> None:
    from pipeline.distributed.select import dask_fold_runner

    rng = np.random.default_rng(0)
    n = 1200
    frame = pd.DataFrame(
        {
            "Seniority": rng.normal(size=n),
            "Amount": rng.normal(size=n),
            "Home": pd.Categorical(
                rng.choice(["owner", "rent", "parents", "other"], n),
                ["ignore", "other", "owner", "parents", "priv", "rent"],  # two levels never seen
            ),
            "Income": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(size=n)),
        }
    )
    logit = frame["Seniority"] - 0.5 * frame["Amount"] + (frame["Home"] == "rent") * 0.8
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    overrides = [
        "model.features=[Seniority,Amount,Home,Income]",
        "candidates.0.features=[Seniority,Amount,Income]",
        "model.search={num_leaves: [7, 15], learning_rate: [0.1]}",
        "candidates.0.search={C: [0.1, 1.0]}",
        "runtime=dask_local",
        "runtime.dask.local.memory_limit=1GiB",
        f"runtime.runs_dir={tmp_path / 'runs'}",
    ]
    spec = load_spec(CREDIT, overrides).spec
    candidates = [spec.model, *spec.candidates]
    kwargs = {"metric": "auc", "folds": 3, "seed": 7, "inner_valid_fraction": 0.15}
    here = select_model(candidates, frame, y, **kwargs)
    there = select_model(candidates, frame, y, **kwargs, fold_runner=dask_fold_runner(spec.runtime))
    assert there.table == here.table and there.index == here.index
    assert there.spec == here.spec and len(here.table[0]["search"]) == 2  # every point, on both sides
    assert not any((tmp_path / "runs").glob("keel-cv-*"))  # the split's copy is gone with the selection

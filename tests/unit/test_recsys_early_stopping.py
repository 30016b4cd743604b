"""The two-tower stops on the validation metric; a refit trains for the best epoch count."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from pipeline.data.synthetic.streamrec import generate
from pipeline.recsys import system
from pipeline.recsys.examples import FeedbackColumns, build_examples
from pipeline.recsys.refit import refit_spec
from pipeline.recsys.two_tower import TwoTowerModel, TwoTowerParams
from pipeline.spec.load import load_spec
from pipeline.spec.schema import ScenarioSpec

REPO = Path(__file__).resolve().parents[2]


def test_stops_after_patience_and_keeps_the_best_epoch() -> None:
    data = generate(8000, 3, ScenarioSpec(items=300))
    columns = FeedbackColumns("user_id", "item_id", "timestamp", label="clicked", positive=1)
    ex = build_examples(data["interactions"], data["items"]["item_id"], columns)
    train = data["interactions"].iloc[ex.train.rows]
    values = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.95])  # best at epoch 2, then two worse: stop after epoch 4
    params = TwoTowerParams(embedding_dim=8, hidden_dim=16, epochs=6, batch_size=256, seed=0)
    seen: list[np.ndarray] = []

    def validate(model: TwoTowerModel) -> float:
        seen.append(model.item_embeddings())
        return next(values)

    model = TwoTowerModel(params=params, threads=1).fit(train, items=data["items"], validate=validate, patience=2)
    assert len(model.history) == 4 and model.best_epoch == 2
    assert [h["valid"] for h in model.history] == [0.1, 0.3, 0.2, 0.25]
    np.testing.assert_allclose(model.item_embeddings(), seen[1], atol=1e-6)  # epoch 2's towers were kept
    # the real validation metric: a number in [0, 1] per epoch
    metric = system.validation_ndcg(ex, seed=0)
    assert metric is not None and 0.0 <= metric(model) <= 1.0


def test_refit_trains_for_the_best_epoch_count() -> None:
    spec = load_spec(str(REPO / "specs" / "streamrec.yaml"), ["model.params.early_stopping_rounds=2"]).spec
    model = SimpleNamespace(best_epoch=7)
    fixed = refit_spec(spec, model)
    assert fixed.model.params.epochs == 7 and fixed.model.params.early_stopping_rounds is None
    assert spec.model.params.early_stopping_rounds == 2  # the run's spec is untouched
    model.best_epoch = None
    assert refit_spec(spec, model) is spec

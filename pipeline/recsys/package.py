"""What `keel run` writes into a recommendation bundle for a fitted system, in one place.

The flow, the /recommend benchmark and the online tests all register bundles; writing them
through this one function means the bench and the tests serve exactly the layout the flow
registers (the diversity attribute in the item map, the ranker's info, the serving state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.recsys import system
from pipeline.recsys.bundle import write_recsys_dir
from pipeline.recsys.examples import RecExamples
from pipeline.recsys.serving_state import serving_state
from pipeline.spec.load import LoadedSpec


def write_system_bundle(
    directory: Path,
    loaded: LoadedSpec,
    model: Any,
    index: Any,
    recommender: system.Recommender,
    tables: system.RecTables,
    ex: RecExamples,
    metrics: dict[str, Any],
) -> None:
    """Model + index + ranker + id maps + serving state + contract, resolved spec and metrics under `directory`."""
    spec = loaded.spec
    data = spec.data
    items = pd.DataFrame({data.item: ex.item_map.ids})
    if recommender.attribute is not None and spec.reranker is not None:
        items[spec.reranker.diversity_attribute] = pd.Series(recommender.attribute).astype("string")
    users = pd.DataFrame({data.user: ex.user_map.ids})
    info = {
        "user_column": data.user,
        "item_column": data.item,
        "sources": list(recommender.retrieval.names),
        "candidates": recommender.retrieval.k,
        "top_k": spec.evaluation.top_k,
        "ranker": recommender.ranking.info,
        "ranker_features": recommender.ranking.features,
        "diversity_attribute": spec.reranker.diversity_attribute if spec.reranker else None,
        "two_tower_positives": spec.model.positives,
    }
    write_recsys_dir(
        Path(directory),
        model,
        index,
        recommender.ranking.ranker,
        items,
        users,
        spec.contract.model_dump_json(indent=2),
        loaded.to_yaml(),
        metrics,
        info,
        serving=serving_state(spec, tables, ex, recommender.retrieval, system.all_positive_matrix(ex)),
    )

"""The weekly high-risk list with runtime.executor dask: the snapshot scored and explained on the workers.

`keel run` holds the latest snapshot per entity in its own process (the training flow read the table);
the list is built from it the way `score_high_risk` builds it locally, but the expensive part (derived
features, LightGBM, tree SHAP reasons for the listed entities) runs per partition on the workers: the
snapshot is written as Parquet parts (workers read files, never a frame pickled into the graph), each
worker scores its parts with the bundle it loaded once (sha256-checked) and returns only its entities
at or above the threshold; the client orders them as np.argsort(-p, kind="stable") over the snapshot
does (probability descending, then snapshot position) and numbers the ranks. Equal to the local list.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.data.derived import add_derived
from pipeline.distributed.score import worker_bundle
from pipeline.models.explain import top_reasons
from pipeline.scoring.batch import HighRiskList

POS = "__keel_pos__"
LABEL = "__keel_label__"


def _list_part(
    url: str, bundle_key: tuple[str, str, dict[str, str]], entity_id: str | None, threshold: float, reasons: int
):
    """On a worker: the partition's rows at or above the threshold, with probability and reasons."""
    from pipeline.data.partitioned import read_partition

    bundle = worker_bundle(*bundle_key)
    frame = read_partition(url)
    features = add_derived(frame, bundle.derived) if bundle.derived else frame
    probability = np.asarray(bundle.model.predict_proba(features[bundle.model.features]), dtype=np.float64)
    chosen = np.flatnonzero(probability >= threshold)
    listed = features.iloc[chosen]
    worded = (
        top_reasons(bundle.model, listed[bundle.model.features], bundle.reference, n=reasons)
        if reasons > 0 and len(chosen)
        else [[] for _ in range(len(chosen))]
    )
    ids = listed[entity_id].astype("string").to_numpy() if entity_id else listed[LABEL].to_numpy(dtype=np.int64)
    return pd.DataFrame(
        {"id": ids, "probability": probability[chosen], "pos": listed[POS].to_numpy(), "reasons": worded}
    )


def high_risk_on_dask(
    runtime: Any,
    store: Any,
    tag: str,
    snapshot: pd.DataFrame,
    entity_id: str | None,
    threshold: float,
    reasons: int = 3,
) -> HighRiskList:
    """`score_high_risk(bundle, snapshot, entity_id, threshold, reasons=reasons)` on the run's cluster."""
    from pipeline.distributed.cluster import open_cluster
    from pipeline.distributed.errors import worker_faults

    key = (str(store.home), tag, dict(store.get(tag).manifest.files))
    with (
        tempfile.TemporaryDirectory(prefix="keel-dask-snapshot-") as tmp,
        open_cluster(runtime, "high_risk") as cluster,
    ):
        client = cluster.client
        parts = max(2, 2 * cluster.workers)
        frame = snapshot.assign(**{POS: np.arange(len(snapshot)), LABEL: np.asarray(snapshot.index, dtype=np.int64)})
        urls = []
        for i, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
            url = str(Path(tmp) / f"part-{i:05d}.parquet")
            frame.iloc[rows].to_parquet(url, index=False)
            urls.append(url)
        with worker_faults():
            pieces = client.gather(
                client.map(_list_part, urls, bundle_key=key, entity_id=entity_id, threshold=threshold, reasons=reasons)
            )
    listed = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame(columns=["id", "probability", "pos"])
    order = np.lexsort((listed["pos"].to_numpy(), -listed["probability"].to_numpy()))
    listed = listed.iloc[order]
    first = (
        {entity_id: listed["id"].astype("string").to_numpy()}
        if entity_id
        else {"row": listed["id"].to_numpy(dtype=np.int64)}
    )
    frame = pd.DataFrame(
        {
            **first,
            "probability": listed["probability"].to_numpy(dtype=np.float64),
            "rank": np.arange(1, len(listed) + 1),
            "reasons": list(listed["reasons"]) if len(listed) else [],
            "bundle": tag,
        }
    )
    return HighRiskList(frame, len(snapshot))

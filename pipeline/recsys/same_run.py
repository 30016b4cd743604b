"""Same-run baselines: classical sources fitted on the same train part, scored on the same users.

`evaluation.baselines` (default popularity, co-occurrence, item-kNN and EASE; `als` on request)
are evaluated exactly like the system's stages: full catalogue, train-seen items excluded, the
warm test users. Each one's fit time is kept so a benchmark can weigh `keel run` against them.
A baseline that cannot run here (EASE above its max_items) is reported as skipped, with why.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pipeline.recsys.examples import RecExamples
from pipeline.recsys.metrics import evaluate_scores
from pipeline.recsys.retrieval import Retrieval
from pipeline.recsys.sources import ScorerSource, make_source
from pipeline.spec.schema import Spec

MARGIN_METRICS = ("hit@10", "ndcg@10")


def same_run_baselines(
    spec: Spec, retrieval: Retrieval, ex: RecExamples, users: np.ndarray, ks: list[int]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
    """({baseline: metrics}, {baseline: {type, fit_seconds} or {type, skipped}}) on `users`."""
    stages: dict[str, dict[str, float]] = {}
    info: dict[str, dict[str, Any]] = {}
    for source in spec.evaluation.baselines:
        name = source.name or source.type
        started = time.perf_counter()
        reused: dict[str, str] = {}
        if source.type == "popularity" and not source.params:
            scores, fitted = retrieval.popularity.scores, 0.0  # the system's own, fitted on the same part
        elif source.type == "cooccurrence" and not source.params:
            scores, fitted = retrieval.cooccurrence.scores, 0.0
        elif (twin := _merged_twin(spec, retrieval, source)) is not None:
            # the same type and params, fitted on the same part: reused; its fit time is the retrieval's
            scores, fitted = twin[1].scorer.scores, retrieval.fit_seconds.get(twin[0], 0.0)
            reused = {"reused": f"retrieval source {twin[0]}"}
        else:
            try:
                model = make_source(source.type, source.params).fit(ex.train_positives)
            except (ValueError, MemoryError) as exc:
                info[name] = {"type": source.type, "skipped": str(exc)}
                continue
            assert isinstance(model, ScorerSource)
            scores, fitted = model.scorer.scores, time.perf_counter() - started
        stages[name] = evaluate_scores(scores, users, ex.seen, ex.test_relevant, ks)
        info[name] = {"type": source.type, "fit_seconds": round(fitted, 3), **reused}
    return stages, info


def _merged_twin(spec: Spec, retrieval: Retrieval, baseline) -> tuple[str, ScorerSource] | None:
    """(name, source): the retrieval source this run already fitted with the baseline's type and params."""
    if spec.retrieval is None:
        return None
    for source in spec.retrieval.sources:
        name = source.name or source.type
        fitted = retrieval.extra.get(name)
        if source.type == baseline.type and source.params == baseline.params and isinstance(fitted, ScorerSource):
            return name, fitted
    return None


def baseline_margins(stages: dict[str, dict[str, float]], baselines: list[str]) -> dict[str, dict[str, Any]]:
    """The system's final list vs each same-run baseline on Hit@10 and NDCG@10 (positive: the system is better)."""
    final = stages["final"]
    out: dict[str, dict[str, Any]] = {}
    for name in baselines:
        if name not in stages:
            continue
        base = stages[name]
        out[name] = {
            m: {"pipeline": final[m], "baseline": base[m], "beats": bool(final[m] > base[m])} for m in MARGIN_METRICS
        }
    return out

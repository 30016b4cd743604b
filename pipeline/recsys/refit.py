"""Refit before serving (`evaluation.refit`): the chosen configuration retrained on the full history.

The gates judge models fitted on the train part only (the test part must stay unseen). Serving
those models would throw away the newest interactions, the ones that matter most for what a
user wants next. With `evaluation.refit: train_valid` or `all`, after the gates the retrieval
models (two-tower + index, co-occurrence, popularity) and the ranking features are fitted again
on train + valid (+ test) with the same spec and seed; the ranker, trained on validation-period
candidates, is kept. Batch lists and the bundle come from the refit system; the report says so.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipeline.recsys import system
from pipeline.recsys.examples import Part, RecExamples, _binary, interaction_matrix
from pipeline.spec.schema import Spec

PARTS = {"train_valid": ("train", "valid"), "all": ("train", "valid", "test")}


def refit_examples(ex: RecExamples, refit: str) -> RecExamples:
    """`ex` with train = the union of the parts `refit` names, and nothing left to evaluate on."""
    if refit not in PARTS:
        raise ValueError(f"refit must be one of {sorted(PARTS)}, got {refit!r}.")
    parts = [getattr(ex, name) for name in PARTS[refit]]
    train = Part(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Part)))
    shape = (ex.n_users, ex.n_items)
    positives = interaction_matrix(train, shape, positive_only=True)
    seen = _binary(positives if ex.seen_from == "positive" else interaction_matrix(train, shape, positive_only=False))
    empty = Part(*(getattr(train, f.name)[:0] for f in dataclasses.fields(Part)))
    none = np.zeros(0, dtype=np.int64)
    nothing = sp.csr_matrix(shape, dtype=np.float32)
    return dataclasses.replace(
        ex,
        train=train,
        valid=empty,
        test=empty,
        valid_start=_after(train.times, ex.valid_start),  # features are "as of" the end of the history
        test_start=None,
        train_positives=positives,
        seen=seen,
        valid_relevant=nothing,
        test_relevant=nothing,
        valid_users=none,
        test_users=none,
        cold_valid_users=none,
        cold_test_users=none,
    )


def refit_spec(spec: Spec, model: Any) -> Spec:
    """The spec to refit with: a two-tower that stopped early trains for its best epoch count, unvalidated
    (there is no later period left to validate on), as a refit LightGBM keeps its tree count."""
    best = getattr(model, "best_epoch", None)
    params = spec.model.params
    if best is None or getattr(params, "early_stopping_rounds", None) is None:
        return spec
    fixed = params.model_copy(update={"epochs": best, "early_stopping_rounds": None})
    return spec.model_copy(update={"model": spec.model.model_copy(update={"params": fixed})})


def refit_recommender(
    spec: Spec, tables: system.RecTables, ex: RecExamples, retrieval: system.Retrieval, gated: system.Recommender
) -> system.Recommender:
    """The served system: refit retrieval, features and diversity exposure from `ex`; the gated ranker."""
    builder = system.feature_builder(spec, tables, ex)
    attribute, exposure = system.diversity_attribute(spec, tables, ex)
    cold = system.cold_start_for(spec, tables, ex, retrieval)
    return system.Recommender(spec, retrieval, builder, gated.ranking, attribute, exposure, cold_start=cold)


def refit_info(ex: RecExamples, refit: str, ranker_used: bool) -> dict[str, Any]:
    """What the served system learned from, for the report and the bundle."""
    if refit == "none":
        return {"parts": "none", "rows": len(ex.train), "what": "the model the gates measured (train part only)"}
    names = PARTS[refit]
    rows = sum(len(getattr(ex, n)) for n in names)
    what = f"refit on {' + '.join(names)} ({rows:,} rows; the gates measured the fit on train, {len(ex.train):,} rows)"
    refit_parts = "two-tower + index, co-occurrence, popularity, ranking features"
    kept = "the ranker (trained on validation-period candidates)" if ranker_used else "nothing else"
    return {"parts": refit, "rows": rows, "gated_rows": len(ex.train), "what": what, "refit": refit_parts, "kept": kept}


def _after(times: np.ndarray, like: object) -> object:
    """The latest time of the history, in the same terms as the split's cut-offs."""
    if len(times) == 0:
        return like
    last = times.max()
    return float(last) if times.dtype.kind == "f" else pd.Timestamp(int(last))

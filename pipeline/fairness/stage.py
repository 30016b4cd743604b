"""Rollout stage checks on fairness metrics: one named metric from a frame of logged rows.

The rollout stage machine (pipeline/rollout) owns when a stage is evaluated; this module
only turns the stage's traffic into the metric the stage's `checks` name, with the same
sample-size rule as the offline report.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from pipeline.fairness.classification import classification_fairness
from pipeline.fairness.recommendation import position_weights
from pipeline.fairness.result import INSUFFICIENT, short_groups

STAGE_METRICS = ("tpr_gap", "fpr_gap", "auc_gap", "precision_gap", "flagged_share_gap", "equalized_odds_gap")
STAGE_METRICS += ("outcome_gap", "hit_disparity", "ndcg_disparity", "exposure_equity")
OUTCOME_GAPS = ("outcome_gap", "hit_disparity", "ndcg_disparity")  # mean outcome per group: max - min
_BASE = re.compile(r"^([a-z_]+?)(@\d+)?(\[[A-Za-z0-9_*]+\])?$")


def stage_metric(
    name: str,
    frame: pd.DataFrame,
    *,
    group: str = "group",
    outcome: str = "outcome",
    prediction: str = "prediction",
    exposure: str = "exposure",
    threshold: float = 0.5,
    reference: dict[str, float] | None = None,
    min_group_size: int = 200,
    min_group_events: int = 20,
) -> dict[str, Any]:
    """{"metric", "value" (None when insufficient), "status" ("ok"/"insufficient data"), "reason", "groups"}.

    frame rows: one per logged request/entity with `group` (the group label, intersections
    already joined), and per metric:
    - tpr_gap, fpr_gap, auc_gap, precision_gap, flagged_share_gap, equalized_odds_gap:
      `outcome` (0/1 label) and `prediction` (probability; flagged at `threshold`);
    - outcome_gap, hit_disparity@K, ndcg_disparity@K (user-side): `outcome` per user row (a hit,
      an NDCG, a click; 0/1 or numeric); the value is the largest gap in its mean between groups;
    - exposure_equity: one row per shown slot with `group` (the creator group) and `exposure`
      (a position weight; absent: 1 / log2(position + 2) from a `position` column, else 1),
      `reference` = group -> reference share (catalogue share); groups absent from it are ignored.
    A group below min_group_size rows counts as insufficient, as in the offline report.
    """
    base = _BASE.match(name)
    metric = base.group(1) if base else name
    if metric not in STAGE_METRICS:
        raise ValueError(f"unknown stage fairness metric {name!r}; known: {', '.join(STAGE_METRICS)}")
    if group not in frame.columns:
        raise ValueError(f"stage metric {name!r}: the frame has no group column {group!r}")
    sizes = frame[group].astype(str).value_counts()
    if metric == "exposure_equity":
        return _exposure_equity(name, frame, group, exposure, reference or {}, sizes, min_group_size)
    if metric in OUTCOME_GAPS:
        means = frame.groupby(frame[group].astype(str))[outcome].mean()
        ok = sizes[sizes >= min_group_size].index
        return _verdict(name, means[ok], sizes, min_group_size, lambda v: float(v.max() - v.min()), minimum=2)
    groups = pd.DataFrame({"g": frame[group].astype(str).to_numpy()})
    report = classification_fairness(
        frame[outcome].to_numpy(dtype=float),
        frame[prediction].to_numpy(dtype=float),
        groups,
        [["g"]],
        threshold,
        min_group_size=min_group_size,
        min_group_events=min_group_events,
        replicates=0,
    )
    value = report.metrics.get(metric)
    return {
        "metric": name,
        "value": value,
        "status": "ok" if value is not None else INSUFFICIENT,
        "reason": report.insufficient.get(metric, ""),
        "groups": {str(k): int(v) for k, v in sizes.items()},
    }


def _exposure_equity(name, frame, group, exposure, reference, sizes, min_size) -> dict[str, Any]:
    if exposure in frame.columns:
        weights = frame[exposure].to_numpy(dtype=float)
    elif "position" in frame.columns and len(frame):
        weights = position_weights(int(frame["position"].max()) + 1)[frame["position"].to_numpy(dtype=np.int64)]
    else:
        weights = np.ones(len(frame))
    totals = pd.Series(weights).groupby(frame[group].astype(str).to_numpy()).sum()
    share = totals / totals.sum() if totals.sum() > 0 else totals
    ratios = pd.Series({g: share.get(g, 0.0) / r for g, r in reference.items() if r > 0}, dtype=float)
    # a group never shown is a measured 0 only if its reference share of these slots reaches min_size
    # (no traffic, or 10 slots, says nothing about a 5% group)
    total = sum(reference.values()) or 1.0
    ok = [
        g
        for g in ratios.index
        if sizes.get(g, 0) >= min_size or (share.get(g, 0.0) == 0.0 and reference[g] / total * len(frame) >= min_size)
    ]
    return _verdict(name, ratios[ok], sizes, min_size, lambda v: float(v.min()), minimum=1)


def _verdict(name, values: pd.Series, sizes: pd.Series, min_size: int, reduce, minimum: int) -> dict[str, Any]:
    groups = {str(k): int(v) for k, v in sizes.items()}
    if len(values) < minimum:
        short = short_groups([(g, n) for g, n in groups.items() if n < min_size])
        reason = f"{INSUFFICIENT}: fewer than {minimum} groups of {min_size} rows; short: {short}"
        return {"metric": name, "value": None, "status": INSUFFICIENT, "reason": reason, "groups": groups}
    return {"metric": name, "value": reduce(values), "status": "ok", "reason": "", "groups": groups}

"""Recommendation fairness: creator-side exposure and user-side quality by group.

Exposure is position-weighted like DCG (slot r of the top k weighs 1 / log2(r + 2)), so a
group shown at the bottom of every list counts less than one shown at the top.
`exposure_equity` is the worst sufficient creator group's exposure share divided by its
reference share (its share of the catalogue, or of the held-out relevant items with
`reference="relevance"`): 1 means every group gets at least its share, 0.5 means some
group gets half of it. `exposure_gini` is the Gini coefficient of exposure over catalogue
items (0: equal, 1: one item gets everything). User-side disparity is the largest gap in
Hit@k / NDCG@k between user groups.

Intervals resample users (their lists and their relevant items together); a user-group
gap resamples each group on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipeline.fairness.bootstrap import interval, replicate_sums, safe_ratio
from pipeline.fairness.groups import group_codes, grouping_name
from pipeline.fairness.result import INSUFFICIENT, OK, FairnessReport, GroupMetric, short_groups, worst_of
from pipeline.recsys.metrics import evaluated_rows, per_user_metrics


def position_weights(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(k) + 2.0)


def exposure_matrix(lists: np.ndarray, item_codes: np.ndarray, n_codes: int, k: int) -> sp.csr_matrix:
    """(users, n_codes) position-weighted exposure of each code (item or group) in each top-k list."""
    top = np.asarray(lists)[:, :k]
    shown = top >= 0
    rows = np.repeat(np.arange(top.shape[0]), shown.sum(axis=1))
    weights = np.broadcast_to(position_weights(top.shape[1]), top.shape)[shown]
    return sp.csr_matrix((weights, (rows, item_codes[top[shown]])), shape=(top.shape[0], n_codes))


def gini(values: np.ndarray) -> np.ndarray:
    """Gini coefficient per row of a (r, n) non-negative array (NaN for an all-zero row)."""
    v = np.sort(np.atleast_2d(np.asarray(values, dtype=np.float64)), axis=1)
    n = v.shape[1]
    ranks = np.arange(1, n + 1)
    total = v.sum(axis=1)
    return safe_ratio(((2 * ranks - n - 1) * v).sum(axis=1), n * total)


def recommendation_fairness(
    lists: np.ndarray,
    relevant: sp.csr_matrix,
    users: pd.DataFrame,
    items: pd.DataFrame,
    user_groupings: Sequence[Sequence[str]],
    creator_groupings: Sequence[Sequence[str]],
    *,
    k: int = 10,
    reference: str = "catalog",
    min_group_size: int = 200,
    min_group_items: int = 20,
    replicates: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> FairnessReport:
    """Fairness of the final lists of evaluated users.

    lists: (users, >= k) item indices (catalogue order, -1 padding); relevant: (users, items)
    held-out relevant items of the same users; users: one row per list with the user group
    columns; items: one row per catalogue item with the creator group columns.
    """
    lists = np.asarray(lists, dtype=np.int64)
    relevant = sp.csr_matrix(relevant)
    if not len(lists) == relevant.shape[0] == len(users):
        raise ValueError(
            f"lists, relevant and users must have one row per user: {len(lists)}, {relevant.shape[0]}, {len(users)}"
        )
    if relevant.shape[1] != len(items):
        raise ValueError(f"relevant has {relevant.shape[1]} item columns but the item table {len(items)} rows.")
    k = min(k, lists.shape[1])
    report = FairnessReport()
    rng = np.random.default_rng([seed, 15])
    _exposure(
        report, lists, relevant, items, creator_groupings, k, reference, min_group_items, replicates, confidence, rng
    )
    _users(report, lists, relevant, users, user_groupings, k, min_group_size, replicates, confidence, rng)
    return report


def _exposure(report, lists, relevant, items, groupings, k, reference, min_items, replicates, confidence, rng) -> None:
    n_items = len(items)
    per_item = exposure_matrix(lists, np.arange(n_items), n_items, k)
    # No interval: resampling users shrinks the set of items shown, so bootstrap Ginis sit above
    # the estimate (biased, not uncertain); see docs/adr/0015-fairness-and-causal.md.
    report.add_metric("exposure_gini", float(gini(np.asarray(per_item.sum(axis=0)).ravel())[0]), (None, None))
    relevant_per_item = np.asarray(relevant.sum(axis=0)).ravel()
    names = []
    for columns in groupings:
        grouping = grouping_name(columns)
        codes, labels = group_codes(items, columns, f"fairness.creator_groups {grouping}")
        exposure = exposure_matrix(lists, codes, len(labels), k).toarray()
        catalog = np.bincount(codes, minlength=len(labels)).astype(np.float64)
        ref = (
            catalog if reference == "catalog" else np.bincount(codes, weights=relevant_per_item, minlength=len(labels))
        )
        ref_share = ref / ref.sum() if ref.sum() > 0 else np.full(len(labels), np.nan)
        share = exposure.sum(axis=0) / max(exposure.sum(), 1e-300)
        ratio = safe_ratio(share, ref_share)
        reps = replicate_sums(exposure, replicates, rng) if replicates else None
        rep_share = safe_ratio(reps, reps.sum(axis=1, keepdims=True)) if reps is not None else None
        rep_ratio = safe_ratio(rep_share, ref_share[None, :]) if rep_share is not None else None
        ok = (catalog >= min_items) & (ref_share > 0)
        for g, label in enumerate(labels):
            status = OK if ok[g] else INSUFFICIENT
            for metric, value, rep in (("exposure_share", share, rep_share), ("exposure_ratio", ratio, rep_ratio)):
                bounds = interval(rep[:, g], confidence) if rep is not None and ok[g] else (None, None)
                report.groups.append(
                    GroupMetric(grouping, label, metric, _num(value[g]), *bounds, int(catalog[g]), status)
                )
        name = f"exposure_equity[{grouping}]"
        names.append(name)
        left_out = [(labels[g], _num(ratio[g]), int(catalog[g])) for g in np.flatnonzero(~ok)]
        if left_out:  # named in the gate's verdict, and the equity with them in (their point ratios)
            report.exclude(name, left_out, [_num(r) for r in ratio], higher_is_better=True)
        if not ok.any():
            report.add_metric(
                name, None, (None, None), f"{INSUFFICIENT}: no creator group has {min_items} catalogue items"
            )
            continue
        worst = int(np.flatnonzero(ok)[np.argmin(ratio[ok])])
        bounds = interval(np.nanmin(rep_ratio[:, ok], axis=1), confidence) if rep_ratio is not None else (None, None)
        report.add_metric(name, float(ratio[worst]), bounds)
        report.extra.setdefault("worst_exposed_group", {})[grouping] = {
            "group": labels[worst],
            "exposure_share": float(share[worst]),
            "reference_share": float(ref_share[worst]),
        }
    if names:
        worst_of(report, "exposure_equity", names, higher_is_better=True)
    report.extra["exposure_reference"] = reference


def _users(report, lists, relevant, users, groupings, k, min_size, replicates, confidence, rng) -> None:
    rows = evaluated_rows(relevant)
    per_user = per_user_metrics(lists[:, : max(k, 1)], relevant, [k])
    hit, ndcg = per_user[f"hit@{k}"], per_user[f"ndcg@{k}"]
    frame = users.iloc[rows].reset_index(drop=True)
    names: dict[str, list[str]] = {f"hit_disparity@{k}": [], f"ndcg_disparity@{k}": []}
    for columns in groupings:
        grouping = grouping_name(columns)
        codes, labels = group_codes(frame, columns, f"fairness.groups {grouping}")
        reps: dict[str, dict[str, np.ndarray]] = {"hit": {}, "ndcg": {}}
        for g, label in enumerate(labels):
            members = np.flatnonzero(codes == g)
            n = len(members)
            ok = n >= min_size
            values = np.stack([hit[members], ndcg[members]], axis=1)
            sums = replicate_sums(values, replicates, rng) / n if replicates and ok else None
            for j, metric in enumerate(("hit", "ndcg")):
                bounds = interval(sums[:, j], confidence) if sums is not None else (None, None)
                status = OK if ok else INSUFFICIENT
                report.groups.append(
                    GroupMetric(grouping, label, f"{metric}@{k}", float(values[:, j].mean()), *bounds, n, status)
                )
                if ok and sums is not None:
                    reps[metric][label] = sums[:, j]
        for metric in ("hit", "ndcg"):
            name = f"{metric}_disparity@{k}[{grouping}]"
            names[f"{metric}_disparity@{k}"].append(name)
            ok_rows = [
                g for g in report.groups if g.grouping == grouping and g.metric == f"{metric}@{k}" and g.status == OK
            ]
            every = [g for g in report.groups if g.grouping == grouping and g.metric == f"{metric}@{k}"]
            left_out = [(g.group, g.value, g.n) for g in every if g.status != OK]
            if left_out:  # named in the gate's verdict, and the disparity with them in (their point values)
                report.exclude(name, left_out, [g.value for g in every], higher_is_better=False)
            if len(ok_rows) < 2:
                short = short_groups(
                    [
                        (g.group, g.n)
                        for g in report.groups
                        if g.grouping == grouping and g.metric == f"{metric}@{k}" and g.status != OK
                    ]
                )
                report.add_metric(
                    name,
                    None,
                    (None, None),
                    f"{INSUFFICIENT}: fewer than 2 user groups of {min_size}; short: {short}",
                )
                continue
            values = [g.value for g in ok_rows]
            bounds = (None, None)
            if len(reps[metric]) == len(ok_rows):
                matrix = np.stack(list(reps[metric].values()), axis=1)
                bounds = interval(matrix.max(axis=1) - matrix.min(axis=1), confidence)
            report.add_metric(name, max(values) - min(values), bounds)
    for name, qualified in names.items():
        if qualified:
            worst_of(report, name, qualified, higher_is_better=False)
    report.extra["evaluated_users"] = len(rows)
    report.extra[f"hit@{k}"] = float(hit.mean()) if len(hit) else None


def _num(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)

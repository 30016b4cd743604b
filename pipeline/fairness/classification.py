"""Classification fairness: per-group AUC, TPR, FPR, precision and share flagged at the threshold,
and the largest gaps between groups (equal opportunity: TPR; equalized odds: TPR or FPR).

Each group is resampled on its own (a stratified bootstrap, so every replicate keeps the
group sizes) and a gap's interval comes from the same replicates as the group values.
A group below `min_group_size` rows, or a rate whose denominator (positives for TPR,
negatives for FPR, flagged rows for precision) is below `min_group_events`, is
"insufficient data": shown, never part of a gap's value. It is named with its point estimate
in `report.excluded[gap]`, and `report.with_excluded[gap]` is the gap with it in: a gate that
number would fail says "insufficient", never "passed" (pipeline/gates/evaluate.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipeline.fairness.bootstrap import interval, resample_counts, safe_ratio
from pipeline.fairness.groups import group_codes, grouping_name
from pipeline.fairness.result import INSUFFICIENT, OK, FairnessReport, GroupMetric, short_groups, worst_of

RATES = ("tpr", "fpr", "precision", "flagged_share")
METRICS = ("auc", *RATES)
GAPS = {"auc": "auc_gap", "tpr": "tpr_gap", "fpr": "fpr_gap", "precision": "precision_gap"}
GAPS |= {"flagged_share": "flagged_share_gap"}


def classification_fairness(
    y: np.ndarray,
    p: np.ndarray,
    frame: pd.DataFrame,
    groupings: Sequence[Sequence[str]],
    threshold: float,
    *,
    min_group_size: int = 200,
    min_group_events: int = 20,
    replicates: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> FairnessReport:
    """Group metrics over `frame`'s group columns (rows aligned with labels `y` and scores `p`)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if not len(y) == len(p) == len(frame):
        raise ValueError(f"y, p and frame must have one length; got {len(y)}, {len(p)}, {len(frame)}.")
    flagged = (p >= threshold).astype(np.float64)
    report = FairnessReport()
    names: dict[str, list[str]] = {gap: [] for gap in [*GAPS.values(), "equalized_odds_gap"]}
    rng = np.random.default_rng([seed, 15])
    for columns in groupings:
        grouping = grouping_name(columns)
        codes, labels = group_codes(frame, columns, f"fairness.groups {grouping}")
        values: dict[str, dict[str, np.ndarray | None]] = {m: {} for m in METRICS}
        for code, label in enumerate(labels):
            rows = np.flatnonzero(codes == code)
            group = _group(y[rows], p[rows], flagged[rows], replicates, rng)
            for metric in METRICS:
                value, reps, n = group[metric]
                events = metric in ("tpr", "fpr", "precision")
                enough = len(rows) >= min_group_size and (not events or n >= min_group_events) and value is not None
                bounds = interval(reps, confidence) if enough and reps is not None else (None, None)
                status = OK if enough else INSUFFICIENT
                report.groups.append(GroupMetric(grouping, label, metric, value, *bounds, n, status))
                if enough:
                    values[metric][label] = reps
        for metric, gap in GAPS.items():
            name = f"{gap}[{grouping}]"
            rows = [g for g in report.groups if g.grouping == grouping and g.metric == metric]
            _gap(report, name, rows, values[metric], confidence)
            names[gap].append(name)
        _equalized_odds(report, grouping, confidence, values)
        names["equalized_odds_gap"].append(f"equalized_odds_gap[{grouping}]")
    for gap, qualified in names.items():
        if qualified:
            worst_of(report, gap, qualified, higher_is_better=False)
    return report


def _group(y: np.ndarray, p: np.ndarray, flagged: np.ndarray, replicates: int, rng: np.random.Generator):
    """metric -> (value, replicate values or None, sample size) for one group's rows."""
    n = len(y)
    columns = np.stack([flagged * y, y, flagged * (1 - y), 1 - y, flagged, np.ones(n)], axis=1)
    point = columns.sum(axis=0)
    reps = np.concatenate([c @ columns for c in resample_counts(n, replicates, rng)]) if replicates and n else None
    auc_rng = np.random.default_rng(rng.integers(2**63))
    auc_value = _auc(np.ones((1, n)), y, p)[0] if n else np.nan
    auc_reps = None
    if reps is not None:
        auc_reps = np.concatenate([_auc(c, y, p) for c in resample_counts(n, replicates, auc_rng)])

    def rate(num: int, den: int):
        value = float(point[num] / point[den]) if point[den] > 0 else None
        return value, (safe_ratio(reps[:, num], reps[:, den]) if reps is not None else None), int(point[den])

    return {
        "auc": (None if np.isnan(auc_value) else float(auc_value), auc_reps, n),
        "tpr": rate(0, 1),
        "fpr": rate(2, 3),
        "precision": rate(0, 4),
        "flagged_share": rate(4, 5),
    }


def _auc(counts: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """AUC per row of a (r, n) count matrix: Mann-Whitney with ties counted half, NaN with one class."""
    uniques, inverse = np.unique(p, return_inverse=True)
    n, u = len(p), len(uniques)
    indicator = sp.csr_matrix((np.ones(n), (np.arange(n), inverse)), shape=(n, u))
    pos = np.asarray(indicator.T @ (counts * y).T).T  # (r, u) positive weight per distinct score
    neg = np.asarray(indicator.T @ (counts * (1 - y)).T).T
    below = np.cumsum(neg, axis=1) - neg
    wins = (pos * (below + 0.5 * neg)).sum(axis=1)
    return safe_ratio(wins, pos.sum(axis=1) * neg.sum(axis=1))


def _gap(
    report: FairnessReport,
    name: str,
    rows: list[GroupMetric],
    reps: dict[str, np.ndarray | None],
    confidence: float,
) -> None:
    ok = [r for r in rows if r.status == OK]
    left_out = [(r.group, r.value, r.n) for r in rows if r.status != OK]
    if left_out:  # named in the gate's verdict; a gate they would flip is insufficient, never passed
        report.exclude(name, left_out, [r.value for r in rows], higher_is_better=False)
    if len(ok) < 2:
        short = short_groups([(r.group, r.n) for r in rows if r.status != OK])
        report.add_metric(name, None, (None, None), f"{INSUFFICIENT}: fewer than 2 groups large enough; short: {short}")
        return None
    values = [r.value for r in ok]
    stack = [reps[r.group] for r in ok]
    bounds: tuple[float | None, float | None] = (None, None)
    if all(s is not None for s in stack):
        matrix = np.stack(stack, axis=1)
        with np.errstate(all="ignore"):
            bounds = interval(np.nanmax(matrix, axis=1) - np.nanmin(matrix, axis=1), confidence)
    report.add_metric(name, max(values) - min(values), bounds)


def _equalized_odds(report: FairnessReport, grouping: str, confidence: float, values: dict) -> None:
    """max(TPR gap, FPR gap) per replicate: the equalized-odds difference."""
    tpr, fpr = report.metrics.get(f"tpr_gap[{grouping}]"), report.metrics.get(f"fpr_gap[{grouping}]")
    name = f"equalized_odds_gap[{grouping}]"
    parts = [f"{gap}[{grouping}]" for gap in ("tpr_gap", "fpr_gap")]
    left_out = [{**g, "group": f"{g['group']} ({n.split('[')[0]})"} for n in parts for g in report.excluded.get(n, [])]
    if left_out:
        report.excluded[name] = left_out
        with_in = [report.with_excluded.get(n) for n in parts]
        with_in = [w if w is not None else report.metrics.get(n) for w, n in zip(with_in, parts, strict=True)]
        finite = [w for w in with_in if w is not None]
        measured = any(report.with_excluded.get(n) is not None for n in parts)
        report.with_excluded[name] = max(finite) if finite and measured else None
    if tpr is None or fpr is None:
        report.add_metric(name, None, (None, None), f"{INSUFFICIENT}: needs both the TPR and the FPR gap")
        return
    gaps = []
    for metric in ("tpr", "fpr"):
        stack = [v for v in values[metric].values() if v is not None]
        if len(stack) < 2:  # no replicates (bootstrap: 0)
            report.add_metric(name, max(tpr, fpr), (None, None))
            return
        with np.errstate(all="ignore"):
            matrix = np.stack(stack, axis=1)
            gaps.append(np.nanmax(matrix, axis=1) - np.nanmin(matrix, axis=1))
    report.add_metric(name, max(tpr, fpr), interval(np.maximum(*gaps), confidence))

"""The business metric of a stage: per-side rates from the logs and the margin test at this look (ADR 0023).

Split from evaluate.py (which orders the decision) so the statistics stay in one place with stats.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from pipeline.rollout.stats import boundaries, detectable_margin, margin_verdict, needed_samples
from pipeline.spec.schema import EvaluationRollback

MIN_EVIDENCE = 30  # challenger requests (and per-side outcomes) below which a check is "not measured yet"
# The two-proportion z-test's normal approximation needs about 5 expected events and non-events per
# side (at the pooled rate); below that a 0-click day on a 3% metric reads as "significant" by chance.
MIN_EXPECTED_EVENTS = 5.0


def metric_by_side(answered: pd.DataFrame, outcomes: pd.DataFrame, metric: str) -> dict[str, tuple[int, float]]:
    """(requests answered, requests with a positive outcome) per side; a request without an outcome row counts as 0."""
    wanted = outcomes[outcomes["outcome"] == metric] if not outcomes.empty else outcomes
    hit = wanted.loc[wanted["value"] > 0, "request_id"] if not wanted.empty else pd.Series([], dtype=object)
    hit = hit.astype(object).unique()
    out: dict[str, tuple[int, float]] = {}
    for side in ("champion", "challenger"):
        ids = answered.loc[answered["side"] == side, "request_id"].drop_duplicates()
        # object dtype: a hashed isin (pandas' Arrow-string isin walks the values in Python, ~10x slower)
        out[side] = (len(ids), float(ids.astype(object).isin(hit).sum()))
    return out


def metric_check(
    served: pd.DataFrame,
    outcomes: pd.DataFrame,
    evaluation: EvaluationRollback,
    comparable: bool,
    t: float,
    sides: dict[str, Any],
    add: Callable[[str, bool | None, float | None, float | None, str], None],
) -> dict[str, Any]:
    """The declared business metric per side and the margin test at this look (stats.py, ADR 0023).

    inferior (evidence of a drop beyond max_relative_drop) -> failed; non-inferior (evidence the challenger
    is above (1-δ)·champion) -> passed; inconclusive -> not yet, with the sample it would need.
    """
    name = evaluation.metric
    result: dict[str, Any] = {"name": name, "comparable": comparable}
    if served.empty:
        return result
    answered = served[served["status"] == "ok"]
    counts = metric_by_side(answered, outcomes, name)
    for side, (n, s) in counts.items():
        sides[side].metric_n, sides[side].metric_successes = n, s
        sides[side].metric = s / n if n else None
    if not comparable:
        return result
    (n1, s1), (n2, s2) = counts["champion"], counts["challenger"]
    margin = evaluation.max_relative_drop
    if min(n1, n2) < MIN_EVIDENCE or s1 + s2 == 0:
        add(name, None, None, -margin, f"{n2} challenger / {n1} champion requests with outcomes")
        return result
    pooled = (s1 + s2) / (n1 + n2)
    expected = min(n1, n2) * min(pooled, 1 - pooled)
    if expected < MIN_EXPECTED_EVENTS:
        detail = (
            f"{s2}/{n2} challenger vs {s1}/{n1} champion: {expected:.1f} expected events on the smaller side "
            f"(a two-proportion test needs {MIN_EXPECTED_EVENTS:g})"
        )
        add(name, None, None, -margin, detail)
        return result
    rate1, rate2 = s1 / n1, s2 / n2
    change = rate2 / rate1 - 1 if rate1 > 0 else math.inf
    test = margin_verdict(s1, n1, s2, n2, margin, evaluation.significance, t, evaluation.sequential)
    result.update(champion=rate1, challenger=rate2, relative_change=change, **test)
    head = (
        f"{name} {rate2:.4f} vs {rate1:.4f} ({change:+.1%}); margin -{margin:.0%}: z={test['z']:.2f}, "
        f"rollback at z <= -{test['z_rollback']:.2f}, advance at z >= {test['z_advance']:.2f} "
        f"(t={t:.2f}, {evaluation.sequential}, alpha {evaluation.significance:g} each)"
    )
    if test["verdict"] == "inferior":
        add(name, False, change, -margin, f"{head}: a drop beyond the margin, one-sided p={test['p_value']:.4g}")
    elif test["verdict"] == "non_inferior":
        add(name, True, change, -margin, f"{head}: non-inferior, one-sided p={test['p_noninferior']:.4g}")
    else:
        share = n2 / (n1 + n2)
        z_final = _final_z(evaluation)
        result.update(
            needed_samples=needed_samples(rate1, share, margin, z_final),
            detectable_margin=detectable_margin(rate1, n1, n2, z_final),
        )
        add(name, None, change, -margin, f"{head}: inconclusive; {_power_note(result, n1 + n2, margin)}")
    return result


def _final_z(evaluation: EvaluationRollback) -> float:
    """The advance boundary at the end of the stage's duration (t = 1)."""
    return boundaries(1.0, evaluation.significance, evaluation.sequential)[1]


def _power_note(result: dict[str, Any], n: int, margin: float) -> str:
    """What sample would decide: the request count for 80% power at this margin, and this sample's margin."""
    need, mde = result["needed_samples"], result["detectable_margin"]
    if not math.isfinite(need):
        return "a margin of 0 can only be shown as superiority (set max_relative_drop > 0)"
    return (
        f"showing non-inferiority at -{margin:.0%} with 80% power (challenger equal to the champion) needs about "
        f"{math.ceil(need):,} requests with outcomes in the stage's duration ({need / n:.1f}x the {n:,} so far); "
        f"this sample shows at most a -{mde:.1%} margin"
    )

"""The stage metric's statistics: a margin test on the rate ratio and boundaries that hold over any looks.

Why (ADR 0023): "no significant drop" is absence of evidence, so an underpowered stage advanced a bad
challenger, and testing at a fixed alpha at every hourly look inflated false rollbacks. Both decisions
now test the relative margin δ (`max_relative_drop`) on R = challenger rate / champion rate with one
statistic: Farrington-Manning's score z for p2 - (1-δ)·p1 (variance at the restricted MLE under
p2 = (1-δ)·p1). Rollback needs z below -b_rollback(t) (evidence of a drop beyond the margin); advance
needs z above b_advance(t) (evidence of non-inferiority); in between the stage is inconclusive.

Boundaries (`obrien_fleming`) need no memory of earlier looks: with information time t (stage age /
duration) the score process B(t) = z·√t is a Brownian motion under H0, and
- rollback: B >= c_r for t <= 1 (O'Brien-Fleming shape, z >= c_r/√t), then B >= c_r·t (z >= c_r·√t);
  P(ever) <= 2Φ(-c_r) (reflection) + Φ(-c_r) (a line's crossing from below it) = 3Φ(-c_r) := α;
- advance (only tested from t = 1, when the stage may advance): B >= c_a·t, P(ever) = 2Φ(-c_a) := α.
Any number of looks at any times is a subset of continuous monitoring, so hourly (or more often) looks,
and looks past the stage's duration while it holds, keep each decision's error at or below α.
`none` is the fixed-level test at every look (z_{1-α}): valid only for a single look.
"""

from __future__ import annotations

import math
from typing import Any

from scipy import stats

SEQUENTIAL_RULES = ("obrien_fleming", "none")
POWER = 0.80  # the power the "needed sample" line plans for


def two_proportion_test(s1: float, n1: int, s2: float, n2: int) -> tuple[float, float]:
    """(z, one-sided p) for H1: rate 2 (challenger) < rate 1 (champion); pooled standard error (no margin)."""
    p1, p2 = s1 / n1, s2 / n2
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0 if p2 >= p1 else 0.0
    z = (p2 - p1) / se
    return z, float(stats.norm.cdf(z))


def restricted_rates(s1: float, n1: int, s2: float, n2: int, ratio: float) -> tuple[float, float]:
    """Maximum-likelihood (p1, p2) under p2 = ratio·p1: the smaller root of R·N·p1² - (R(n2+s1)+n1+s2)·p1 + S = 0."""
    if ratio <= 0:  # a margin of 100%: H0 is p2 = 0, p1 free
        return s1 / n1, 0.0
    total, events = n1 + n2, s1 + s2
    a = ratio * total
    b = -(ratio * (n2 + s1) + n1 + s2)
    disc = max(b * b - 4 * a * events, 0.0)
    p1 = (-b - math.sqrt(disc)) / (2 * a)
    p1 = min(max(p1, 0.0), 1.0, 1.0 / ratio)
    return p1, ratio * p1


def ratio_score_test(s1: float, n1: int, s2: float, n2: int, ratio: float) -> float:
    """Farrington-Manning score z for H0: p2 = ratio·p1 (positive: the challenger is above ratio·champion)."""
    q1, q2 = restricted_rates(s1, n1, s2, n2, ratio)
    var = q2 * (1 - q2) / n2 + ratio**2 * q1 * (1 - q1) / n1
    diff = s2 / n2 - ratio * s1 / n1
    if var <= 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / math.sqrt(var)


def boundaries(t: float, alpha: float, rule: str = "obrien_fleming") -> tuple[float, float]:
    """(rollback, advance) z boundaries at information time t (see the module docstring); inf: not tested."""
    if rule == "none":
        z = float(stats.norm.isf(alpha))
        return z, z
    if rule != "obrien_fleming":
        raise ValueError(f"unknown sequential rule {rule!r} (one of {', '.join(SEQUENTIAL_RULES)})")
    if t <= 0:
        return math.inf, math.inf
    c_r, c_a = float(stats.norm.isf(alpha / 3)), float(stats.norm.isf(alpha / 2))
    rollback = c_r / math.sqrt(t) if t <= 1 else c_r * math.sqrt(t)
    advance = math.inf if t < 1 else c_a * math.sqrt(t)
    return rollback, advance


def needed_samples(rate: float, share: float, margin: float, z_advance: float, power: float = POWER) -> float:
    """Requests with outcomes (both sides) a stage needs in its duration to show non-inferiority at `power`
    if the challenger equals the champion's `rate`; `share`: the challenger's part of them."""
    if margin <= 0 or not 0 < share < 1 or not 0 < rate < 1:
        return math.inf
    ratio = 1 - margin
    var = rate * (1 - rate) * (1 / share + ratio**2 / (1 - share))
    return (z_advance + float(stats.norm.isf(1 - power))) ** 2 * var / (rate * margin) ** 2


def detectable_margin(rate: float, n1: int, n2: int, z_advance: float, power: float = POWER) -> float:
    """The smallest relative margin these samples show non-inferiority for at `power` (equal rates)."""
    if not 0 < rate < 1 or min(n1, n2) <= 0:
        return math.inf
    se = math.sqrt(rate * (1 - rate) * (1 / n1 + 1 / n2))
    return (z_advance + float(stats.norm.isf(1 - power))) * se / rate


def margin_verdict(
    s1: float, n1: int, s2: float, n2: int, margin: float, alpha: float, t: float, rule: str
) -> dict[str, Any]:
    """The margin test at one look: z, both one-sided p-values, the boundaries and the verdict."""
    ratio = 1 - margin
    z = ratio_score_test(s1, n1, s2, n2, ratio)
    z_rollback, z_advance = boundaries(t, alpha, rule)
    if z <= -z_rollback:
        verdict = "inferior"
    elif z >= z_advance:
        verdict = "non_inferior"
    else:
        verdict = "inconclusive"
    return {
        "margin": margin,
        "ratio_bound": ratio,
        "z": z,
        "p_value": float(stats.norm.cdf(z)),  # H1: challenger below (1-δ)·champion (the rollback direction)
        "p_noninferior": float(stats.norm.sf(z)),  # H1: challenger above (1-δ)·champion (the advance direction)
        "information_time": t,
        "sequential": rule,
        "z_rollback": z_rollback,
        "z_advance": z_advance,
        "alpha_rollback": float(stats.norm.sf(z_rollback)),  # this look's nominal one-sided levels
        "alpha_advance": float(stats.norm.sf(z_advance)),
        "verdict": verdict,
    }

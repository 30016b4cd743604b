"""A/B analysis of a randomized experiment: treatment arm vs held-out arm.

Difference in means with a Welch (unpooled) standard error, a normal interval and
two-sided p-value (the arms are thousands of rows), and the minimum detectable effect:
the smallest true difference this sample size detects with the declared power at the
declared significance, (z_{1-alpha/2} + z_{power}) x SE.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import norm


@dataclass(frozen=True)
class ABResult:
    effect: float | None
    low: float | None
    high: float | None
    p_value: float | None
    mde: float | None
    n_treatment: int
    n_holdout: int
    mean_treatment: float | None
    mean_holdout: float | None
    alpha: float
    power: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ab_test(treatment: np.ndarray, holdout: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> ABResult:
    """Effect = mean(treatment) - mean(holdout); everything None when an arm has under 2 rows."""
    a = np.asarray(treatment, dtype=np.float64)
    b = np.asarray(holdout, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return ABResult(None, None, None, None, None, len(a), len(b), _mean(a), _mean(b), alpha, power)
    effect = float(a.mean() - b.mean())
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    z = norm.ppf(1 - alpha / 2)
    p_value = (0.0 if effect != 0 else 1.0) if se == 0 else float(2 * norm.sf(abs(effect) / se))
    mde = float((z + norm.ppf(power)) * se)
    return ABResult(
        effect, effect - z * se, effect + z * se, p_value, mde, len(a), len(b), _mean(a), _mean(b), alpha, power
    )


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None

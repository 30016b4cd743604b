"""Name a suspected unit change: the current/reference ratio of robust statistics sits on a unit factor.

Range checks miss unit bugs (12 minutes read as 12 seconds is in range), and PSI only says
"something moved". When the median and the mean both moved by ~60x (or 1000x, 1/3600x...)
the likeliest story is a unit or scale change, and naming the factor tells the on-call
engineer which conversion to look for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pipeline.contracts.profile import NumericProfile

FACTORS: dict[float, str] = {
    60.0: "seconds<->minutes or minutes<->hours",
    3600.0: "seconds<->hours",
    24.0: "hours<->days",
    7.0: "days<->weeks",
    1000.0: "milli<->base units (ms<->s, g<->kg)",
    100.0: "percent<->fraction or cents<->dollars",
    1024.0: "bytes<->KiB",
}
TOLERANCE = 0.15
SAMPLE = 200_000


@dataclass
class UnitChange:
    feature: str
    factor: str  # "x60", "x1/60"
    meaning: str
    median_ratio: float
    mean_ratio: float

    def to_dict(self) -> dict:
        return asdict(self)


def suspected_unit_change(feature: str, ref: NumericProfile, values: np.ndarray) -> UnitChange | None:
    """The factor both the median and the mean ratios match within TOLERANCE, or None.

    A strided sample keeps the median cheap on 10M rows (~0.1 s per column otherwise).
    """
    sample = values[:: max(1, len(values) // SAMPLE)]
    sample = sample[np.isfinite(sample)]
    if not sample.size or ref.median == 0 or ref.mean == 0:
        return None
    median_ratio = float(np.median(sample)) / ref.median
    mean_ratio = float(np.mean(sample)) / ref.mean
    if median_ratio <= 0 or mean_ratio <= 0:
        return None
    for base, meaning in FACTORS.items():
        for factor, label in ((base, f"x{base:g}"), (1 / base, f"x1/{base:g}")):
            if abs(median_ratio / factor - 1) <= TOLERANCE and abs(mean_ratio / factor - 1) <= TOLERANCE:
                return UnitChange(feature, label, meaning, median_ratio, mean_ratio)
    return None

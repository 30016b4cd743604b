"""Segment diagnosis: is a shift uniform across segments (pipeline-bug-like) or concentrated in some?

Statistic: PSI of the feature within each segment, current segment vs the same segment of
the reference (segments differ at baseline, e.g. premium users stream more, so comparing
a segment with the overall reference would invent shifts). Then:

- uniform (pipeline-bug-like): every segment is at WARNING or worse, and the smallest
  segment PSI is at least UNIFORM_RATIO of the largest: a bug in shared code moves everyone;
- segment-correlated (product-change-like): some segments are shifted and others are below
  WARNING: something happened to those segments (a launch, a price change for a tier);
- mixed: every segment moved, but unevenly (min/max below UNIFORM_RATIO).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import pandas as pd

from pipeline.monitoring.drift import SHIFTED, Thresholds, feature_drift
from pipeline.monitoring.reference import MIN_SEGMENT_ROWS, MonitorReference

UNIFORM_RATIO = 1 / 3
STATISTIC = (
    "per-segment PSI (current segment vs the same segment of the reference); uniform when every segment is "
    f"at WARNING or worse and min/max segment PSI >= {UNIFORM_RATIO:.2f}; segment-correlated when some "
    "segments are shifted and others below WARNING"
)


@dataclass
class SegmentDiagnosis:
    feature: str
    column: str
    pattern: str  # uniform | segment-correlated | mixed | insufficient_data
    likely: str
    shifted_segments: list[str]
    stable_segments: list[str]
    min_max_ratio: float | None
    per_segment: dict[str, dict] = field(default_factory=dict)  # segment -> {psi, level, rows}
    statistic: str = STATISTIC

    def to_dict(self) -> dict:
        return asdict(self)


def diagnose(
    reference: MonitorReference, frame: pd.DataFrame, features: Iterable[str], thresholds: Thresholds
) -> list[SegmentDiagnosis]:
    """One diagnosis per feature (those present in every segment's reference), per-segment PSI in one pass."""
    column = reference.segment_column
    if not column or column not in frame.columns or not reference.segments:
        return []
    features = list(features)
    per_feature: dict[str, dict[str, dict]] = {f: {} for f in features}
    keys = frame[column].astype("string")
    for value, part in frame.groupby(keys, sort=True, observed=True):
        profile = reference.segments.get(str(value))
        if profile is None or len(part) < MIN_SEGMENT_ROWS:
            continue
        drifts = feature_drift(profile, part, features, thresholds, threads=1)
        for name, d in drifts.items():
            if d.psi is not None:
                per_feature[name][str(value)] = {"psi": d.psi, "level": d.level, "rows": len(part)}
    return [_verdict(name, column, per_feature[name], thresholds) for name in features]


def _verdict(feature: str, column: str, segments: dict[str, dict], thresholds: Thresholds) -> SegmentDiagnosis:
    if len(segments) < 2:
        return SegmentDiagnosis(
            feature, column, "insufficient_data", "too few comparable segments to tell", [], [], None, segments
        )
    shifted = sorted((s for s, v in segments.items() if v["level"] in SHIFTED), key=lambda s: -segments[s]["psi"])
    stable = sorted(s for s in segments if s not in shifted)
    psis = [v["psi"] for v in segments.values()]
    ratio = min(psis) / max(psis) if max(psis) > 0 else 1.0
    if not shifted:
        pattern, likely = "none", "no segment shifted on its own"
    elif not stable and ratio >= UNIFORM_RATIO:
        pattern = "uniform"
        likely = f"pipeline-bug-like: every {column} shifted alike (min/max PSI {ratio:.2f})"
    elif stable:
        pattern = "segment-correlated"
        psis_text = ", ".join(f"{segments[s]['psi']:.2f}" for s in shifted)
        likely = (
            f"product-change-like: {column} {', '.join(shifted)} shifted (PSI {psis_text}), "
            f"{', '.join(stable)} did not (PSI < {thresholds.warning})"
        )
    else:
        pattern = "mixed"
        likely = f"every {column} moved, most in {shifted[0]} (min/max PSI {ratio:.2f})"
    return SegmentDiagnosis(feature, column, pattern, likely, shifted, stable, ratio, segments)

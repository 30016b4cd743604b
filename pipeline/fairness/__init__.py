"""Fairness: per-group metrics with sample sizes and bootstrap intervals, and the gaps between groups.

Groups below a declared minimum size are reported as "insufficient data": they stay in
the report, never enter a gap, and a gate on a metric they leave undefined says so
instead of passing or failing on noise (docs/adr/0015-fairness-and-causal.md).
"""

from pipeline.fairness.classification import classification_fairness
from pipeline.fairness.recommendation import recommendation_fairness
from pipeline.fairness.result import INSUFFICIENT, FairnessReport, GroupMetric
from pipeline.fairness.stage import stage_metric

__all__ = [
    "INSUFFICIENT",
    "FairnessReport",
    "GroupMetric",
    "classification_fairness",
    "recommendation_fairness",
    "stage_metric",
]

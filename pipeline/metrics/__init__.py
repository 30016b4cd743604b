"""Evaluation metrics, named as in `pipeline.spec.catalog`."""

from pipeline.metrics.classification import (
    CLASSIFICATION_METRICS,
    calibration_table,
    classification_metrics,
    lift_by_decile,
)

__all__ = ["CLASSIFICATION_METRICS", "calibration_table", "classification_metrics", "lift_by_decile"]

"""Errors of the data layer.

Each carries a one-sentence message meant for the person who wrote the spec, so the
CLI can print it as is instead of a traceback.
"""

from __future__ import annotations

from pipeline.spec.expressions import ExpressionError


class DataSourceError(Exception):
    """A dataset could not be loaded: missing file, unknown format, corrupt file, unknown generator."""


# ExpressionError lives with its grammar in pipeline.spec
__all__ = ["DataSourceError", "ExpressionError", "TrainingDataError"]


class TrainingDataError(ValueError):
    """The data cannot train this spec's model (one class only, too few rows, contract failed)."""

"""Errors raised by tabular models.

They subclass ValueError so that callers that already treat bad input as a value error
(the CLI, the serving layer) report them without special cases.
"""

from __future__ import annotations


class ModelError(ValueError):
    """Base class for model errors."""


class FeatureMismatchError(ModelError):
    """The input's feature names are not the model's: missing or unexpected names."""

    def __init__(self, missing: list[str], extra: list[str]) -> None:
        self.missing = missing
        self.extra = extra
        parts = []
        if missing:
            parts.append(f"missing feature(s) {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected feature(s) {', '.join(extra)}")
        super().__init__("input does not match the model's features: " + "; ".join(parts) + ".")


class FeatureTypeError(ModelError):
    """A feature holds values of the wrong type, e.g. text in a numeric feature."""


class ModelFormatError(ModelError):
    """A saved model directory is incomplete, of an unknown family or of an unsupported format version."""

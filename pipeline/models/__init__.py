"""Tabular models (LightGBM, logistic) that take features by name, save without pickle, and explain themselves."""

from pipeline.models.base import TabularModel
from pipeline.models.errors import FeatureMismatchError, FeatureTypeError, ModelError, ModelFormatError
from pipeline.models.lightgbm_model import LightGBMTabularModel
from pipeline.models.logistic_model import LogisticTabularModel
from pipeline.models.registry import build_model, load_model

__all__ = [
    "FeatureMismatchError",
    "FeatureTypeError",
    "LightGBMTabularModel",
    "LogisticTabularModel",
    "ModelError",
    "ModelFormatError",
    "TabularModel",
    "build_model",
    "load_model",
]

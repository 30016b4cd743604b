"""From a spec's model section to a model object, and from a saved directory back to one.

Dispatch lives in one table so that adding a family means one entry here plus its module.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.models.base import TabularModel, read_manifest
from pipeline.models.errors import ModelFormatError
from pipeline.models.lightgbm_model import LightGBMTabularModel
from pipeline.models.logistic_model import LogisticTabularModel
from pipeline.spec.schema import LightGBMModel, LogisticModel

FAMILIES: dict[str, type[TabularModel]] = {
    LightGBMTabularModel.family: LightGBMTabularModel,
    LogisticTabularModel.family: LogisticTabularModel,
}


def build_model(model_spec: LightGBMModel | LogisticModel, seed: int = 0) -> TabularModel:
    """An unfitted model for a spec's `model` (or a `candidates` entry)."""
    family = getattr(model_spec, "family", None)
    if family == "lightgbm":
        return LightGBMTabularModel(list(model_spec.features), model_spec.params, seed=seed)
    if family == "logistic":
        return LogisticTabularModel(list(model_spec.features), model_spec.params, seed=seed)
    raise ValueError(f"model family {family!r} is not a tabular model; tabular families: {', '.join(FAMILIES)}.")


def load_model(directory: Path) -> TabularModel:
    """Load whichever family model.json in `directory` names."""
    manifest = read_manifest(Path(directory))
    family = manifest["family"]
    if family not in FAMILIES:
        raise ModelFormatError(f"{directory} holds an unknown model family {family!r}; known: {', '.join(FAMILIES)}.")
    return FAMILIES[family].load(Path(directory))

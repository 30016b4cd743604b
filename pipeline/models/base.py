"""The interface every tabular model implements, and the parts they share.

Input checking, categorical encoding and the saved-directory layout live here so that a
LightGBM model and a logistic model agree on them: a serving path can swap one for the
other without changing how it passes features or reads a bundle.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from pipeline.models.errors import ModelError, ModelFormatError
from pipeline.models.frame import FeatureKinds, FrameLike, as_frame, categorical_values, learn_kinds, numeric_values

FORMAT_VERSION = 1
MANIFEST = "model.json"


class TabularModel(ABC):
    """A binary classifier over named features; log-odds = expected_value + contributions.sum(axis=1)."""

    family: ClassVar[str]

    def __init__(self, features: list[str]) -> None:
        if not features:
            raise ModelError("a model needs at least one feature.")
        duplicated = sorted({f for f in features if features.count(f) > 1})
        if duplicated:
            raise ModelError(f"model features are listed twice: {', '.join(duplicated)}.")
        self.features: list[str] = list(features)
        self.kinds: FeatureKinds | None = None
        self.last_unseen_counts: dict[str, int] = {}

    # ------------------------------------------------------------------ public API

    @property
    def categorical_levels(self) -> dict[str, list[str]]:
        """Category lists learned at fit time, for categorical features only."""
        return {name: levels for name, levels in self._kinds().items() if levels is not None}

    def fit(self, train: FrameLike, y: np.ndarray, valid: tuple[FrameLike, np.ndarray] | None = None) -> Self:
        """Learn from `train` (exactly the model's features); `valid` drives early stopping where supported."""
        raw = as_frame(train, self.features)
        labels = _labels(y, len(raw), "training")
        if len(np.unique(labels)) < 2:
            raise ModelError("training labels hold a single class; a classifier needs both.")
        empty = [name for name in self.features if not raw[name].notna().any()]
        if empty:
            raise ModelError(
                f"feature(s) {empty} are null in every training row: nothing to learn from; "
                "fix the source or drop them from model.features."
            )
        self.kinds = learn_kinds(raw, self.features)
        encoded = self._encode(raw)
        valid_set = None
        if valid is not None:
            valid_frame = self.prepare(valid[0])
            valid_set = (valid_frame, _labels(valid[1], len(valid_frame), "validation"))
        self._fit(encoded, labels, valid_set)
        return self

    def prepare(self, frame: FrameLike) -> pd.DataFrame:
        """The checked, encoded feature frame (float64 numerics, fit-time Categoricals); counts unseen values."""
        return self._encode(as_frame(frame, self.features))

    def predict_proba(self, frame: FrameLike) -> np.ndarray:
        """P(positive) per row, shape (n,)."""
        return self._predict_proba(self.prepare(frame))

    def contributions(self, frame: FrameLike) -> np.ndarray:
        """Per-feature contributions to the log-odds, shape (n, len(features)), in feature order."""
        return self._contributions(self.prepare(frame))

    @property
    @abstractmethod
    def expected_value(self) -> float:
        """The log-odds a row gets before any feature contributes (the bias term)."""

    def save(self, directory: Path) -> dict[str, str]:
        """Write the model's files and model.json; returns {file name: sha256 hex} for every file written."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = self._save_files(directory)
        manifest = {
            "format_version": FORMAT_VERSION,
            "family": self.family,
            "features": self.features,
            "categorical_levels": self.categorical_levels,
            "files": files,
        }
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return {name: sha256_file(directory / name) for name in [*files, MANIFEST]}

    @classmethod
    def load(cls, directory: Path) -> TabularModel:
        """Read a directory written by save(); no pickle, only JSON and the family's own text format."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        if manifest["family"] != cls.family:
            raise ModelFormatError(f"{directory} holds a {manifest['family']!r} model, not {cls.family!r}.")
        model = cls._load_files(directory, manifest)
        levels = manifest.get("categorical_levels", {})
        model.kinds = {name: levels.get(name) for name in model.features}
        return model

    # ------------------------------------------------------------------ for subclasses

    @abstractmethod
    def _fit(self, x: pd.DataFrame, y: np.ndarray, valid: tuple[pd.DataFrame, np.ndarray] | None) -> None: ...

    @abstractmethod
    def _predict_proba(self, x: pd.DataFrame) -> np.ndarray: ...

    @abstractmethod
    def _contributions(self, x: pd.DataFrame) -> np.ndarray: ...

    @abstractmethod
    def _save_files(self, directory: Path) -> list[str]:
        """Write family-specific files; return their names relative to `directory`."""

    @classmethod
    @abstractmethod
    def _load_files(cls, directory: Path, manifest: dict[str, Any]) -> TabularModel: ...

    def _kinds(self) -> FeatureKinds:
        if self.kinds is None:
            raise ModelError(f"the {self.family} model is not fitted yet: call fit() or load a saved one.")
        return self.kinds

    def _encode(self, raw: pd.DataFrame) -> pd.DataFrame:
        kinds = self._kinds()
        columns: dict[str, Any] = {}
        unseen: dict[str, int] = {}
        for name in self.features:
            levels = kinds[name]
            if levels is None:
                columns[name] = numeric_values(raw[name], name)
            else:
                columns[name], unseen[name] = categorical_values(raw[name], levels, name)
        self.last_unseen_counts = unseen
        return pd.DataFrame(columns, index=pd.RangeIndex(len(raw)))


def read_manifest(directory: Path) -> dict[str, Any]:
    """model.json of a saved model, checked for the keys and format version this code understands."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ModelFormatError(f"{directory} is not a saved model: {MANIFEST} is missing.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path} is not valid JSON ({exc}).") from None
    missing = [key for key in ("format_version", "family", "features", "files") if key not in manifest]
    if missing:
        raise ModelFormatError(f"{path} lacks {', '.join(missing)}.")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ModelFormatError(
            f"{path} has format version {manifest['format_version']}; this code reads version {FORMAT_VERSION}."
        )
    return manifest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ChecksumError(ModelFormatError):
    """A saved file's sha256 differs from the one recorded when it was written: never load it."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(f"{path}: sha256 is {actual}, but {expected} was recorded at save time; refusing to load.")


def check_sha256(path: Path, expected: str | None) -> None:
    """Every model-file load goes through here: missing or altered files are refused before parsing."""
    if not path.is_file():
        raise ModelFormatError(f"{path} is missing.")
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(path, str(expected), actual)


def _labels(y: Any, n: int, what: str) -> np.ndarray:
    """0/1 labels as float64; anything else is refused rather than guessed."""
    labels = np.asarray(y)
    if labels.ndim != 1 or len(labels) != n:
        raise ModelError(f"{what} labels have shape {labels.shape}; expected ({n},) to match the rows.")
    if labels.dtype == bool:
        return labels.astype(np.float64)
    try:
        values = labels.astype(np.float64)
    except (TypeError, ValueError):
        raise ModelError(f"{what} labels must be 0/1 numbers, got dtype {labels.dtype}.") from None
    if not np.isin(values, (0.0, 1.0)).all():
        raise ModelError(f"{what} labels must be 0 or 1; found {sorted(set(np.unique(values)) - {0.0, 1.0})[:5]}.")
    return values

"""Learning-to-rank over a request's retrieved candidates, with features taken by name.

A ranker sees groups: one query (a user's request) and its candidates (~500 items from
retrieval), each row carrying the features of `pipeline.recsys.ranking_features`. Labels
are graded relevance (0 = not relevant, 1 = clicked, higher = stronger), and what counts
is the order inside a group, never scores across groups, so both families optimise a
within-group objective:

- `lightgbm_ranker`: LightGBM lambdarank (NDCG-weighted pairwise gradients), early
  stopping on NDCG@K of a validation group set; saved in LightGBM's text format.
- `mlp_ranker`: a torch MLP over standardised numerics and embedded categoricals,
  trained with a listwise softmax (default), pairwise logistic or pointwise BCE loss;
  saved as a state_dict (loaded with weights_only=True) plus JSON.

Both write `model.json` with the features, the fit-time categories and the sha256 of
every data file, and `load` refuses a file whose hash differs: a tampered or truncated
model is never scored with. Nothing is pickled. Input frames must hold exactly the
model's features: a missing or unexpected name is an error that names it.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import lightgbm as lgb
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import check_sha256, sha256_file
from pipeline.models.errors import ModelError, ModelFormatError
from pipeline.models.frame import FeatureKinds, FrameLike, as_frame, categorical_values, learn_kinds, numeric_values
from pipeline.spec.schema import RankerSpec

FORMAT_VERSION = 1
MANIFEST = "model.json"
BOOSTER_FILE = "booster.txt"
WEIGHTS_FILE = "weights.pt"

Loss = Literal["listwise", "pairwise", "pointwise"]


class RankerError(ModelError):
    """Bad ranker input or parameters (a ValueError, like every model error)."""


@dataclass(frozen=True, eq=False)  # holds arrays
class RankingSet:
    """A frame of candidate rows with the sizes of its consecutive groups and one label per row."""

    frame: pd.DataFrame
    group_sizes: np.ndarray
    labels: np.ndarray


# ---------------------------------------------------------------- parameters


class _Params:
    """Parameters from a spec's free-form `ranker.params`: unknown keys are errors, with a suggestion."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> Self:
        known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        values = dict(values or {})
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise RankerError(f"unknown ranker param {key!r}{hint}; known: {', '.join(known)}.")
        return cls(**values)


@dataclass(frozen=True)
class LightGBMRankerParams(_Params):
    """lambdarank knobs. Defaults are small, heavily regularised trees: with few positives per
    group (1-2 in 100 candidates), 31-leaf trees overfit within ~10 rounds on synthetic StreamRec."""

    learning_rate: float = 0.03
    n_estimators: int = 100
    num_leaves: int = 7
    max_depth: int = -1
    min_child_samples: int = 200
    subsample: float = 1.0
    colsample_bytree: float = 1.0
    reg_alpha: float = 0.0
    reg_lambda: float = 0.0
    early_stopping_rounds: int | None = 30
    eval_at: int = 10
    truncation_level: int | None = None
    threads: int = 2

    def __post_init__(self) -> None:
        _check(0 < self.learning_rate <= 1, "learning_rate must be in (0, 1]")
        _check(self.n_estimators >= 1 and self.num_leaves >= 2 and self.min_child_samples >= 1, "counts must be >= 1")
        _check(0 < self.subsample <= 1 and 0 < self.colsample_bytree <= 1, "fractions must be in (0, 1]")
        _check(self.eval_at >= 1 and self.threads >= 1, "eval_at and threads must be >= 1")


@dataclass(frozen=True)
class MLPRankerParams(_Params):
    """MLP knobs; `groups_per_batch` groups of candidates form one optimisation step.

    The pairwise loss forms every (row, row) pair of a batch: groups_per_batch x size^2 floats
    (32 x 500^2 = 8M per tensor), so lower groups_per_batch for it on large groups.
    """

    hidden: tuple[int, ...] = (64, 32)
    loss: Loss = "listwise"
    epochs: int = 10
    groups_per_batch: int = 32
    learning_rate: float = 0.003
    weight_decay: float = 1e-5
    dropout: float = 0.0
    patience: int = 5
    eval_at: int = 10
    threads: int | None = 2
    device: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        _check(
            self.loss in ("listwise", "pairwise", "pointwise"),
            f"loss must be listwise/pairwise/pointwise, got {self.loss!r}",
        )
        _check(all(h >= 1 for h in self.hidden), "hidden sizes must be >= 1")
        _check(self.epochs >= 1 and self.groups_per_batch >= 1 and self.patience >= 1, "counts must be >= 1")
        _check(self.learning_rate > 0 and self.weight_decay >= 0 and 0 <= self.dropout < 1, "bad optimiser settings")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise RankerError(message + ".")


# ---------------------------------------------------------------- the interface


class Ranker(ABC):
    """Scores candidate rows so that higher means earlier in the group's list."""

    family: ClassVar[str]
    params_type: ClassVar[type[_Params]]

    def __init__(self, features: list[str], params: Mapping[str, Any] | _Params | None = None, seed: int = 0) -> None:
        if not features:
            raise RankerError("a ranker needs at least one feature (ranker.features).")
        duplicated = sorted({f for f in features if features.count(f) > 1})
        if duplicated:
            raise RankerError(f"ranker features are listed twice: {', '.join(duplicated)}.")
        self.features = list(features)
        self.params = params if isinstance(params, self.params_type) else self.params_type.from_mapping(params)  # type: ignore[arg-type]
        self.seed = int(seed)
        self.kinds: FeatureKinds | None = None
        self.best_iteration: int | None = None

    def fit(
        self,
        frame: FrameLike,
        group_sizes: np.ndarray,
        labels: np.ndarray,
        valid: RankingSet | tuple[FrameLike, np.ndarray, np.ndarray] | None = None,
    ) -> Self:
        """Learn from consecutive groups of rows (sizes in `group_sizes`); `valid` drives early stopping."""
        raw = as_frame(frame, self.features)
        sizes = _sizes(group_sizes, len(raw), "training")
        y = _graded(labels, len(raw), "training")
        if not (y > 0).any():
            raise RankerError("no training row has a positive label: nothing to rank for.")
        self.kinds = learn_kinds(raw, self.features)
        encoded = self._encode(raw)
        valid_set = None
        if valid is not None:
            v = valid if isinstance(valid, RankingSet) else RankingSet(*valid)
            v_frame = self.prepare(v.frame)
            valid_set = RankingSet(
                v_frame,
                _sizes(v.group_sizes, len(v_frame), "validation"),
                _graded(v.labels, len(v_frame), "validation"),
            )
        self._fit(encoded, sizes, y, valid_set)
        return self

    def prepare(self, frame: FrameLike) -> pd.DataFrame:
        """Exactly the model's features, checked and encoded (float64 numerics, fit-time categories)."""
        return self._encode(as_frame(frame, self.features))

    def score(self, frame: FrameLike) -> np.ndarray:
        """One float64 score per row; only the order within a group is meaningful."""
        return self._score(self.prepare(frame))

    def save(self, directory: Path) -> dict[str, str]:
        """Write the data file(s) and model.json; returns {file name: sha256} for every file written."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = {name: sha256_file(directory / name) for name in self._save_files(directory)}
        manifest = {
            "format_version": FORMAT_VERSION,
            "family": self.family,
            "features": self.features,
            "categorical_levels": {n: lv for n, lv in self._kinds().items() if lv is not None},
            "params": _jsonable(asdict(self.params)),  # type: ignore[call-overload]
            "seed": self.seed,
            "best_iteration": self.best_iteration,
            "files": files,
            **self._manifest_extra(),
        }
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return {**files, MANIFEST: sha256_file(directory / MANIFEST)}

    @classmethod
    def load(cls, directory: Path, expected: Mapping[str, str] | None = None) -> Ranker:
        """Read a directory written by save(); every recorded sha256 (and `expected`, when given) is checked first."""
        directory = Path(directory)
        manifest = _read_manifest(directory, expected)
        family = manifest["family"]
        target = RANKERS.get(family)
        if target is None or (cls is not Ranker and target is not cls):
            raise ModelFormatError(f"{directory} holds a {family!r} ranker, not {getattr(cls, 'family', 'a known')!r}.")
        model = target(list(manifest["features"]), manifest["params"], manifest["seed"])
        levels = manifest["categorical_levels"]
        model.kinds = {name: levels.get(name) for name in model.features}
        model.best_iteration = manifest["best_iteration"]
        model._load_files(directory, manifest)
        return model

    # ------------------------------------------------------------------ for subclasses

    @abstractmethod
    def _fit(self, x: pd.DataFrame, sizes: np.ndarray, y: np.ndarray, valid: RankingSet | None) -> None: ...

    @abstractmethod
    def _score(self, x: pd.DataFrame) -> np.ndarray: ...

    @abstractmethod
    def _save_files(self, directory: Path) -> list[str]: ...

    @abstractmethod
    def _load_files(self, directory: Path, manifest: dict[str, Any]) -> None: ...

    def _manifest_extra(self) -> dict[str, Any]:
        return {}

    def _kinds(self) -> FeatureKinds:
        if self.kinds is None:
            raise RankerError(f"the {self.family} ranker is not fitted yet: call fit() or load a saved one.")
        return self.kinds

    def _encode(self, raw: pd.DataFrame) -> pd.DataFrame:
        kinds = self._kinds()
        columns: dict[str, Any] = {}
        for name in self.features:
            levels = kinds[name]
            columns[name] = (
                numeric_values(raw[name], name) if levels is None else categorical_values(raw[name], levels, name)[0]
            )
        return pd.DataFrame(columns, index=pd.RangeIndex(len(raw)))


# ---------------------------------------------------------------- LightGBM lambdarank


class LightGBMRanker(Ranker):
    """LightGBM lambdarank; categorical features are native LightGBM categories."""

    family = "lightgbm_ranker"
    params_type = LightGBMRankerParams
    params: LightGBMRankerParams

    def __init__(self, features: list[str], params: Mapping[str, Any] | _Params | None = None, seed: int = 0) -> None:
        super().__init__(features, params, seed)
        self.booster: lgb.Booster | None = None

    def training_params(self, y: np.ndarray) -> dict[str, Any]:
        """The lightgbm.train parameters; label_gain covers every grade present (2^g - 1, as NDCG uses)."""
        p = self.params
        params: dict[str, Any] = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [p.eval_at],
            "label_gain": [float(2**g - 1) for g in range(max(int(y.max()) + 1, 32))],
            "learning_rate": p.learning_rate,
            "num_leaves": p.num_leaves,
            "max_depth": p.max_depth,
            "min_data_in_leaf": p.min_child_samples,
            "feature_fraction": p.colsample_bytree,
            "lambda_l1": p.reg_alpha,
            "lambda_l2": p.reg_lambda,
            "seed": self.seed,
            "num_threads": p.threads,
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }
        if p.truncation_level is not None:
            params["lambdarank_truncation_level"] = p.truncation_level
        if p.subsample < 1:
            params.update(bagging_fraction=p.subsample, bagging_freq=1)
        return params

    def _fit(self, x: pd.DataFrame, sizes: np.ndarray, y: np.ndarray, valid: RankingSet | None) -> None:
        categorical = [n for n, lv in self._kinds().items() if lv is not None]
        train_set = lgb.Dataset(x, label=y, group=sizes, categorical_feature=categorical, free_raw_data=True)
        valid_sets, callbacks = [], []
        if valid is not None:
            valid_sets = [
                lgb.Dataset(
                    valid.frame,
                    valid.labels,
                    group=valid.group_sizes,
                    categorical_feature=categorical,
                    reference=train_set,
                )
            ]
            if self.params.early_stopping_rounds:
                callbacks.append(
                    lgb.early_stopping(self.params.early_stopping_rounds, first_metric_only=True, verbose=False)
                )
        booster = lgb.train(
            self.training_params(y),
            train_set,
            num_boost_round=self.params.n_estimators,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        self.best_iteration = booster.best_iteration or booster.current_iteration()
        # keep only the trees in use, so the fitted and the re-loaded ranker are the same model
        self.booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=self.best_iteration))

    def _score(self, x: pd.DataFrame) -> np.ndarray:
        if self.booster is None:
            raise RankerError("the lightgbm_ranker has no booster: fit() or load() it first.")
        return np.asarray(self.booster.predict(x, num_threads=self.params.threads), dtype=np.float64)

    def _save_files(self, directory: Path) -> list[str]:
        if self.booster is None:
            raise RankerError("the lightgbm_ranker has no booster: fit() it before save().")
        self.booster.save_model(str(directory / BOOSTER_FILE))
        return [BOOSTER_FILE]

    def _load_files(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.booster = lgb.Booster(model_file=str(directory / BOOSTER_FILE))
        if self.booster.feature_name() != self.features:
            raise ModelFormatError(
                f"{directory / BOOSTER_FILE} was trained on {self.booster.feature_name()}, but model.json lists "
                f"{self.features}."
            )


# ---------------------------------------------------------------- torch MLP


class _Net(nn.Module):
    """Embeddings for categoricals (row 0 = missing/unseen) + standardised numerics -> MLP -> one score."""

    def __init__(self, n_numeric: int, cat_sizes: list[int], hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n + 1, _embedding_dim(n)) for n in cat_sizes)
        width = n_numeric + sum(_embedding_dim(n) for n in cat_sizes)
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        parts = [numeric] + [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)


def _embedding_dim(levels: int) -> int:
    return int(min(16, max(2, round(2 * math.sqrt(levels)))))


class MLPRanker(Ranker):
    """A torch MLP ranker; same seed, data and thread count give identical weights."""

    family = "mlp_ranker"
    params_type = MLPRankerParams
    params: MLPRankerParams

    def __init__(self, features: list[str], params: Mapping[str, Any] | _Params | None = None, seed: int = 0) -> None:
        super().__init__(features, params, seed)
        self.device = torch.device(self.params.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net: _Net | None = None
        self.center: dict[str, float] = {}
        self.scale: dict[str, float] = {}
        self.history: list[float] = []  # validation NDCG per epoch (empty without valid)

    @property
    def numeric(self) -> list[str]:
        return [n for n, lv in self._kinds().items() if lv is None]

    @property
    def categorical(self) -> list[str]:
        return [n for n, lv in self._kinds().items() if lv is not None]

    def _tensors(self, x: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        """Numerics: signed log1p (counts and scores are heavy-tailed), standardised, NaN -> 0 (the mean)."""
        numeric = np.zeros((len(x), len(self.numeric)), dtype=np.float32)
        for j, name in enumerate(self.numeric):
            v = _symlog(x[name].to_numpy(dtype=np.float64))
            numeric[:, j] = np.nan_to_num((v - self.center[name]) / self.scale[name], nan=0.0)
        codes = np.zeros((len(x), len(self.categorical)), dtype=np.int64)
        for j, name in enumerate(self.categorical):
            codes[:, j] = x[name].cat.codes.to_numpy(dtype=np.int64) + 1
        return torch.from_numpy(numeric).to(self.device), torch.from_numpy(codes).to(self.device)

    def _fit(self, x: pd.DataFrame, sizes: np.ndarray, y: np.ndarray, valid: RankingSet | None) -> None:
        p = self.params
        for name in self.numeric:
            v = _symlog(x[name].to_numpy(dtype=np.float64))
            finite = v[np.isfinite(v)]
            self.center[name] = float(finite.mean()) if len(finite) else 0.0
            std = float(finite.std()) if len(finite) else 0.0
            self.scale[name] = std if std > 1e-12 else 1.0
        levels = self._kinds()
        with _runtime(self.device, p.threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = _Net(len(self.numeric), [len(levels[n] or []) for n in self.categorical], p.hidden, p.dropout)
            self.net.to(self.device)
            self._train(x, sizes, y, valid)
        self.net.eval()

    def _train(self, x: pd.DataFrame, sizes: np.ndarray, y: np.ndarray, valid: RankingSet | None) -> None:
        p = self.params
        net = self._net()
        numeric, codes = self._tensors(x)
        index, mask = _padded(sizes)
        labels = torch.from_numpy(y.astype(np.float32)).to(self.device)
        index_t = torch.from_numpy(index).to(self.device)
        mask_t = torch.from_numpy(mask).to(self.device)
        keep = np.flatnonzero((np.add.reduceat(y, _starts(sizes)) > 0) if p.loss != "pointwise" else sizes > 0)
        optimiser = torch.optim.AdamW(net.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
        shuffle = torch.Generator(device="cpu").manual_seed(self.seed)
        best, best_state, stale = -math.inf, None, 0
        self.history = []
        for epoch in range(p.epochs):
            net.train()
            order = keep[torch.randperm(len(keep), generator=shuffle).numpy()]
            for start in range(0, len(order), p.groups_per_batch):
                groups = torch.from_numpy(order[start : start + p.groups_per_batch]).to(self.device)
                rows, m = index_t[groups], mask_t[groups]
                flat = rows.clamp(min=0)
                scores = net(numeric[flat.reshape(-1)], codes[flat.reshape(-1)]).reshape(rows.shape)
                loss = _loss(p.loss, scores, labels[flat], m)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            if valid is None:
                continue
            net.eval()
            quality = float(np.mean(ndcg_at_k(self._score(valid.frame), valid.labels, valid.group_sizes, p.eval_at)))
            self.history.append(quality)
            if quality > best:
                best, stale, self.best_iteration = quality, 0, epoch + 1
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= p.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        elif valid is None:
            self.best_iteration = p.epochs

    def _score(self, x: pd.DataFrame) -> np.ndarray:
        net = self._net()
        numeric, codes = self._tensors(x)
        with _runtime(self.device, self.params.threads), torch.no_grad():
            was_training = net.training
            net.eval()
            out = net(numeric, codes).to("cpu", torch.float64).numpy()
            net.train(was_training)
        return out

    def _net(self) -> _Net:
        if self.net is None:
            self._kinds()
            raise RankerError("the mlp_ranker has no network: fit() or load() it first.")
        return self.net

    def _manifest_extra(self) -> dict[str, Any]:
        return {"numeric": {"center": self.center, "scale": self.scale}, "valid_ndcg": self.history}

    def _save_files(self, directory: Path) -> list[str]:
        state = {k: v.detach().to("cpu").contiguous() for k, v in self._net().state_dict().items()}
        torch.save(state, directory / WEIGHTS_FILE)
        return [WEIGHTS_FILE]

    def _load_files(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.center = {k: float(v) for k, v in manifest["numeric"]["center"].items()}
        self.scale = {k: float(v) for k, v in manifest["numeric"]["scale"].items()}
        self.history = list(manifest.get("valid_ndcg", []))
        levels = self._kinds()
        net = _Net(
            len(self.numeric), [len(levels[n] or []) for n in self.categorical], self.params.hidden, self.params.dropout
        )
        state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelFormatError(
                f"{directory / WEIGHTS_FILE} does not fit the architecture in model.json: {exc}"
            ) from None
        self.net = net.to(self.device).eval()


def _symlog(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.log1p(np.abs(v))


def _padded(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(groups, max size) row indices of each group (-1 padding) and the mask of real rows."""
    width = int(sizes.max()) if len(sizes) else 0
    offsets = np.arange(width)[None, :]
    mask = offsets < sizes[:, None]
    index = np.where(mask, _starts(sizes)[:, None] + offsets, -1)
    return index.astype(np.int64), mask


def _starts(sizes: np.ndarray) -> np.ndarray:
    return np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64)


def _loss(kind: Loss, scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Within-group losses on padded (groups, width) tensors; padding never contributes."""
    if kind == "pointwise":
        target = (labels > 0).to(scores.dtype)
        per_row = F.binary_cross_entropy_with_logits(scores, target, reduction="none")
        return (per_row * mask).sum() / mask.sum()
    if kind == "listwise":
        # softmax cross-entropy against the labels normalised per group (ListNet top-1 / sampled softmax)
        logits = scores.masked_fill(~mask, -torch.inf)
        gains = torch.where(mask, labels, torch.zeros_like(labels))
        target = gains / gains.sum(dim=1, keepdim=True).clamp(min=1e-12)
        return -(target * F.log_softmax(logits, dim=1).masked_fill(~mask, 0.0)).sum(dim=1).mean()
    # pairwise: RankNet logistic loss over every (better, worse) pair of a group
    diff = scores[:, :, None] - scores[:, None, :]
    better = (labels[:, :, None] > labels[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    return (F.softplus(-diff) * better).sum() / better.sum().clamp(min=1)


@contextmanager
def _runtime(device: torch.device, threads: int | None) -> Iterator[None]:
    """Pin threads and deterministic kernels for a call, then restore the caller's settings."""
    old_threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        if threads:
            torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(old_threads)


# ---------------------------------------------------------------- metrics, builder, loading


def ndcg_at_k(scores: np.ndarray, labels: np.ndarray, group_sizes: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k per group (gain 2^label - 1), NaN for groups without a positive; ties keep row order.

    Vectorised over padded groups, so it is cheap enough for per-epoch early stopping.
    """
    sizes = np.asarray(group_sizes, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if len(scores) != len(labels) or sizes.sum() != len(scores):
        raise RankerError(f"{len(scores)} scores, {len(labels)} labels and groups summing to {sizes.sum()} must agree.")
    index, mask = _padded(sizes)
    s = np.where(mask, scores[index.clip(min=0)], -np.inf)
    g = np.where(mask, np.exp2(labels[index.clip(min=0)]) - 1.0, 0.0)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    discount = 1.0 / np.log2(np.arange(2, order.shape[1] + 2))
    dcg = (np.take_along_axis(g, order, axis=1) * discount).sum(axis=1)
    ideal = (-np.sort(-g, axis=1)[:, :k] * discount).sum(axis=1)
    return np.divide(dcg, ideal, out=np.full(len(sizes), np.nan), where=ideal > 0)


RANKERS: dict[str, type[Ranker]] = {cls.family: cls for cls in (LightGBMRanker, MLPRanker)}


def build_ranker(spec: RankerSpec, seed: int = 0) -> Ranker:
    """The ranker a spec declares, with its features and params (unknown params are errors)."""
    return RANKERS[spec.family](list(spec.features), spec.params, seed)


def load_ranker(directory: Path, expected: Mapping[str, str] | None = None) -> Ranker:
    """Load whichever ranker family `directory` holds (see Ranker.load)."""
    return Ranker.load(directory, expected)


def _read_manifest(directory: Path, expected: Mapping[str, str] | None) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        raise ModelFormatError(f"{directory} is not a saved ranker: {MANIFEST} is missing.")
    for name, digest in (expected or {}).items():
        check_sha256(directory / name, digest)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path} is not valid JSON ({exc}).") from None
    missing = [k for k in ("format_version", "family", "features", "params", "seed", "files") if k not in manifest]
    if missing:
        raise ModelFormatError(f"{path} lacks {', '.join(missing)}.")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ModelFormatError(
            f"{path} has format version {manifest['format_version']}; this code reads {FORMAT_VERSION}."
        )
    for name, digest in manifest["files"].items():
        check_sha256(directory / name, digest)
    return manifest


def _sizes(group_sizes: Any, n: int, what: str) -> np.ndarray:
    sizes = np.asarray(group_sizes)
    if sizes.ndim != 1 or not np.issubdtype(sizes.dtype, np.integer) or (sizes < 1).any():
        raise RankerError(f"{what} group_sizes must be a 1-D array of positive integers.")
    if int(sizes.sum()) != n:
        raise RankerError(f"{what} group_sizes sum to {int(sizes.sum())} but there are {n} rows.")
    return sizes.astype(np.int64)


def _graded(labels: Any, n: int, what: str) -> np.ndarray:
    """Non-negative integer relevance grades; booleans count as 0/1."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise RankerError(f"{what} labels have shape {y.shape}; expected ({n},).")
    values = y.astype(np.float64) if y.dtype == bool or np.issubdtype(y.dtype, np.number) else None
    if values is None or not np.isfinite(values).all() or (values < 0).any() or (values != np.round(values)).any():
        raise RankerError(f"{what} labels must be non-negative integer grades (0 = not relevant).")
    return values.astype(np.int64)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value

"""Two-tower retrieval model in torch: a user tower and an item tower over ids and named features.

Each tower embeds its id (plus optional categorical/numeric features, taken by name from
the users/items tables) and maps it through an MLP to an L2-normalised vector, so that
retrieval is a maximum-inner-product search (cosine) in a FAISS index of item vectors.

Training sees only positive (user, item) pairs. The other items of a batch serve as
negatives (in-batch softmax), which samples popular items as negatives more often than
rare ones; the logQ correction subtracts log(sampling probability) from each logit so the
model estimates the full softmax instead of learning "popular = bad". A temperature
sharpens the cosine logits. Same seed, same data, same thread count -> identical weights.

Feature values of the known users and of the catalog items are encoded at fit time and
kept as buffers in the state_dict: an embedding is a function of the id alone, so the model
file fully determines the catalog's vectors (what the index fingerprint relies on).

Unknown user ids get a zero vector and `known=False` from `user_embeddings`: a zero query
scores every item 0, so the caller must branch to its cold-start policy (e.g. popularity)
rather than search with it.

Saved as `weights.pt` (a plain state_dict, loaded with `weights_only=True`, never pickle)
and `model.json` (params, feature schema, id maps, dims and the sha256 of weights.pt,
checked at load).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import check_sha256, sha256_file
from pipeline.models.errors import ModelError, ModelFormatError
from pipeline.models.frame import FeatureKinds, categorical_values, learn_kinds, numeric_values

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.pt"
MANIFEST_FILE = "model.json"
EMBED_CHUNK = 65_536

IdValue = int | str


class TwoTowerError(ModelError):
    """Base class for two-tower errors (a ValueError, like every model error)."""


@dataclass(frozen=True)
class TwoTowerParams:
    """Training knobs; mirrors conf/model/two_tower.yaml (pipeline.spec.schema.TwoTowerParams) plus extras."""

    embedding_dim: int = 32
    hidden_dim: int = 64
    epochs: int = 5
    batch_size: int = 512
    learning_rate: float = 0.005
    temperature: float = 0.05
    weight_decay: float = 0.0
    logq_correction: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "embedding_dim": self.embedding_dim >= 2,
            "hidden_dim": self.hidden_dim >= 2,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 2,
            "learning_rate": self.learning_rate > 0,
            "temperature": self.temperature > 0,
            "weight_decay": self.weight_decay >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise TwoTowerError(f"invalid two-tower params: {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}.")

    @classmethod
    def from_spec(cls, params: Any, **overrides: Any) -> TwoTowerParams:
        """From the spec's pydantic TwoTowerParams (or any object/mapping): keys it lacks keep their defaults."""
        source = params if isinstance(params, dict) else (params.model_dump() if hasattr(params, "model_dump") else {})
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in {**source, **overrides}.items() if k in known})


@dataclass
class _SideSchema:
    """One tower's inputs: the id column, its id list (row i+1 <-> ids[i]) and feature kinds."""

    id_col: str
    ids: list[IdValue]
    kinds: FeatureKinds  # feature -> None (numeric) or its category list

    @property
    def categorical(self) -> list[str]:
        return [name for name, levels in self.kinds.items() if levels is not None]

    @property
    def numeric(self) -> list[str]:
        return [name for name, levels in self.kinds.items() if levels is None]

    def to_json(self) -> dict[str, Any]:
        # A list, not a mapping: feature order fixes the buffer columns, and JSON writers may sort keys.
        features = [{"name": name, "levels": levels} for name, levels in self.kinds.items()]
        return {"id_col": self.id_col, "features": features, "ids": self.ids}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _SideSchema:
        kinds = {str(f["name"]): f["levels"] for f in data["features"]}
        return cls(id_col=str(data["id_col"]), ids=list(data["ids"]), kinds=kinds)


class _Tower(nn.Module):
    """id embedding (+ feature embeddings / numerics looked up from buffers by row) -> MLP -> unit vector."""

    def __init__(self, n_ids: int, cat_sizes: list[int], n_numeric: int, embedding_dim: int, hidden_dim: int) -> None:
        super().__init__()
        # Row 0 is the unknown id: padding_idx keeps it at zero and untouched by training.
        self.ids = nn.Embedding(n_ids + 1, embedding_dim, padding_idx=0)
        cat_dim = max(4, embedding_dim // 2)
        self.cats = nn.ModuleList(nn.Embedding(size + 1, cat_dim, padding_idx=0) for size in cat_sizes)
        # Which id embedding each row uses: itself, or 0 for a catalog item never seen in training,
        # whose own row was never trained (it is then embedded from its features alone).
        self.register_buffer("id_rows", torch.arange(n_ids + 1, dtype=torch.long))
        self.register_buffer("cat_codes", torch.zeros(n_ids + 1, len(cat_sizes), dtype=torch.long))
        self.register_buffer("numeric", torch.zeros(n_ids + 1, n_numeric, dtype=torch.float32))
        width = embedding_dim + cat_dim * len(cat_sizes) + n_numeric
        self.mlp = nn.Sequential(nn.Linear(width, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, embedding_dim))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        parts = [self.ids(self.id_rows[rows])]
        parts += [embedding(self.cat_codes[rows, j]) for j, embedding in enumerate(self.cats)]
        if self.numeric.shape[1]:
            parts.append(self.numeric[rows])
        return F.normalize(self.mlp(torch.cat(parts, dim=1)), dim=1)


class TwoTowerModel:
    """Retrieval model: `user_embeddings(ids)` and `item_embeddings()` live in one cosine space."""

    family: ClassVar[str] = "two_tower"

    def __init__(
        self,
        user_features: Sequence[str] = (),
        item_features: Sequence[str] = (),
        params: TwoTowerParams | None = None,
        device: str | torch.device | None = None,
        threads: int | None = 1,
    ) -> None:
        """`threads` pins torch's CPU threads during fit/embedding (None keeps torch's setting).

        One by default: the towers' matrices are small, and on a shared 2-core box two OpenMP
        threads spinning against other jobs made training 8-15x slower than one.
        """
        for side, names in (("user", user_features), ("item", item_features)):
            duplicated = sorted({f for f in names if list(names).count(f) > 1})
            if duplicated:
                raise TwoTowerError(f"{side} features are listed twice: {', '.join(duplicated)}.")
        self.user_features = list(user_features)
        self.item_features = list(item_features)
        self.params = params or TwoTowerParams()
        self.device = torch.device(device) if device is not None else default_device()
        self.threads = threads
        self.user_schema: _SideSchema | None = None
        self.item_schema: _SideSchema | None = None
        self.user_tower: _Tower | None = None
        self.item_tower: _Tower | None = None
        self.history: list[dict[str, float]] = []  # per epoch: mean loss, seconds (and `valid` when validated)
        self.best_epoch: int | None = None  # early stopping: the epoch whose towers were kept
        self._user_rows: dict[IdValue, int] = {}
        self._item_rows: dict[IdValue, int] = {}

    @classmethod
    def from_spec(cls, spec: Any, user_col: str = "user_id", item_col: str = "item_id", **kwargs: Any) -> TwoTowerModel:
        """From the spec's model section: `features` feed the user tower, `item_features` the item tower.

        The id columns may be listed among the features (the seed spec does); they are the
        towers' ids, not extra features, so they are dropped from the feature lists here.
        """
        return cls(
            user_features=[f for f in spec.features if f != user_col],
            item_features=[f for f in spec.item_features if f != item_col],
            params=TwoTowerParams.from_spec(spec.params),
            **kwargs,
        )

    # ------------------------------------------------------------------ training

    def fit(
        self,
        interactions: pd.DataFrame,
        users: pd.DataFrame | None = None,
        items: pd.DataFrame | None = None,
        user_col: str = "user_id",
        item_col: str = "item_id",
        label_col: str | None = None,
        positive: Any = 1,
        validate: Callable[[TwoTowerModel], float] | None = None,
        patience: int | None = None,
    ) -> Self:
        """Learn from positive (user, item) rows of `interactions`.

        With `label_col`, only rows whose label equals `positive` are used. `users` / `items`
        hold the towers' features keyed by id (required when the tower has features); `items`
        also defines the catalog, so items never interacted with are still indexed: they share
        the unknown-id row (zero) and differ only by their features, rather than carrying an
        untrained random id vector into the index. Without `items` the catalog is the items seen.

        What counts as positive is the caller's choice and matters: on synthetic StreamRec,
        clicks alone (~14% of impressions) need ~20 epochs to beat popularity, while every
        impression as a positive learns the (personalised) exposure policy and scores higher.

        `validate` (higher is better, e.g. validation NDCG@10) is called after every epoch; with
        `patience`, training stops once that many epochs pass without a better value and the best
        epoch's towers are kept (`best_epoch`, 1-based); `params.epochs` is then the most it trains.
        """
        for column in (user_col, item_col, *([label_col] if label_col else [])):
            if column not in interactions.columns:
                raise TwoTowerError(f"interactions lack column {column!r}.")
        pairs = interactions if label_col is None else interactions.loc[interactions[label_col] == positive]
        if len(pairs) < 2:
            raise TwoTowerError(f"training needs at least 2 positive interactions, got {len(pairs)}.")
        user_ids = _clean_ids(pairs[user_col], user_col)
        item_ids = _clean_ids(pairs[item_col], item_col)
        user_known = sorted(set(user_ids), key=_id_sort_key)
        if items is not None:
            if item_col not in items.columns:
                raise TwoTowerError(f"items lack the id column {item_col!r}.")
            catalog = _clean_ids(items[item_col], item_col)
            if len(set(catalog)) != len(catalog):
                raise TwoTowerError(f"items hold duplicated {item_col} values; the catalog needs one row per item.")
            missing = sorted(set(item_ids) - set(catalog), key=_id_sort_key)
            if missing:
                raise TwoTowerError(
                    f"{len(missing)} item id(s) in interactions are not in the items table, e.g. {missing[:5]}."
                )
            item_known = catalog
        else:
            item_known = sorted(set(item_ids), key=_id_sort_key)
        user_feats = [f for f in self.user_features if f != user_col]
        item_feats = [f for f in self.item_features if f != item_col]
        user_frame = _side_frame(users, user_col, user_feats, user_known, "users")
        item_frame = _side_frame(items, item_col, item_feats, item_known, "items")
        self.user_schema = _SideSchema(user_col, user_known, learn_kinds(user_frame, user_feats) if user_feats else {})
        self.item_schema = _SideSchema(item_col, item_known, learn_kinds(item_frame, item_feats) if item_feats else {})
        self._index_ids()

        p = self.params
        with self._runtime(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(p.seed)
            self.user_tower = self._build_tower(self.user_schema)
            self.item_tower = self._build_tower(self.item_schema)
            _fill_buffers(self.user_tower, self.user_schema, user_frame)
            _fill_buffers(self.item_tower, self.item_schema, item_frame)
            u = torch.as_tensor(np.array([self._user_rows[i] for i in user_ids]), dtype=torch.long)
            v = torch.as_tensor(np.array([self._item_rows[i] for i in item_ids]), dtype=torch.long)
            warm = torch.zeros(len(item_known) + 1, dtype=torch.bool)
            warm[v] = True
            self.item_tower.id_rows[~warm] = 0
            self.user_tower.to(self.device)
            self.item_tower.to(self.device)
            self._train(u, v, validate, patience)
        return self

    def _train(
        self,
        u: torch.Tensor,
        v: torch.Tensor,
        validate: Callable[[TwoTowerModel], float] | None = None,
        patience: int | None = None,
    ) -> None:
        p = self.params
        assert self.user_tower is not None and self.item_tower is not None
        counts = torch.bincount(v, minlength=len(self._item_rows) + 1).to(torch.float64)
        log_q = torch.log(counts.clamp(min=1.0) / len(v)).to(torch.float32).to(self.device)
        modules = nn.ModuleList([self.user_tower, self.item_tower])
        optimizer = torch.optim.AdamW(modules.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
        shuffle = torch.Generator(device="cpu").manual_seed(p.seed)
        u, v = u.to(self.device), v.to(self.device)
        self.history = []
        self.best_epoch = None
        best: tuple[float, int, dict[str, Any]] | None = None
        modules.train()
        for _ in range(p.epochs):
            start, total, batches = time.perf_counter(), 0.0, 0
            order = torch.randperm(len(u), generator=shuffle).to(self.device)
            for batch in order.split(p.batch_size):
                if len(batch) < 2:  # one row has no in-batch negative: nothing to learn
                    continue
                loss = self._batch_loss(u[batch], v[batch], log_q)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
                batches += 1
            self.history.append({"loss": total / max(batches, 1), "seconds": time.perf_counter() - start})
            if validate is None:
                continue
            value = float(validate(self))  # embeds with the towers in eval mode
            modules.train()
            self.history[-1]["valid"] = value
            if best is None or value > best[0]:
                best = (value, len(self.history), copy.deepcopy(modules.state_dict()))
            elif patience is not None and len(self.history) - best[1] >= patience:
                break
        if best is not None:
            modules.load_state_dict(best[2])
            self.best_epoch = best[1]
        modules.eval()

    def _batch_loss(self, u: torch.Tensor, v: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        """Softmax over the batch's items; the same item elsewhere in the batch is not a negative."""
        assert self.user_tower is not None and self.item_tower is not None
        logits = self.user_tower(u) @ self.item_tower(v).T / self.params.temperature
        if self.params.logq_correction:
            logits = logits - log_q[v].unsqueeze(0)
        duplicate = (v.unsqueeze(0) == v.unsqueeze(1)) & ~torch.eye(len(v), dtype=torch.bool, device=v.device)
        logits = logits.masked_fill(duplicate, float("-inf"))
        return F.cross_entropy(logits, torch.arange(len(v), device=v.device))

    # ------------------------------------------------------------------ embeddings

    @property
    def embedding_dim(self) -> int:
        return self.params.embedding_dim

    @property
    def item_ids(self) -> list[IdValue]:
        """Catalog ids; row i of item_embeddings() and index position i are item_ids[i]."""
        return list(self._schema(self.item_schema).ids)

    @property
    def user_ids(self) -> list[IdValue]:
        """Users with a learned embedding (those seen in training)."""
        return list(self._schema(self.user_schema).ids)

    @property
    def cold_items(self) -> np.ndarray:
        """Catalog positions of items without a training interaction (embedded from features only)."""
        id_rows = self._tower(self.item_tower).id_rows[1:].cpu().numpy()
        return np.flatnonzero(id_rows == 0)

    def item_positions(self, item_ids: Iterable[Any]) -> np.ndarray:
        """Catalog position of each id (the index's item indices); -1 for ids not in the catalog."""
        self._schema(self.item_schema)
        return np.array([self._item_rows.get(_as_id(i), 0) - 1 for i in item_ids], dtype=np.int64)

    def user_embeddings(self, user_ids: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(vectors float32 (n, dim), known bool (n,)); unknown users get a zero vector and known=False.

        A zero vector scores every item 0, so never search with it: route `~known` users to
        the cold-start policy instead.
        """
        self._schema(self.user_schema)
        rows = np.array([self._user_rows.get(_as_id(i), 0) for i in user_ids], dtype=np.int64)
        vectors = self._embed(self._tower(self.user_tower), rows)
        known = rows > 0
        vectors[~known] = 0.0
        return vectors, known

    def item_embeddings(self) -> np.ndarray:
        """float32 (len(item_ids), dim), C-ordered, unit rows: what goes into the FAISS index."""
        n = len(self._schema(self.item_schema).ids)
        return self._embed(self._tower(self.item_tower), np.arange(1, n + 1, dtype=np.int64))

    def _embed(self, tower: _Tower, rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), self.embedding_dim), dtype=np.float32)
        with self._runtime(), torch.no_grad():
            tower.eval()
            for start in range(0, len(rows), EMBED_CHUNK):
                chunk = torch.as_tensor(rows[start : start + EMBED_CHUNK], device=self.device)
                out[start : start + len(chunk)] = tower(chunk).float().cpu().numpy()
        return np.ascontiguousarray(out)

    # ------------------------------------------------------------------ identity

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Both towers' tensors on the CPU, keys prefixed `user.` / `item.`."""
        state: dict[str, torch.Tensor] = {}
        for prefix, tower in (("user", self.user_tower), ("item", self.item_tower)):
            for key, tensor in self._tower(tower).state_dict().items():
                state[f"{prefix}.{key}"] = tensor.detach().cpu().contiguous()
        return state

    def fingerprint(self) -> str:
        """sha256 over the tensors and the schema/id maps: two models with equal fingerprints embed identically.

        Computed from values, not from the weights.pt bytes, so a fitted model and its saved
        and re-loaded copy agree, whatever torch's file container does.
        """
        digest = hashlib.sha256()
        digest.update(json.dumps(self._meta(), sort_keys=True, separators=(",", ":")).encode())
        for key, tensor in sorted(self.state_dict().items()):
            digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.numpy().tobytes())
        return digest.hexdigest()

    # ------------------------------------------------------------------ save / load

    def save(self, directory: Path) -> dict[str, str]:
        """Write weights.pt (state_dict) and model.json; returns {file name: sha256} for both."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = directory / WEIGHTS_FILE
        torch.save(self.state_dict(), weights)
        manifest = {
            "format_version": FORMAT_VERSION,
            **self._meta(),
            "fingerprint": self.fingerprint(),
            "files": {WEIGHTS_FILE: sha256_file(weights)},
        }
        (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return {WEIGHTS_FILE: manifest["files"][WEIGHTS_FILE], MANIFEST_FILE: sha256_file(directory / MANIFEST_FILE)}

    @classmethod
    def load(cls, directory: Path, device: str | torch.device | None = None, threads: int | None = 1) -> TwoTowerModel:
        """Read a directory written by save(): sha256 of weights.pt checked first, then weights_only loading."""
        directory = Path(directory)
        manifest = _read_manifest(directory)
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            raise ModelFormatError(f"{directory} lacks {WEIGHTS_FILE}.")
        check_sha256(weights, manifest["files"].get(WEIGHTS_FILE))
        try:
            params = TwoTowerParams(**manifest["params"])
        except TypeError as exc:
            raise ModelFormatError(f"{directory / MANIFEST_FILE} has unknown params ({exc}).") from None
        model = cls(manifest["user_features"], manifest["item_features"], params, device=device, threads=threads)
        model.user_schema = _SideSchema.from_json(manifest["user"])
        model.item_schema = _SideSchema.from_json(manifest["item"])
        model._index_ids()
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.user_tower = model._build_tower(model.user_schema)
        model.item_tower = model._build_tower(model.item_schema)
        for prefix, tower in (("user", model.user_tower), ("item", model.item_tower)):
            part = {k.split(".", 1)[1]: t for k, t in state.items() if k.startswith(f"{prefix}.")}
            try:
                tower.load_state_dict(part, strict=True)
            except RuntimeError as exc:
                raise ModelFormatError(f"{weights} does not match {MANIFEST_FILE}: {exc}") from None
            tower.to(model.device).eval()
        if model.fingerprint() != manifest.get("fingerprint"):
            raise ModelFormatError(
                f"{directory}: the loaded model's fingerprint {model.fingerprint()} differs from the recorded "
                f"{manifest.get('fingerprint')}; the files do not belong together."
            )
        return model

    # ------------------------------------------------------------------ internals

    def _meta(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "params": asdict(self.params),
            "user_features": self.user_features,
            "item_features": self.item_features,
            "embedding_dim": self.embedding_dim,
            "user": self._schema(self.user_schema).to_json(),
            "item": self._schema(self.item_schema).to_json(),
        }

    def _index_ids(self) -> None:
        self._user_rows = {uid: row for row, uid in enumerate(self._schema(self.user_schema).ids, start=1)}
        self._item_rows = {iid: row for row, iid in enumerate(self._schema(self.item_schema).ids, start=1)}

    def _build_tower(self, schema: _SideSchema) -> _Tower:
        sizes = [len(schema.kinds[name] or []) for name in schema.categorical]
        p = self.params
        return _Tower(len(schema.ids), sizes, len(schema.numeric), p.embedding_dim, p.hidden_dim)

    def _schema(self, schema: _SideSchema | None) -> _SideSchema:
        if schema is None:
            raise TwoTowerError("the two-tower model is not fitted yet: call fit() or load a saved one.")
        return schema

    def _tower(self, tower: _Tower | None) -> _Tower:
        if tower is None:
            raise TwoTowerError("the two-tower model is not fitted yet: call fit() or load a saved one.")
        return tower

    @contextmanager
    def _runtime(self) -> Iterator[None]:
        """Pin threads and deterministic kernels for the duration of a call, then restore the caller's."""
        threads = torch.get_num_threads()
        deterministic = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        if self.device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        try:
            if self.threads:
                torch.set_num_threads(self.threads)
            torch.use_deterministic_algorithms(True, warn_only=True)
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.set_num_threads(threads)


def default_device() -> torch.device:
    """A GPU when one is present, never required."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ModelFormatError(f"{directory} is not a saved two-tower model: {MANIFEST_FILE} is missing.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path} is not valid JSON ({exc}).") from None
    needed = ("format_version", "family", "params", "user_features", "item_features", "user", "item", "files")
    missing = [key for key in needed if key not in manifest]
    if missing:
        raise ModelFormatError(f"{path} lacks {', '.join(missing)}.")
    if manifest["family"] != TwoTowerModel.family:
        raise ModelFormatError(f"{directory} holds a {manifest['family']!r} model, not 'two_tower'.")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ModelFormatError(
            f"{path} has format version {manifest['format_version']}; this code reads version {FORMAT_VERSION}."
        )
    return manifest


def _as_id(value: Any) -> IdValue:
    """JSON-safe id: ints (numpy ints and integral floats included) or strings; anything else is refused."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        raise TwoTowerError(f"ids must be integers or strings, got a boolean {value!r}.")
    if isinstance(value, int | str):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise TwoTowerError(f"ids must be integers or strings, got {value!r} ({type(value).__name__}).")


def _clean_ids(column: pd.Series, name: str) -> list[IdValue]:
    if column.isna().any():
        raise TwoTowerError(f"column {name!r} holds {int(column.isna().sum())} missing id(s).")
    if pd.api.types.is_integer_dtype(column.dtype):
        return [int(v) for v in column.to_numpy()]
    return [_as_id(v) for v in column.to_numpy(dtype=object)]


def _id_sort_key(value: IdValue) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int) else (1, value)


def _side_frame(
    table: pd.DataFrame | None, id_col: str, features: list[str], ids: list[IdValue], what: str
) -> pd.DataFrame:
    """The feature rows of `ids`, in id order; every id needs a row when the tower has features."""
    if not features:
        return pd.DataFrame(index=pd.RangeIndex(len(ids)))
    if table is None:
        raise TwoTowerError(f"the {what} tower has features {features}: pass the {what} table to fit().")
    missing = [c for c in (id_col, *features) if c not in table.columns]
    if missing:
        raise TwoTowerError(f"the {what} table lacks column(s) {', '.join(missing)}.")
    keyed = table.assign(_id=_clean_ids(table[id_col], id_col)).set_index("_id")
    if keyed.index.has_duplicates:
        dup = keyed.index[keyed.index.duplicated()].unique()[:5].tolist()
        raise TwoTowerError(f"the {what} table holds several rows for id(s) {dup}; features need one row per id.")
    absent = [i for i in ids if i not in keyed.index]
    if absent:
        raise TwoTowerError(f"{len(absent)} id(s) have no row in the {what} table, e.g. {absent[:5]}.")
    return keyed.loc[ids, features].reset_index(drop=True)


def _fill_buffers(tower: _Tower, schema: _SideSchema, frame: pd.DataFrame) -> None:
    """Encode each id's features once: category codes (0 = missing/unseen) and standardised numerics."""
    n = len(schema.ids)
    for j, name in enumerate(schema.categorical):
        encoded, _ = categorical_values(frame[name], schema.kinds[name] or [], name)
        tower.cat_codes[1 : n + 1, j] = torch.as_tensor(encoded.codes.astype(np.int64) + 1)
    for j, name in enumerate(schema.numeric):
        values = numeric_values(frame[name], name)
        finite = values[np.isfinite(values)]
        mean = float(finite.mean()) if len(finite) else 0.0
        std = float(finite.std()) if len(finite) > 1 else 0.0
        scaled = np.nan_to_num((values - mean) / (std if std > 0 else 1.0), nan=0.0, posinf=0.0, neginf=0.0)
        tower.numeric[1 : n + 1, j] = torch.as_tensor(scaled, dtype=torch.float32)

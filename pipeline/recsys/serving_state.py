"""What serving ONE user needs besides the models: the training-time state of retrieval and ranking features.

`Retrieval.fit` and `system.feature_builder` compute their state from the training split
(co-occurrence item model, popularity, per-user history, impressions, item/user attribute
tables). Online there is no training split, so `keel run` writes exactly those inputs into the
bundle under `serving/` and `load_serving_state` rebuilds the same objects from them. The
ranking features are rebuilt by the same `RankingFeatureBuilder` offline and online, so a
feature cannot be computed one way in training and another in serving (no skew by construction).

Formats (no pickle): sparse matrices via scipy `save_npz`/`load_npz` (allow_pickle=False),
tables as Parquet, scalars as JSON. Every file is covered by the bundle manifest's sha256 and
read through `BundleRef.open_file`, which checks it right before reading.

    serving/history.npz       users x items positive training interactions (train part)
    serving/seen.npz          users x items every known positive: never recommended again
    serving/impressions.npz   users x items training impressions (absent without impressions)
    serving/cooccurrence.npz  the item-item co-occurrence model of the retrieval source
    serving/popularity.npy    positive training interactions per item (the popularity source)
    serving/items.parquet     item attributes the features, the re-ranker and cold start read (dense order)
    serving/users.parquet     user attributes (dense order; absent without a user table)
    serving/sources/<name>/   declared retrieval sources' fitted arrays (pipeline/recsys/source_state.py)
    serving/state.json        feature time, declared item attributes, exposure per diversity value, merge settings
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipeline.recsys import attributes as item_attributes
from pipeline.recsys import system
from pipeline.recsys.baselines import CoOccurrence, Popularity
from pipeline.recsys.examples import RecExamples, interaction_matrix
from pipeline.recsys.ranking_features import RankingFeatureBuilder
from pipeline.recsys.source_state import declared_sources, read_sources, source_arrays, write_sources
from pipeline.spec.schema import Spec

SERVING_DIR = "serving"
STATE_FILE = "state.json"
FORMAT_VERSION = 2  # 2: declared item attributes (data.items.attributes) instead of fixed column roles
ATTRIBUTE_COLUMN = "__diversity__"  # the re-ranker's attribute as codes into state.json's "attribute_values"


@dataclass(eq=False)
class ServingState:
    """The training-time state one request needs, in the dense index order of the bundle's id maps."""

    history: sp.csr_matrix
    seen: sp.csr_matrix
    impressions: sp.csr_matrix | None
    cooccurrence: sp.csr_matrix
    popularity: np.ndarray
    items: pd.DataFrame
    users: pd.DataFrame | None
    info: dict[str, Any]
    source_arrays: dict[str, dict[str, Any]] = field(default_factory=dict)  # declared sources' fitted arrays

    def builder(self) -> RankingFeatureBuilder:
        """The ranking feature builder exactly as `system.feature_builder` made it offline."""
        return RankingFeatureBuilder(
            self.history,
            self.items,
            self.users,
            item_attributes.from_json(self.info["attributes"]),
            as_of=_time_from_json(self.info["as_of"]),
            impressions=self.impressions,
        )

    def sources(self) -> tuple[CoOccurrence, Popularity]:
        """The co-occurrence and popularity retrieval sources, restored without refitting."""
        binary = sp.csr_matrix(self.history, dtype=np.float64, copy=True)
        binary.eliminate_zeros()
        binary.data[:] = 1.0
        cooc = CoOccurrence()
        cooc._history, cooc.cooccurrence = binary, self.cooccurrence  # what fit() would set
        popularity = Popularity()
        popularity._history, popularity.item_counts = binary, self.popularity
        return cooc, popularity

    def attribute(self) -> tuple[np.ndarray | None, dict[Any, float] | None]:
        """The re-ranker's attribute per item and exposure per value, as `system.diversity_attribute` made them."""
        if ATTRIBUTE_COLUMN not in self.items.columns:
            return None, None
        # codes into a JSON list keep each value's type (str, int, float) exactly; -1 is missing (None)
        values = np.array([*self.info["attribute_values"], None], dtype=object)
        attribute = values[self.items[ATTRIBUTE_COLUMN].to_numpy(dtype=np.int64)]
        exposure = {k: float(v) for k, v in self.info["exposure"]}
        return attribute, exposure


def serving_state(
    spec: Spec, tables: system.RecTables, ex: RecExamples, retrieval: system.Retrieval, seen: sp.csr_matrix
) -> ServingState:
    """Collect the state from a fitted run (the same inputs `system.feature_builder` and `Retrieval.fit` used)."""
    data = spec.data
    assert data.items is not None
    items = system._aligned(tables.items, data.items.id, ex.item_map.ids)
    declared = item_attributes.declared(spec)
    users = None
    if tables.users is not None and data.users is not None:
        users = system._aligned(tables.users, data.users.id, ex.user_map.ids)
    cold = spec.serving.cold_start.attribute
    keep_items = [c for c in declared if c in items.columns]
    # the user side of categorical attributes (user_A, same_A) and the cold-start attribute
    wanted_users = {c for c, a in declared.items() if a.type == "categorical"} | ({cold} if cold else set())
    keep_users = sorted(c for c in wanted_users if users is not None and c in users.columns)
    item_frame = items[keep_items].reset_index(drop=True)
    attribute, exposure = system.diversity_attribute(spec, tables, ex)
    attribute_values: list[Any] = []
    if attribute is not None:
        attribute_values = [_key_to_json(v) for v in pd.unique(attribute) if v is not None]
        lookup = {v: i for i, v in enumerate(attribute_values)}
        item_frame[ATTRIBUTE_COLUMN] = [lookup[_key_to_json(v)] if v is not None else -1 for v in attribute]
    info = {
        "format_version": FORMAT_VERSION,
        "as_of": _time_to_json(ex.valid_start),
        "attributes": item_attributes.to_json(declared),
        "attribute_values": attribute_values,
        "exposure": [[_key_to_json(k), v] for k, v in (exposure or {}).items()],
        "reranker": spec.reranker.model_dump() if spec.reranker is not None else None,
        "retrieval_k": retrieval.k,
        "weights": list(retrieval.weights),
        "declared_sources": declared_sources(spec),
    }
    return ServingState(
        history=sp.csr_matrix(ex.train_positives),
        seen=sp.csr_matrix(seen),
        impressions=interaction_matrix(ex.train, (ex.n_users, ex.n_items), positive_only=False),
        cooccurrence=sp.csr_matrix(retrieval.cooccurrence.cooccurrence),
        popularity=np.asarray(retrieval.popularity.item_counts, dtype=np.float64),
        items=item_frame,
        users=users[keep_users].reset_index(drop=True) if users is not None else None,
        info=info,
        source_arrays=source_arrays(retrieval.extra),
    )


def write_serving_state(directory: Path, state: ServingState) -> None:
    """Write `serving/` under a bundle directory (before save_bundle hashes it)."""
    out = Path(directory) / SERVING_DIR
    out.mkdir(parents=True, exist_ok=True)
    for name, matrix in (("history", state.history), ("seen", state.seen), ("cooccurrence", state.cooccurrence)):
        sp.save_npz(out / f"{name}.npz", sp.csr_matrix(matrix))
    if state.impressions is not None:
        sp.save_npz(out / "impressions.npz", sp.csr_matrix(state.impressions))
    np.save(out / "popularity.npy", np.asarray(state.popularity, dtype=np.float64), allow_pickle=False)
    _object_as_string(state.items).to_parquet(out / "items.parquet", index=False)
    if state.users is not None:
        _object_as_string(state.users).to_parquet(out / "users.parquet", index=False)
    info = {**state.info, "source_files": write_sources(out, state.source_arrays)}
    (out / STATE_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")


def load_serving_state(ref: Any) -> ServingState:
    """Read `serving/` of a registered bundle; every file's sha256 is checked right before it is read."""
    files = ref.manifest.files

    def path(name: str) -> Path:
        return ref.open_file(f"{SERVING_DIR}/{name}")

    def has(name: str) -> bool:
        return f"{SERVING_DIR}/{name}" in files

    if not has(STATE_FILE):
        raise ValueError(f"bundle {ref.tag} has no {SERVING_DIR}/ state: retrain it with this version of keel run")
    info = json.loads(path(STATE_FILE).read_text(encoding="utf-8"))
    if info.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"bundle {ref.tag}: serving state format {info.get('format_version')}, expected {FORMAT_VERSION}"
        )
    return ServingState(
        history=_npz(path("history.npz")),
        seen=_npz(path("seen.npz")),
        impressions=_npz(path("impressions.npz")) if has("impressions.npz") else None,
        cooccurrence=_npz(path("cooccurrence.npz")),
        popularity=np.load(path("popularity.npy"), allow_pickle=False),
        items=pd.read_parquet(path("items.parquet")),
        users=pd.read_parquet(path("users.parquet")) if has("users.parquet") else None,
        info=info,
        source_arrays=read_sources(info.get("source_files") or {}, path),
    )


def _npz(path: Path) -> sp.csr_matrix:
    return sp.csr_matrix(sp.load_npz(path))  # load_npz reads with allow_pickle=False


def _object_as_string(frame: pd.DataFrame) -> pd.DataFrame:
    """Parquet needs one type per column: object columns (mixed or None) become nullable strings."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].astype("string")
    return out


def _time_to_json(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        return {"kind": "timestamp", "value": value.isoformat()}
    return {"kind": "number", "value": float(value)}  # type: ignore[arg-type]


def _time_from_json(value: dict[str, Any] | None) -> object:
    if value is None:
        return None
    return pd.Timestamp(value["value"]) if value["kind"] == "timestamp" else float(value["value"])


def _key_to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


__all__ = ["SERVING_DIR", "ServingState", "load_serving_state", "serving_state", "write_serving_state"]

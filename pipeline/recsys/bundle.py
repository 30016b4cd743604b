"""The recommendation bundle: two-tower model + FAISS index + ranker + id maps + contract + spec + metrics.

One directory, registered as ONE version by `pipeline.registry.save_bundle` (sha256 per
file in the manifest), so model, index and ranker are promoted and rolled back together.
`load_recsys_bundle` checks every file's sha256 against the manifest before reading any
of them, and `load_retrieval` refuses an index that another model built.

Layout:
    retrieval/model/...  retrieval/index/...   pipeline.recsys.index.save_retrieval (absent: no two-tower declared)
    ranker/...                                 Ranker.save (absent when retrieval order is final)
    id_maps/items.parquet, id_maps/users.parquet   dense index -> external id (+ diversity attribute)
    serving/...                                pipeline.recsys.serving_state (what /recommend needs per user)
    contract.json, resolved_spec.yaml, metrics.json, recsys.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.recsys.index import ItemIndex, load_retrieval, save_retrieval
from pipeline.recsys.ranker import Ranker, load_ranker
from pipeline.recsys.serving_state import SERVING_DIR, ServingState, load_serving_state, write_serving_state
from pipeline.recsys.two_tower import TwoTowerModel
from pipeline.registry import BundleRef

FORMAT_VERSION = 1
RETRIEVAL_DIR = "retrieval"
RANKER_DIR = "ranker"
INFO_FILE = "recsys.json"


@dataclass(eq=False)
class RecsysBundle:
    model: TwoTowerModel | None  # None with model index: retrieval.sources declares no two-tower
    index: ItemIndex | None
    ranker: Ranker | None
    items: pd.DataFrame
    users: pd.DataFrame
    info: dict[str, Any]
    serving: ServingState | None = None  # None: a bundle written before serving state existed (batch only)


def write_recsys_dir(
    directory: Path,
    model: TwoTowerModel | None,
    index: ItemIndex | None,
    ranker: Ranker | None,
    items: pd.DataFrame,
    users: pd.DataFrame,
    contract_json: str,
    resolved_spec: str,
    metrics: dict[str, Any],
    info: dict[str, Any],
    serving: ServingState | None = None,
) -> None:
    """Write every file of one bundle under `directory` (save_retrieval refuses a foreign index)."""
    directory = Path(directory)
    if (model is None) != (index is None):
        raise ValueError("a bundle has both the two-tower and its index, or neither")
    if model is not None and index is not None:
        save_retrieval(directory / RETRIEVAL_DIR, model, index)
    if ranker is not None:
        ranker.save(directory / RANKER_DIR)
    (directory / "id_maps").mkdir(parents=True, exist_ok=True)
    items.to_parquet(directory / "id_maps" / "items.parquet", index=False)
    users.to_parquet(directory / "id_maps" / "users.parquet", index=False)
    (directory / "contract.json").write_text(contract_json, encoding="utf-8")
    (directory / "resolved_spec.yaml").write_text(resolved_spec, encoding="utf-8")
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
    if serving is not None:
        write_serving_state(directory, serving)
    payload = {"format_version": FORMAT_VERSION, "has_ranker": ranker is not None, "has_two_tower": model is not None}
    payload |= info
    (directory / INFO_FILE).write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


def load_recsys_bundle(ref: BundleRef) -> RecsysBundle:
    """Verify every file against the manifest, then load model + index (bound) and the ranker."""
    ref.verify()
    files = ref.manifest.files
    info = json.loads(ref.open_file(INFO_FILE).read_text(encoding="utf-8"))
    retrieval_files = _under(files, RETRIEVAL_DIR)
    model = index = None
    if info.get("has_two_tower", True):  # bundles before the key always had one
        model, index = load_retrieval(ref.path / RETRIEVAL_DIR, retrieval_files)
    ranker = load_ranker(ref.path / RANKER_DIR, _under(files, RANKER_DIR)) if info.get("has_ranker") else None
    items = pd.read_parquet(ref.open_file("id_maps/items.parquet"))
    users = pd.read_parquet(ref.open_file("id_maps/users.parquet"))
    serving = load_serving_state(ref) if _under(files, SERVING_DIR) else None
    return RecsysBundle(model, index, ranker, items, users, info, serving)


def _under(files: dict[str, str], prefix: str) -> dict[str, str]:
    return {rel[len(prefix) + 1 :]: sha for rel, sha in files.items() if rel.startswith(f"{prefix}/")}

"""FAISS index of a two-tower model's item embeddings, and the retrieval bundle layout.

Vectors are unit-length, so inner product is cosine similarity; every index type uses
METRIC_INNER_PRODUCT. The type and its parameters come from the spec (`flat` is exact;
`hnsw` and `ivf` trade a little recall for speed on large catalogs).

An index is only meaningful next to the model that made its vectors: serving a new
model's user vectors against an old model's item vectors returns confident garbage. So
`index.json` records the model's fingerprint and a sha256 of the exact item-embedding
matrix, and `load_index(directory, model)` refuses (IndexMismatchError) an index that
the given model did not build. The index file is written with faiss.write_index (no
pickle) and its sha256 is checked before faiss reads it.

Bundle layout written by `save_retrieval` (one directory, registered as one version):

    model/weights.pt, model/model.json    TwoTowerModel.save (weights, feature schema, id maps)
    index/index.faiss, index/index.json   ItemIndex.save (index + what built it)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from pipeline.models.base import check_sha256, sha256_file
from pipeline.models.errors import ModelFormatError
from pipeline.recsys.two_tower import TwoTowerError, TwoTowerModel

INDEX_FILE = "index.faiss"
META_FILE = "index.json"
FORMAT_VERSION = 1
MODEL_DIR = "model"
INDEX_DIR = "index"
IndexType = Literal["flat", "hnsw", "ivf"]
# Tolerance when a re-computed embedding differs in the last bits (another device or thread count).
RECONSTRUCT_ATOL = 1e-4


class IndexMismatchError(TwoTowerError):
    """The index was not built from this model's item embeddings: serving it would return garbage."""

    def __init__(self, what: str, recorded: str, actual: str, directory: Path | None = None) -> None:
        self.what = what
        self.recorded = recorded
        self.actual = actual
        where = f"{directory}: " if directory else ""
        super().__init__(
            f"{where}the index was built from {what} {recorded}, but the model gives {actual}; "
            f"rebuild the index from this model (or load the model it was built with)."
        )


@dataclass(frozen=True)
class IndexParams:
    """Index type and its knobs; `from_spec` reads pipeline.spec.schema.IndexSpec (keys it lacks keep defaults)."""

    type: IndexType = "flat"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_nlist: int = 100
    ivf_nprobe: int = 10

    def __post_init__(self) -> None:
        if self.type not in ("flat", "hnsw", "ivf"):
            raise TwoTowerError(f"unknown index type {self.type!r}; expected flat, hnsw or ivf.")
        small = [f.name for f in fields(self) if f.name != "type" and getattr(self, f.name) < 1]
        if small:
            raise TwoTowerError(f"index parameter(s) {', '.join(small)} must be >= 1.")

    @classmethod
    def from_spec(cls, spec: Any, **overrides: Any) -> IndexParams:
        source = spec if isinstance(spec, dict) else (spec.model_dump() if hasattr(spec, "model_dump") else {})
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in {**source, **overrides}.items() if k in known})


def embedding_fingerprint(embeddings: np.ndarray) -> str:
    """sha256 of the matrix as float32, C order, prefixed by its shape (so a reshape is not a match)."""
    matrix = np.ascontiguousarray(embeddings, dtype=np.float32)
    digest = hashlib.sha256(f"{matrix.shape[0]}x{matrix.shape[1]}|".encode())
    digest.update(matrix.tobytes())
    return digest.hexdigest()


class ItemIndex:
    """A FAISS index over catalog positions 0..n-1 (model.item_ids[i] is position i)."""

    def __init__(
        self, index: faiss.Index, params: IndexParams, embedding_fingerprint: str, model_fingerprint: str | None
    ) -> None:
        self.index = index
        self.params = params
        self.embedding_fingerprint = embedding_fingerprint
        self.model_fingerprint = model_fingerprint
        _apply_search_params(index, params)

    def set_search_params(self, hnsw_ef_search: int | None = None, ivf_nprobe: int | None = None) -> None:
        """Change the search-time knobs (recall vs speed) without rebuilding; recorded by the next save()."""
        changes = {"hnsw_ef_search": hnsw_ef_search, "ivf_nprobe": ivf_nprobe}
        self.params = replace(self.params, **{k: v for k, v in changes.items() if v is not None})
        _apply_search_params(self.index, self.params)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[Collection[int] | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 (n, k), item positions int64 (n, k)), best first; -1 / -inf pad short rows.

        `exclude[i]` holds catalog positions query i must not get (e.g. items already seen).
        Implemented by over-fetching k + the largest exclusion set and filtering, so an
        exact index still returns k results whenever the catalog has k unexcluded items.
        """
        matrix = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if matrix.shape[1] != self.dim:
            raise TwoTowerError(f"queries have dimension {matrix.shape[1]}; the index holds {self.dim}-d vectors.")
        if k < 1:
            raise TwoTowerError(f"k must be >= 1, got {k}.")
        if exclude is not None and len(exclude) != len(matrix):
            raise TwoTowerError(f"exclude has {len(exclude)} entries for {len(matrix)} queries.")
        extra = max((len(e) for e in exclude if e), default=0) if exclude is not None else 0
        fetch = min(k + extra, self.ntotal)
        scores, positions = self.index.search(matrix, fetch)
        if not extra and fetch == k:
            return scores, positions.astype(np.int64)
        out_scores = np.full((len(matrix), k), -np.inf, dtype=np.float32)
        out_positions = np.full((len(matrix), k), -1, dtype=np.int64)
        for row in range(len(matrix)):
            keep = positions[row] >= 0
            banned = exclude[row] if exclude is not None else None
            if banned:
                keep &= ~np.isin(positions[row], np.fromiter(banned, dtype=np.int64, count=len(banned)))
            chosen = np.flatnonzero(keep)[:k]
            out_scores[row, : len(chosen)] = scores[row, chosen]
            out_positions[row, : len(chosen)] = positions[row, chosen]
        return out_scores, out_positions

    def reconstruct_all(self) -> np.ndarray:
        """The stored vectors, in position order (IVF needs its direct map, made on demand)."""
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
            ivf.make_direct_map()
        return self.index.reconstruct_n(0, self.ntotal)

    def save(self, directory: Path) -> dict[str, str]:
        """Write index.faiss and index.json; returns {file name: sha256} for both."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / INDEX_FILE))
        meta = {
            "format_version": FORMAT_VERSION,
            "type": self.params.type,
            "params": asdict(self.params),
            "ntotal": self.ntotal,
            "dim": self.dim,
            "metric": "inner_product",
            "embedding_fingerprint": self.embedding_fingerprint,
            "model_fingerprint": self.model_fingerprint,
            "files": {INDEX_FILE: sha256_file(directory / INDEX_FILE)},
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return {INDEX_FILE: meta["files"][INDEX_FILE], META_FILE: sha256_file(directory / META_FILE)}


def build_index(
    embeddings: np.ndarray, params: IndexParams | None = None, model_fingerprint: str | None = None
) -> ItemIndex:
    """An index over `embeddings` (rows = catalog positions); IVF trains its coarse quantizer on them."""
    params = params or IndexParams()
    matrix = np.ascontiguousarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2 or len(matrix) == 0:
        raise TwoTowerError(f"item embeddings must be a non-empty (n, dim) matrix, got shape {matrix.shape}.")
    n, dim = matrix.shape
    if params.type == "flat":
        index: faiss.Index = faiss.IndexFlatIP(dim)
    elif params.type == "hnsw":
        hnsw = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = params.hnsw_ef_construction
        index = hnsw
    else:
        # k-means cannot make more centroids than it has points; record the list count actually used.
        params = replace(params, ivf_nlist=min(params.ivf_nlist, n))
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFFlat(quantizer, dim, params.ivf_nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = 1234  # k-means seed: same embeddings, same lists
        ivf.train(matrix)
        index = ivf  # faiss's Python wrapper keeps `quantizer` alive as long as `ivf`
    index.add(matrix)
    return ItemIndex(index, params, embedding_fingerprint(matrix), model_fingerprint)


def build_item_index(model: TwoTowerModel, params: IndexParams | None = None) -> ItemIndex:
    """The index of `model`'s whole catalog, stamped with the model's fingerprint."""
    return build_index(model.item_embeddings(), params, model.fingerprint())


def load_index(directory: Path, model: TwoTowerModel) -> ItemIndex:
    """Read an index saved by ItemIndex.save and prove that `model` built it.

    Checks, in order: index.faiss sha256; the model fingerprint recorded at build time
    equals `model.fingerprint()`; the catalog size and dimension match; and the model's
    item embeddings hash to the recorded fingerprint. When only that last hash differs
    (the same weights computed on another device can differ in the last bits), the stored
    vectors are compared with tolerance before the index is accepted.
    """
    directory = Path(directory)
    meta = _read_meta(directory)
    path = directory / INDEX_FILE
    if not path.is_file():
        raise ModelFormatError(f"{directory} lacks {INDEX_FILE}.")
    check_sha256(path, meta["files"].get(INDEX_FILE))
    recorded_model = meta.get("model_fingerprint")
    model_fp = model.fingerprint()
    if recorded_model is not None and recorded_model != model_fp:
        raise IndexMismatchError("model fingerprint", recorded_model, model_fp, directory)
    embeddings = model.item_embeddings()
    if (int(meta["ntotal"]), int(meta["dim"])) != embeddings.shape:
        shape = "x".join(map(str, embeddings.shape))
        raise IndexMismatchError("an item matrix of shape", f"{meta['ntotal']}x{meta['dim']}", shape, directory)
    index = faiss.read_index(str(path))
    if (index.ntotal, index.d) != embeddings.shape:
        raise ModelFormatError(f"{path} holds {index.ntotal} {index.d}-d vectors, but {META_FILE} says otherwise.")
    params = IndexParams(**meta["params"])
    item_index = ItemIndex(index, params, meta["embedding_fingerprint"], recorded_model)
    actual_fp = embedding_fingerprint(embeddings)
    if actual_fp != meta["embedding_fingerprint"] and not np.allclose(
        item_index.reconstruct_all(), embeddings, rtol=0.0, atol=RECONSTRUCT_ATOL
    ):
        recorded = meta["embedding_fingerprint"]
        raise IndexMismatchError("item embeddings with fingerprint", recorded, actual_fp, directory)
    return item_index


# ---------------------------------------------------------------------- one bundle


def save_retrieval(directory: Path, model: TwoTowerModel, index: ItemIndex) -> dict[str, str]:
    """Write model/ and index/ under `directory`; returns {relative path: sha256} for the bundle manifest.

    Refuses an index that this model did not build, so a mismatched pair is never written.
    """
    model_fp = model.fingerprint()
    if index.model_fingerprint is not None and index.model_fingerprint != model_fp:
        raise IndexMismatchError("model fingerprint", index.model_fingerprint, model_fp)
    directory = Path(directory)
    files = {f"{MODEL_DIR}/{name}": sha for name, sha in model.save(directory / MODEL_DIR).items()}
    files |= {f"{INDEX_DIR}/{name}": sha for name, sha in index.save(directory / INDEX_DIR).items()}
    return files


def load_retrieval(
    directory: Path, files: dict[str, str] | None = None, device: str | None = None
) -> tuple[TwoTowerModel, ItemIndex]:
    """Load a bundle written by save_retrieval; with `files` (the bundle manifest) every sha256 is checked first."""
    directory = Path(directory)
    for rel, expected in (files or {}).items():
        check_sha256(directory / rel, expected)
    model = TwoTowerModel.load(directory / MODEL_DIR, device=device)
    return model, load_index(directory / INDEX_DIR, model)


# ---------------------------------------------------------------------- internals


def _apply_search_params(index: faiss.Index, params: IndexParams) -> None:
    """efSearch / nprobe are search-time settings: apply them after building or reading."""
    if params.type == "hnsw":
        faiss.downcast_index(index).hnsw.efSearch = params.hnsw_ef_search
    elif params.type == "ivf":
        ivf = faiss.try_extract_index_ivf(index)
        ivf.nprobe = min(params.ivf_nprobe, ivf.nlist)


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / META_FILE
    if not path.is_file():
        raise ModelFormatError(f"{directory} is not a saved index: {META_FILE} is missing.")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path} is not valid JSON ({exc}).") from None
    needed = ("format_version", "type", "params", "ntotal", "dim", "embedding_fingerprint", "files")
    missing = [key for key in needed if key not in meta]
    if missing:
        raise ModelFormatError(f"{path} lacks {', '.join(missing)}.")
    if meta["format_version"] != FORMAT_VERSION:
        raise ModelFormatError(f"{path} has format version {meta['format_version']}; this code reads {FORMAT_VERSION}.")
    return meta

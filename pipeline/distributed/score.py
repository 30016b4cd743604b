"""`keel score` on a Dask cluster: each worker scores its partitions and writes its own Parquet part.

1. validate_partitions (pipeline/distributed/validate.py): the contract in scoring mode, per partition,
   with cross-partition `unique`, quarantine committed as one dataset;
2. per partition, on its worker: derived features, predict_proba, reasons, with the bundle loaded once
   per worker process after its sha256 check (`worker_bundle`);
3. the global rank (1 = highest probability; ties in row order, as np.argsort(-p, kind="stable") gives
   locally) by a sample sort: only (probability, row) pairs cross the network, to value-range buckets
   and back;
4. each partition's rows (in row order) written as `part-NNNNN.parquet` into a staging directory beside
   the target, with `_manifest.json` (parts, rows); the directory is renamed to the target in one step.
   A failed or interrupted run leaves at most a hidden staging directory, never a target that looks whole.

Read the result with `pd.read_parquet(target)`; sorted by `row` it equals the local `keel score` output.
"""

from __future__ import annotations

import json
import operator
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.atomic_files import write_frame_atomic
from pipeline.data.derived import add_derived
from pipeline.models.explain import top_reasons
from pipeline.registry import BundleStore
from pipeline.registry.tabular import TabularBundle, load_tabular_bundle
from pipeline.scoring.command import ROW_COLUMN, _empty

_BUNDLES: dict[tuple[str, str], TabularBundle] = {}
_LOCK = threading.Lock()
SAMPLE_PER_PART = 256


def worker_bundle(home: str, tag: str, files: dict[str, str]) -> TabularBundle:
    """The bundle, loaded once per worker process; `files` (path -> sha256) must be the manifest the client saw."""
    key = (home, tag)
    with _LOCK:
        bundle = _BUNDLES.get(key)
        if bundle is None:
            ref = BundleStore(Path(home)).get(tag)
            if ref.manifest.files != files:
                raise RuntimeError(f"bundle {tag} in {home} is not the one the run resolved (file digests differ)")
            bundle = load_tabular_bundle(ref)  # verifies every file's sha256 before parsing
            _BUNDLES[key] = bundle
        return bundle


def loaded_bundles() -> list[str]:
    """Tags this worker process has loaded (tests: each worker loads a bundle once)."""
    return [tag for _, tag in _BUNDLES]


def score_part(
    accepted: pd.DataFrame,
    bundle_key: tuple[str, str, dict[str, str]],
    entity: str | None,
    threshold: float,
    reasons: int,
    spec_sha256: str,
) -> pd.DataFrame:
    """On a worker: score_frame's columns (without rank) for one partition's accepted rows, in row order."""
    bundle = worker_bundle(*bundle_key)
    if accepted.empty:
        frame = _empty(entity or ROW_COLUMN, reasons).drop(columns="rank")
        return frame
    features = add_derived(accepted, bundle.derived) if bundle.derived else accepted
    probability = np.asarray(bundle.model.predict_proba(features[bundle.model.features]), dtype=np.float64)
    out = pd.DataFrame({ROW_COLUMN: np.asarray(accepted.index, dtype=np.int64)})
    if entity:
        out.insert(0, entity, accepted[entity].astype("string").to_numpy())
    out["probability"] = probability
    out["decision"] = probability >= threshold
    if reasons > 0:
        out["reasons"] = top_reasons(bundle.model, features[bundle.model.features], bundle.reference, n=reasons)
    out["bundle"] = bundle.tag
    out["spec_sha256"] = spec_sha256
    return out


def _sample(scored: pd.DataFrame) -> np.ndarray:
    p = np.sort(scored["probability"].to_numpy())
    if len(p) <= SAMPLE_PER_PART:
        return p
    return p[np.linspace(0, len(p) - 1, SAMPLE_PER_PART).astype(int)]


def _to_buckets(scored: pd.DataFrame, splitters: np.ndarray) -> list[pd.DataFrame]:
    """(probability, row) per bucket; bucket 0 holds the highest probabilities (splitters descending)."""
    p = scored["probability"].to_numpy()
    which = np.searchsorted(-splitters, -p, side="right")  # equal probabilities always share a bucket
    pairs = pd.DataFrame({"probability": p, ROW_COLUMN: scored[ROW_COLUMN].to_numpy()})
    return [pairs[which == b] for b in range(len(splitters) + 1)]


def _rank_bucket(pieces: list[pd.DataFrame], starts: list[int]) -> tuple[int, list[pd.DataFrame]]:
    """Rows of one bucket (its piece of every partition) ranked inside it (descending probability, then row);
    split back by partition."""
    both = pd.concat(pieces, ignore_index=True)
    both = both.sort_values(ROW_COLUMN, kind="stable")  # row order first: the stable sort keeps it among ties
    order = np.argsort(-both["probability"].to_numpy(), kind="stable")
    rows = both[ROW_COLUMN].to_numpy()[order]
    ranked = pd.DataFrame({ROW_COLUMN: rows, "rank": np.arange(1, len(rows) + 1, dtype=np.int64)})
    part_of = np.searchsorted(np.asarray(starts), rows, side="right") - 1
    return len(rows), [ranked[part_of == i] for i in range(len(starts))]


def _bucket_size(result: tuple[int, list[pd.DataFrame]]) -> int:
    return result[0]


def _for_partition(ranked: tuple[int, list[pd.DataFrame]], index: int) -> pd.DataFrame:
    return ranked[1][index]


def _finish_part(
    scored: pd.DataFrame, ranked: list[pd.DataFrame], offsets: list[int], index: int, staging: str
) -> dict[str, Any]:
    """On a worker: the partition's rank column from every bucket's piece for it, then its part file written."""
    pieces = [piece.assign(rank=piece["rank"] + off) for piece, off in zip(ranked, offsets, strict=True)]
    ranks = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame({ROW_COLUMN: [], "rank": []})
    rank = ranks.set_index(ROW_COLUMN)["rank"].reindex(scored[ROW_COLUMN].to_numpy()).to_numpy()
    out = scored.copy()
    out.insert(out.columns.get_loc("decision") + 1, "rank", rank.astype(np.int64))
    path = os.path.join(staging, f"part-{index:05d}.parquet")
    write_frame_atomic(out, Path(path))  # tmp + rename, page checksums; a retried task rewrites the same part
    return {"part": os.path.basename(path), "rows": len(out)}


def score_partitions(
    client: Any,
    accepted: list[Any],
    bundle_key: tuple[str, str, dict[str, str]],
    entity: str | None,
    threshold: float,
    reasons: int,
    spec_sha256: str,
    target: Path,
) -> dict[str, Any]:
    """Score, rank and commit; returns {rows, flagged, parts}. `target` appears whole or not at all."""
    scored = [
        client.submit(score_part, a, bundle_key, entity, threshold, reasons, spec_sha256, pure=False) for a in accepted
    ]
    sizes = [int(n) for n in client.gather(client.map(len, scored, pure=False))]
    row_starts = client.gather(client.map(_first_row, scored, pure=False))
    samples = client.gather(client.map(_sample, scored, pure=False))
    buckets = max(1, len(accepted))
    pooled = np.sort(np.concatenate(samples)) if samples else np.zeros(0)
    if len(pooled) and buckets > 1:
        cuts = np.unique(pooled[np.linspace(0, len(pooled) - 1, buckets + 1).astype(int)[1:-1]])
        splitters = cuts[::-1]  # descending
    else:
        splitters = np.zeros(0)
    split = client.map(_to_buckets, scored, splitters=splitters, pure=False)
    boundaries = _row_boundaries(row_starts, sizes)
    ranked = [
        client.submit(_rank_bucket, [client.submit(operator.getitem, s, b, pure=False) for s in split], boundaries)
        for b in range(len(splitters) + 1)
    ]
    counts = client.gather(client.map(_bucket_size, ranked, pure=False))
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
    staging = target.with_name(f".{target.name}.staging-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        written = client.gather(
            [
                client.submit(
                    _finish_part,
                    s,
                    [client.submit(_for_partition, r, i, pure=False) for r in ranked],
                    offsets,
                    i,
                    str(staging),
                    pure=False,
                )
                for i, s in enumerate(scored)
            ]
        )
        flagged = int(sum(client.gather(client.map(_flagged, scored, pure=False))))
        manifest = {"parts": written, "rows": int(sum(sizes)), "complete": True}
        (staging / "_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        commit_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"rows": int(sum(sizes)), "flagged": flagged, "parts": len(written)}


def _first_row(scored: pd.DataFrame) -> int:
    return int(scored[ROW_COLUMN].iloc[0]) if len(scored) else -1


def _flagged(scored: pd.DataFrame) -> int:
    return int(scored["decision"].sum()) if len(scored) else 0


def _row_boundaries(row_starts: list[int], sizes: list[int]) -> list[int]:
    """First row of each partition (an empty partition borrows the next one's, so it gets no rows)."""
    out: list[int] = []
    nxt = 1 << 62
    for first, n in reversed(list(zip(row_starts, sizes, strict=True))):
        nxt = first if n else nxt
        out.append(nxt)
    return out[::-1]


def commit_directory(staging: Path, target: Path) -> None:
    """Rename `staging` to `target`; an existing target is moved aside first and removed after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)

"""The fitted declared retrieval sources (`retrieval.sources`) in a bundle, so /recommend merges what batch merged.

`Retrieval.declare` fits item_knn, ease, als (and cooccurrence / popularity with params) on the
training history. Serving restores the same objects instead of refitting them: a refit could
differ (ALS is seeded but threaded) and costs start-up time. Each source is written as its
scorer's arrays (`.npy`) and sparse matrices (`.npz`, allow_pickle=False) under
`serving/sources/<name>/`, its type and params in state.json; the 0/1 history a scorer scores
from is the bundle's `serving/history.npz`, the matrix it was fitted on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from pipeline.recsys.sources import CandidateSource, make_source

SOURCES_DIR = "sources"


def declared_sources(spec: Any) -> list[dict[str, Any]] | None:
    """state.json's record of `retrieval.sources` (None: the default sources, nothing declared)."""
    if spec.retrieval is None:
        return None
    return [
        {"name": s.name or s.type, "type": s.type, "params": dict(s.params), "weight": s.weight}
        for s in spec.retrieval.sources
    ]


def source_arrays(extra: dict[str, CandidateSource]) -> dict[str, dict[str, np.ndarray | sp.csr_matrix]]:
    """name -> {attribute: array} of each fitted extra source's scorer (the history excluded: it is shared)."""
    out: dict[str, dict[str, np.ndarray | sp.csr_matrix]] = {}
    for name, source in extra.items():
        scorer = getattr(source, "scorer", None)
        if scorer is None:
            raise ValueError(f"retrieval source {name!r} has no scorer to store in the bundle")
        out[name] = {
            attr: (sp.csr_matrix(value) if sp.issparse(value) else np.asarray(value))
            for attr, value in vars(scorer).items()
            if attr != "_history" and (isinstance(value, np.ndarray) or sp.issparse(value))
        }
    return out


def write_sources(directory: Path, arrays: dict[str, dict[str, np.ndarray | sp.csr_matrix]]) -> dict[str, Any]:
    """Write the arrays under `directory`/sources/; returns name -> {attribute: file} for state.json."""
    files: dict[str, dict[str, str]] = {}
    for name, values in arrays.items():
        folder = directory / SOURCES_DIR / name
        folder.mkdir(parents=True, exist_ok=True)
        files[name] = {}
        for attr, value in values.items():
            if sp.issparse(value):
                sp.save_npz(folder / f"{attr}.npz", sp.csr_matrix(value))
                files[name][attr] = f"{SOURCES_DIR}/{name}/{attr}.npz"
            else:
                np.save(folder / f"{attr}.npy", value, allow_pickle=False)
                files[name][attr] = f"{SOURCES_DIR}/{name}/{attr}.npy"
    return files


def read_sources(files: dict[str, dict[str, str]], path: Callable[[str], Path]) -> dict[str, dict[str, Any]]:
    """name -> {attribute: array}, each file opened through `path` (the bundle's sha256-checked opener)."""
    out: dict[str, dict[str, Any]] = {}
    for name, attrs in files.items():
        out[name] = {
            attr: sp.csr_matrix(sp.load_npz(path(f))) if f.endswith(".npz") else np.load(path(f), allow_pickle=False)
            for attr, f in attrs.items()
        }
    return out


def restore_sources(
    declared: list[dict[str, Any]], arrays: dict[str, dict[str, Any]], history: sp.csr_matrix
) -> dict[str, CandidateSource]:
    """The fitted extra sources as `Retrieval.declare` left them, without refitting."""
    binary = sp.csr_matrix(history, dtype=np.float64, copy=True)
    binary.eliminate_zeros()
    binary.data[:] = 1.0
    by_name = {d["name"]: d for d in declared}
    out: dict[str, CandidateSource] = {}
    for name, values in arrays.items():
        source = make_source(by_name[name]["type"], by_name[name]["params"])
        scorer = source.scorer  # type: ignore[attr-defined]
        scorer._history = binary
        for attr, value in values.items():
            setattr(scorer, attr, value)
        out[name] = source
    return out

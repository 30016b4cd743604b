"""`keel score`: hold a file to the contract (scoring mode), score it with a bundle, write the scores.

A thin Prefect flow over pipeline/scoring/command.py: one coarse task per step, NO_CACHE
because hashing a frame costs more than the work (docs/adr/0005-cli-and-flows.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from pipeline.data.sources import load_path
from pipeline.data.timestamps import apply_timestamp_unit
from pipeline.registry import BundleStore
from pipeline.registry.home import spec_store
from pipeline.runs import create_run_dir
from pipeline.scoring.command import (
    Scored,
    load_bundle,
    resolve_bundle,
    score_frame,
    summary,
    write_quarantine,
    write_scores,
)
from pipeline.spec.load import LoadedSpec, load_spec
from pipeline.spec.schema import Spec


@task(cache_policy=NO_CACHE)
def load_file(spec: Spec, data_path: Path) -> pd.DataFrame:
    return apply_timestamp_unit(load_path(data_path, spec.data.csv_delimiter), spec.data, spec.contract)


@task(cache_policy=NO_CACHE)
def score_rows(spec: Spec, store: BundleStore, tag: str, frame: pd.DataFrame, reasons: int, sha: str) -> Scored:
    return score_frame(spec, load_bundle(store, tag), frame, reasons, sha)


@flow(name="keel-score", log_prints=True)
def score_flow(
    spec_path: str,
    data_path: str,
    overrides: list[str] | None = None,
    conf_dirs: list[str] | None = None,
    bundle: str = "champion",
    out: str | None = None,
    reasons: int = 0,
) -> dict[str, Any]:
    """Parameters are plain JSON so a Prefect deployment can schedule the same flow."""
    loaded = load_spec(spec_path, overrides or [], [Path(d) for d in conf_dirs or []])
    spec = loaded.spec
    store = spec_store(spec)  # the one store every verb uses (ADR 0017)
    tag = resolve_bundle(spec, store, bundle)
    if spec.runtime.executor == "dask":  # partitions scored on the workers (pipeline/distributed, ADR 0024)
        from pipeline.distributed.commands import score_on_dask

        return score_on_dask(loaded, data_path, store, tag, Path(out) if out else None, reasons)  # a URI keeps '//'
    run = create_run_dir(loaded, "score")
    frame = load_file(spec, Path(data_path))
    scored = score_rows(spec, store, tag, frame, reasons, loaded.sha256)
    target = Path(out) if out else run / "scores.parquet"
    outputs = {"scores": str(write_scores(scored.frame, target))}
    outputs["quarantine"] = str(write_quarantine(scored.contract, run / "quarantine.parquet"))
    result = summary(scored, outputs, str(run.path), loaded.sha256)
    run.write_json("score_report.json", {k: v for k, v in result.items() if k != "text"} | {"data": data_path})
    return result


def run_score(loaded: LoadedSpec, data_path: str | Path, bundle: str, out: Path | None, reasons: int) -> dict[str, Any]:
    """Run the flow for the CLI (text for people, fields for --json)."""
    return score_flow(
        str(loaded.path),
        str(data_path),
        loaded.overrides,
        [str(d) for d in loaded.conf_dirs],
        bundle,
        str(out) if out else None,
        reasons,
    )

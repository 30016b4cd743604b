"""The Dask forms of `keel validate` and `keel score`: open the cluster, map over partitions, commit, report.

Called by flows/validate.py and flows/score.py when runtime.executor is dask; the reports they write
have the local path's shape plus a `dask` block (scheduler, dashboard, partitions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.atomic_files import write_frame_atomic
from pipeline.contracts.profile import ReferenceProfile, build_profile
from pipeline.contracts.report import build_report, drift_verdict, render_markdown
from pipeline.contracts.validate import validate_frame
from pipeline.data.derived import add_derived, derived_lineage
from pipeline.data.partitioned import is_partitioned, list_partitions
from pipeline.data.sources import load_source
from pipeline.distributed.cluster import open_cluster
from pipeline.distributed.datadocs import data_docs_on_dask
from pipeline.distributed.errors import DistributedError, worker_faults
from pipeline.distributed.profile import build_profile_distributed, psi_against_distributed
from pipeline.distributed.score import commit_directory, score_partitions
from pipeline.distributed.validate import validate_partitions
from pipeline.runs import create_run_dir, record_cluster
from pipeline.spec.load import LoadedSpec
from pipeline.spec.schema import Spec


def partitioned_source(spec: Spec, base_dir: Path, data_path: str | Path | None) -> str:
    """--data (as typed, or absolute: keel's CLI resolves it against the working directory), else data.source."""
    source = str(data_path) if data_path is not None else spec.data.source
    if not is_partitioned(source, base_dir):
        raise DistributedError(
            f"runtime.executor dask reads partitioned Parquet: {source} is not a directory, glob or URI "
            "of Parquet files (use runtime.executor local for one file)"
        )
    return source


def _derived(client: Any, spec: Spec, accepted: list[Any]) -> dict[str, dict[str, Any]]:
    lineage = derived_lineage(spec.features.derived)
    if not spec.features.derived or not accepted:
        return {}

    def non_finite(frame):  # on a worker
        computable = {
            n: f
            for n, f in spec.features.derived.items()
            if all(c in frame.columns or c in spec.features.derived for c in lineage[n])
        }
        if not computable or frame.empty:
            return {}
        derived = add_derived(frame, computable)
        return {n: int((~np.isfinite(derived[n].to_numpy(float))).sum()) for n in computable}

    parts = client.gather(client.map(non_finite, accepted, pure=False))
    names = set().union(*(p.keys() for p in parts))
    if not names:
        return {}
    return {
        n: {"inputs": lineage[n], "non_finite": sum(p.get(n, 0) for p in parts) if n in names else None}
        for n in spec.features.derived
    }


def validate_on_dask(loaded: LoadedSpec, data_path: str | Path | None) -> tuple[dict[str, Any], str]:
    """`keel validate` with runtime.executor dask: (report, markdown)."""
    spec = loaded.spec
    source = partitioned_source(spec, loaded.base_dir, data_path)
    parts = list_partitions(source, loaded.base_dir)
    with open_cluster(spec.runtime, "validate") as cluster, worker_faults():
        run = create_run_dir(loaded, "validate")
        record_cluster(run, cluster.record() | {"partitions": len(parts.paths), "steps": cluster.steps})
        client = cluster.client
        result, accepted = validate_partitions(client, spec, parts, run / "quarantine")
        derived = _derived(client, spec, accepted)
        contract = spec.contract
        reference = spec.data.reference
        drift: dict = {}
        if reference is None:
            profile = build_profile_distributed(client, accepted, contract, contract.profile.bins)
            where = "none declared: this dataset's profile was written as reference_profile.json"
        else:
            if reference.source.endswith(".json"):
                path = Path(reference.source)
                path = path if path.is_absolute() else loaded.base_dir / path
                profile = ReferenceProfile.from_json(path.read_text())
            elif is_partitioned(reference.source, loaded.base_dir):
                ref_parts = list_partitions(reference.source, loaded.base_dir)
                _, ref_accepted = validate_partitions(client, spec, ref_parts, None)
                profile = build_profile_distributed(client, ref_accepted, contract, contract.profile.bins)
            else:
                frame = validate_frame(load_source(reference, loaded.base_dir), contract).accepted
                profile = build_profile(frame, contract, contract.profile.bins)
            drift = psi_against_distributed(
                client, profile, accepted, contract.profile.psi_warning, contract.profile.psi_alert
            )
            where = reference.source
        run.write_text("reference_profile.json", profile.to_json())
        dask_info = cluster.record() | {"partitions": result.partitions}
        docs = data_docs_on_dask(
            client, spec, parts, result, run / "quarantine", run / "data_docs", drift_verdict(drift)
        )
    meta = {
        "spec_name": spec.name,
        "spec_sha256": loaded.sha256,
        "run_dir": str(run.path),
        "data": source,
        "great_expectations": {k: v for k, v in docs.items() if k != "index"},
        "dask": dask_info,
    }
    report = build_report(result, drift, where, derived, meta)
    report["outputs"] = {"quarantine": str(run / "quarantine"), "report": str(run / "validation_report.md")}
    if docs.get("index"):
        report["outputs"]["data_docs"] = str(docs["index"])
    markdown = render_markdown(report)
    run.write_json("validation_report.json", report)
    run.write_text("validation_report.md", markdown)
    return report, markdown


def score_on_dask(
    loaded: LoadedSpec, data_path: str | Path, store: Any, tag: str, out: Path | None, reasons: int
) -> dict[str, Any]:
    """`keel score` with runtime.executor dask: the same fields as the local flow's summary."""
    from pipeline.scoring.command import ROW_COLUMN, Scored, ScoreError, _empty, scoring_contract, summary

    spec = loaded.spec
    source = partitioned_source(spec, loaded.base_dir, data_path)
    if out is not None and out.name.lower().endswith(".csv"):
        raise ScoreError(f"--out {out}: on the Dask executor scores are a Parquet dataset (a directory of parts)")
    parts = list_partitions(source, loaded.base_dir)
    ref = store.get(tag)
    bundle_key = (str(store.home), tag, dict(ref.manifest.files))
    with open_cluster(spec.runtime, "score") as cluster, worker_faults():
        run = create_run_dir(loaded, "score")
        record_cluster(run, cluster.record() | {"partitions": len(parts.paths), "steps": cluster.steps})
        client = cluster.client
        header = pd.Index(client.gather(client.submit(_header, parts.urls()[0], pure=False)))
        contract = scoring_contract(spec.contract, spec.data.label, header)
        scoring_spec = spec.model_copy(update={"contract": contract}) if contract is not spec.contract else spec
        result, accepted = validate_partitions(client, scoring_spec, parts, run / "quarantine")
        entity = spec.data.entity_id
        id_column = entity if entity else ROW_COLUMN
        notes = (
            [] if entity else [f"the spec declares no data.entity_id: rows are named by their position ({ROW_COLUMN})"]
        )
        if contract is not spec.contract:
            notes.append(f"no label column {spec.data.label!r} in the file: scored without it")
        target = out if out is not None else run / "scores.parquet"
        threshold = float(spec.evaluation.threshold)
        if result.ok and result.rows_accepted:
            done = score_partitions(client, accepted, bundle_key, entity, threshold, reasons, loaded.sha256, target)
        else:
            staging = target.with_name(f".{target.name}.staging-empty")
            staging.mkdir(parents=True, exist_ok=True)
            write_frame_atomic(_empty(id_column, reasons), staging / "part-00000.parquet")
            commit_directory(staging, target)
            done = {"rows": 0, "flagged": 0, "parts": 1}
        dask_info = cluster.record() | {"partitions": result.partitions, "score_parts": done["parts"]}
    counted = np.zeros(done["rows"], dtype=bool)  # summary() counts len(frame) and decision.sum(): 1 byte a row
    counted[: done["flagged"]] = True
    scored = Scored(pd.DataFrame({"decision": counted}), result, tag, threshold, id_column, notes)
    outputs = {"scores": str(target), "quarantine": str(run / "quarantine")}
    report = summary(scored, outputs, str(run.path), loaded.sha256)
    report["dask"] = dask_info
    run.write_json("score_report.json", {k: v for k, v in report.items() if k != "text"} | {"data": source})
    return report


def _header(url: str) -> list[str]:
    """Column names of one partition from its Parquet schema (no rows read)."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(url, "rb") as handle:
        return list(pq.ParquetFile(handle).schema_arrow.names)

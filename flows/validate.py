"""`keel validate`: load the spec's dataset, hold it to its contract, quarantine, report.

A thin Prefect flow: each task calls one function of `pipeline/`. Data-heavy tasks
use NO_CACHE because hashing a large frame for a cache key costs more than the
work itself (docs/adr/0005-cli-and-flows.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.io_retries import IO_RETRIES
from pipeline.atomic_files import write_frame_atomic
from pipeline.contracts.profile import ReferenceProfile, build_profile
from pipeline.contracts.psi import PsiResult, psi_against
from pipeline.contracts.report import build_report, drift_verdict, render_markdown
from pipeline.contracts.result import ContractResult
from pipeline.contracts.validate import validate_frame
from pipeline.data.derived import add_derived, derived_lineage
from pipeline.data.prepare import load_frame
from pipeline.data.sources import load_source
from pipeline.runs import RunDir, create_run_dir
from pipeline.spec.load import LoadedSpec, load_spec
from pipeline.spec.schema import Spec


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def load_dataset(spec: Spec, base_dir: Path, data_path: Path | None) -> pd.DataFrame:
    return load_frame(spec, base_dir, data_path)  # epoch timestamps already times (data.timestamp_unit)


@task(cache_policy=NO_CACHE)
def check_contract(frame: pd.DataFrame, spec: Spec) -> ContractResult:
    return validate_frame(frame, spec.contract)


@task(cache_policy=NO_CACHE)
def derive_features(accepted: pd.DataFrame, spec: Spec) -> dict[str, dict[str, Any]]:
    """Compute declared derived features on accepted rows; report lineage and non-finite counts."""
    lineage = derived_lineage(spec.features.derived)
    computable = {
        name: feature
        for name, feature in spec.features.derived.items()
        if all(column in accepted.columns or column in spec.features.derived for column in lineage[name])
    }
    if not computable or accepted.empty:
        return {}
    derived = add_derived(accepted, computable)
    return {
        name: {
            "inputs": lineage[name],
            "non_finite": int((~np.isfinite(derived[name].to_numpy(float))).sum()) if name in computable else None,
        }
        for name in spec.features.derived
    }


@task(cache_policy=NO_CACHE)
def reference_drift(
    accepted: pd.DataFrame, spec: Spec, base_dir: Path, run: RunDir
) -> tuple[dict[str, PsiResult], str]:
    """PSI of the accepted rows against the declared reference; without one, profile this data."""
    contract = spec.contract
    if spec.data.reference is None:
        profile = build_profile(accepted, contract, contract.profile.bins)
        run.write_text("reference_profile.json", profile.to_json())
        return {}, "none declared: this dataset's profile was written as reference_profile.json"
    reference = spec.data.reference
    if reference.source.endswith(".json"):
        path = Path(reference.source)
        profile = ReferenceProfile.from_json((path if path.is_absolute() else base_dir / path).read_text())
    else:
        reference_frame = validate_frame(load_source(reference, base_dir), contract).accepted
        profile = build_profile(reference_frame, contract, contract.profile.bins)
    run.write_text("reference_profile.json", profile.to_json())
    drift = psi_against(profile, accepted, contract.profile.psi_warning, contract.profile.psi_alert)
    return drift, reference.source


@task(cache_policy=NO_CACHE)
def data_docs(
    frame: pd.DataFrame, spec: Spec, run: RunDir, result: ContractResult, reasons: list[str]
) -> dict[str, Any]:
    """Great-expectations Data Docs of the rows Keel validated, with Keel's verdict and counts on every page."""
    from pipeline.contracts.expectations import write_data_docs

    if spec.contract.ge_sample_rows == 0:
        return {"index": None, "note": "disabled (contract.ge_sample_rows is 0)"}
    if frame.empty or not len(frame.columns):
        return {"index": None, "note": "no rows to document"}
    docs = write_data_docs(spec.contract, frame, run / "data_docs", result=result, reasons=reasons)
    return docs.summary()


@task(cache_policy=NO_CACHE)
def write_outputs(result: ContractResult, run: RunDir) -> dict[str, str]:
    quarantine = run / "quarantine.parquet"
    frame = result.quarantined
    frame = frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object})
    write_frame_atomic(frame, quarantine)
    return {"quarantine": str(quarantine)}


@flow(name="keel-validate", log_prints=True)
def validate_flow(
    spec_path: str,
    overrides: list[str] | None = None,
    data_path: str | None = None,
    conf_dirs: list[str] | None = None,
) -> dict[str, Any]:
    """Parameters are plain JSON so a Prefect deployment can schedule the same flow."""
    loaded = load_spec(spec_path, overrides or [], [Path(d) for d in conf_dirs or []])
    spec = loaded.spec
    if spec.runtime.executor == "dask":  # partitions checked on the workers (pipeline/distributed, ADR 0024)
        from pipeline.distributed.commands import validate_on_dask

        report, markdown = validate_on_dask(loaded, data_path)  # a string: a URI keeps its '//'
        create_markdown_artifact(markdown=markdown, key=f"{spec.name}-validation", description="Keel validation report")
        return report
    data_path = Path(data_path) if data_path else None
    run = create_run_dir(loaded, "validate")
    frame = load_dataset(spec, loaded.base_dir, data_path)
    result = check_contract(frame, spec)
    derived = derive_features(result.accepted, spec)
    drift, reference = reference_drift(result.accepted, spec, loaded.base_dir, run)
    docs = data_docs(frame, spec, run, result, drift_verdict(drift))
    outputs = write_outputs(result, run)
    if docs.get("index"):
        outputs["data_docs"] = str(docs["index"])
    meta = {
        "spec_name": spec.name,
        "spec_sha256": loaded.sha256,
        "run_dir": str(run.path),
        "data": str(data_path) if data_path else spec.data.source,
        "great_expectations": {k: v for k, v in docs.items() if k != "index"},
    }
    report = build_report(result, drift, reference, derived, meta)
    report["outputs"] = {**outputs, "report": str(run / "validation_report.md")}
    markdown = render_markdown(report)
    run.write_json("validation_report.json", report)
    run.write_text("validation_report.md", markdown)
    create_markdown_artifact(markdown=markdown, key=f"{spec.name}-validation", description="Keel validation report")
    return report


def run_validation(loaded: LoadedSpec, data_path: str | Path | None = None) -> dict[str, Any]:
    """Run the flow and summarise it for the CLI (text for people, fields for --json)."""
    report = validate_flow(
        str(loaded.path),
        loaded.overrides,
        str(data_path) if data_path else None,
        [str(d) for d in loaded.conf_dirs],
    )
    contract = report["contract"]
    verdict = "passed" if report["status"] == "ok" else "FAILED"
    text = (
        f"validation {verdict}: {contract['rows_in']:,} rows in, {contract['rows_accepted']:,} accepted, "
        f"{contract['rows_quarantined']:,} quarantined ({contract['quarantine_fraction']:.2%})\n"
        + "".join(f"  - {reason}\n" for reason in report["reasons"])
        + f"report: {report['outputs']['report']}"
    )
    return {
        "text": text,
        "status": report["status"],
        "run_dir": report["run_dir"],
        "rows_in": contract["rows_in"],
        "rows_accepted": contract["rows_accepted"],
        "rows_quarantined": contract["rows_quarantined"],
        "reasons": report["reasons"],
        "outputs": report["outputs"],
    }

"""`keel monitor`: one day's data vs the reference -> report, charts, metrics history, trigger decision.

Coarse tasks (load current, load reference, join outcomes, monitor, write outputs); the
computation lives in pipeline/monitoring and is pure. The decision comes from the spec's
triggers (pipeline/triggers) fed with the day's PSI and metrics.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.io_retries import IO_RETRIES
from pipeline.contracts.profile import ReferenceProfile
from pipeline.contracts.validate import validate_frame
from pipeline.data.derived import add_derived
from pipeline.data.errors import DataSourceError
from pipeline.data.prepare import label_vector
from pipeline.data.sources import load_path, load_source
from pipeline.data.timestamps import apply_timestamp_unit
from pipeline.monitoring import MonitorReference, MonitorReport, Outcomes, build_reference, monitor
from pipeline.monitoring.charts import drift_chart, history_chart
from pipeline.monitoring.decision import decide
from pipeline.monitoring.history import history_rows, read_history, write_day
from pipeline.monitoring.reference import BUNDLE_FILE as MONITOR_REFERENCE_FILE
from pipeline.monitoring.reference import relabelled, with_training_profile
from pipeline.registry import BundleStore
from pipeline.registry.home import spec_store
from pipeline.reports.artifact import publish_markdown
from pipeline.reports.format import fmt_number
from pipeline.runs import RunDir, create_run_dir
from pipeline.spec.load import LoadedSpec, load_spec
from pipeline.spec.schema import Spec
from pipeline.spec.types import parse_duration
from pipeline.triggers import Decision, record_not_started


def _store(spec: Spec) -> BundleStore:
    return spec_store(spec)


def champion_tag(spec: Spec) -> str | None:
    from pipeline.registry.aliases import aliases

    return aliases(spec.name, store=_store(spec)).get("champion")


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def load_current(spec: Spec, base_dir: Path, data_path: Path | None) -> pd.DataFrame:
    """The rows to monitor, epoch timestamps already times (data.timestamp_unit), as `keel run` reads them."""
    if data_path is not None:
        frame = load_path(data_path, spec.data.csv_delimiter)
    elif spec.monitoring.current is None:
        raise DataSourceError("nothing to monitor: pass --data FILE or set monitoring.current in the spec.")
    else:
        frame = load_source(spec.monitoring.current, base_dir)
    return apply_timestamp_unit(frame, spec.data, spec.contract)


def split_window(spec: Spec, frame: pd.DataFrame, as_of: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference rows, current rows) of a rolling window ending at the end of `as_of` (UTC)."""
    ts = spec.data.timestamp
    if ts is None or ts not in frame.columns:
        raise DataSourceError(
            f"monitoring.reference is window, which needs the timestamp column {ts!r} in the current data."
        )
    stamps = pd.to_datetime(frame[ts], errors="coerce", utc=True)
    end = pd.Timestamp(as_of + timedelta(days=1), tz="UTC")
    cut = end - parse_duration(spec.monitoring.current_window)
    start = cut - parse_duration(spec.monitoring.reference_window)
    return frame[(stamps >= start) & (stamps < cut)], frame[(stamps >= cut) & (stamps < end)]


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def load_reference(
    spec: Spec, base_dir: Path, window_rows: pd.DataFrame | None, champion: str | None
) -> MonitorReference:
    """The window's rows; else the champion's stored training reference; else the reference data
    (overlaid with the champion's contract-column profile for bundles registered before it was stored)."""
    bins = spec.monitoring.bins or spec.contract.profile.bins
    segment = spec.monitoring.segment_column
    if window_rows is not None:
        frame = add_derived(validate_frame(window_rows, spec.contract).accepted, spec.features.derived)
        window = f"rolling {spec.monitoring.reference_window} window ({len(frame):,} rows)"
        return build_reference(frame, spec.contract, spec.features.derived, bins, segment, window)
    bundle = _store(spec).get(champion) if champion is not None else None
    if bundle is not None:
        bundle.verify()  # sha256 of every file before reading any
        if MONITOR_REFERENCE_FILE in bundle.manifest.files:
            stored = MonitorReference.from_json(bundle.open_file(MONITOR_REFERENCE_FILE).read_text())
            return relabelled(stored, f"champion {champion} training data")
    source = spec.data.reference or spec.data
    if source.source.endswith(".json"):
        path = Path(source.source) if Path(source.source).is_absolute() else base_dir / source.source
        profile = ReferenceProfile.from_json(path.read_text())
        reference = MonitorReference(profile, source=f"reference profile {source.source}")
    else:
        loaded = apply_timestamp_unit(load_source(source, base_dir), spec.data, spec.contract)
        accepted = validate_frame(loaded, spec.contract).accepted
        frame = add_derived(accepted, spec.features.derived)
        label = f"reference data {source.source} ({len(frame):,} rows)"
        reference = build_reference(frame, spec.contract, spec.features.derived, bins, segment, label)
    if bundle is None:
        return reference
    training = ReferenceProfile.from_json(bundle.open_file("reference_profile.json").read_text())
    return with_training_profile(reference, training, f"champion {champion} training profile")


@task(cache_policy=NO_CACHE)
def join_outcomes(spec: Spec, current: pd.DataFrame, champion: str | None) -> Outcomes | None:
    """Labels in the current data scored by the champion (or by a `probability` column already there)."""
    label = spec.data.label
    if spec.task != "binary_classification" or label is None or label not in current.columns or current.empty:
        return None
    if "probability" in current.columns:
        frame = current[current[label].notna()]
        return Outcomes(label_vector(frame, spec.data), frame["probability"].to_numpy(float), bundle=None)
    if champion is None:
        return None
    from pipeline.registry.tabular import load_tabular_bundle

    bundle = load_tabular_bundle(_store(spec).get(champion))
    accepted = validate_frame(current, spec.contract).accepted
    accepted = accepted[accepted[label].notna()]
    if accepted.empty:
        return None
    features = add_derived(accepted, bundle.derived) if bundle.derived else accepted
    score = bundle.model.predict_proba(features[bundle.model.features])
    return Outcomes(label_vector(accepted, spec.data), np.asarray(score, dtype=float), bundle=champion)


@task(cache_policy=NO_CACHE)
def measure(spec: Spec, current: pd.DataFrame, reference: MonitorReference, outcomes, as_of: date) -> MonitorReport:
    return monitor(spec, current, reference, outcomes, as_of)


@task(cache_policy=NO_CACHE)
def write_outputs(loaded: LoadedSpec, report: MonitorReport, reference: MonitorReference, run: RunDir) -> Decision:
    """History partition for the day, charts, reference, decision; the report files last."""
    spec = loaded.spec
    history_dir = Path(spec.monitoring.history or Path(spec.runtime.runs_dir) / spec.name / "metrics_history")
    write_day(
        history_dir,
        report.as_of,
        history_rows(report.as_of, report.metrics, report.psi(), report.bundle, loaded.sha256),
    )
    report.outputs["metrics_history"] = str(history_dir)
    run.write_text("monitor_reference.json", reference.to_json())
    report.outputs["reference"] = str(run / "monitor_reference.json")
    if spec.monitoring.charts:
        for name, d in report.features.items():
            if d.level in ("ALERT", "CRITICAL") and drift_chart(d, run / "charts" / f"{name}.png"):
                report.outputs[f"{name}_png"] = str(run / "charts" / f"{name}.png")
        if history_chart(read_history(history_dir), run / "charts" / "metric_history.png"):
            report.outputs["metric_history_png"] = str(run / "charts" / "metric_history.png")
    report.decision, decision = decide(spec, report)
    report.outputs["report"] = str(run / "monitor_report.md")
    markdown = report.to_markdown()
    run.write_json("monitor_report.json", report.to_dict())
    run.write_text("monitor_report.md", markdown)
    publish_markdown(markdown, f"{spec.name}-monitor", "Keel monitor report", run.path)  # charts embedded
    return decision


@flow(name="keel-monitor", log_prints=True)
def monitor_flow(
    spec_path: str,
    overrides: list[str] | None = None,
    data_path: str | None = None,
    as_of: str | None = None,
    conf_dirs: list[str] | None = None,
    start_retrain: bool = False,
) -> dict[str, Any]:
    """The daily monitor; parameters are plain JSON so a Prefect deployment can schedule it.

    Args:
        spec_path: the spec file (absolute path on the machine that serves this deployment)
        overrides: Hydra overrides applied to the spec, e.g. ["monitoring.psi_alert=0.3"]
        data_path: a Parquet/CSV file to monitor; empty: the spec's monitoring.current
        as_of: the monitored day, YYYY-MM-DD; empty: today (UTC)
        conf_dirs: extra config-group directories searched before Keel's conf/
        start_retrain: when the triggers prescribe a retrain, start it (the retrain deployment, else in this
            process). Off: the monitor only reports, and the prescribed retrain does not count for dedup
    """
    loaded = load_spec(spec_path, overrides or [], [Path(d) for d in conf_dirs or []])
    spec = loaded.spec
    day = date.fromisoformat(as_of) if as_of else datetime.now(UTC).date()
    run = create_run_dir(loaded, "monitor")
    current = load_current(spec, loaded.base_dir, Path(data_path) if data_path else None)
    window_rows = None
    if spec.monitoring.reference == "window":
        window_rows, current = split_window(spec, current, day)
    champion = champion_tag(spec)
    reference = load_reference(spec, loaded.base_dir, window_rows, champion)
    outcomes = join_outcomes(spec, current, champion)
    report = measure(spec, current, reference, outcomes, day)
    decision = write_outputs(loaded, report, reference, run)
    started = None
    if decision.retrain is not None and start_retrain:
        from flows.schedule import start_retrain as start

        started = start(loaded, decision)
    elif decision.retrain is not None:  # prescribed, not started: it must not dedup a later retrain that runs
        record_not_started(spec, decision.retrain, "prescribed by keel monitor, not started (no --retrain)", "monitor")
    return {"run_dir": str(run.path), **report.to_dict(), "retrain_started": started}


def run_monitor(
    loaded: LoadedSpec, data_path: Path | None = None, as_of: str | None = None, start_retrain: bool = False
) -> dict[str, Any]:
    """Run the flow and summarise it for the CLI: levels, groups, segments, decision."""
    report = monitor_flow(
        str(loaded.path),
        loaded.overrides,
        str(data_path) if data_path else None,
        as_of,
        [str(d) for d in loaded.conf_dirs],
        start_retrain,
    )
    return {"text": summary_text(report), **report}


def summary_text(report: dict[str, Any]) -> str:
    lines = [f"monitor {report['as_of']}: {report['level']} ({report['rows']:,} rows vs {report['reference_source']})"]
    lines += [f"  problem: {p}" for p in report["problems"]]
    for g in report["groups"]:
        lines.append(f"  {g['level']}: {g['explanation']}")
        seg = next((s for s in report["segments"] if s["feature"] in (*g["sources"], g["features"][0])), None)
        if seg:
            lines.append(f"    segments ({seg['column']}): {seg['pattern']} — {seg['likely']}")
    lines += [f"  unit change? {u['feature']} {u['factor']} ({u['meaning']})" for u in report["unit_changes"]]
    if report["metrics"]:
        shown = (f"{k} {fmt_number(v)}" for k, v in report["metrics"].items() if v is not None)
        lines.append("  metrics: " + ", ".join(shown))  # counts as 20,000, not 2e+04
    decision = report["decision"]
    lines.append(f"  decision: {decision.get('summary', '')}")
    if report.get("retrain_started"):
        lines.append(f"  retrain started: {report['retrain_started']}")
    lines.append(f"report: {report['outputs']['report']}")
    return "\n".join(lines)

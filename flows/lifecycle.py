"""`keel run`: validate -> features -> split -> select/train -> evaluate -> gate -> register -> batch-score.

The whole StreamFlow system from its spec, as one Prefect flow of coarse tasks. A
failed gate stops promotion (the bundle is still registered, marked gate-failed,
so the report can be reproduced); a passed one becomes champion, the previous
champion its warm standby. A sweep job (`keel run -m`, flows/sweep.py) registers but
never promotes.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.evaluate import evaluate_model, fairness_causal, gate
from flows.train import fingerprint, fit_model, prepare_data, refit_model, select_challenger
from pipeline.contracts.profile import build_profile
from pipeline.distributed.cluster import run_cluster
from pipeline.fairness.sections import render_markdown as render_sections
from pipeline.gates.champion import write_training_rows
from pipeline.gates.report import render_gates, render_run_details
from pipeline.models.explain import FeatureReference
from pipeline.models.refit import trained_on_text
from pipeline.monitoring.reference import BUNDLE_FILE as MONITOR_REFERENCE_FILE
from pipeline.monitoring.reference import training_reference
from pipeline.registry import BundleStore, promote, save_bundle
from pipeline.registry.home import spec_store
from pipeline.registry.tabular import load_tabular_bundle, write_bundle_dir
from pipeline.reports.artifact import publish_markdown
from pipeline.runs import RunDir, code_version, create_run_dir
from pipeline.scoring.batch import latest_snapshot, score_high_risk, write_score_cache
from pipeline.scoring.masked import masked_churner_outputs
from pipeline.spec.load import LoadedSpec, handing_over, load_spec


def bundle_store(loaded: LoadedSpec) -> BundleStore:
    return spec_store(loaded.spec)


@task(cache_policy=NO_CACHE)
def register(
    loaded: LoadedSpec,
    model,
    data,
    evaluation: dict,
    gate_report,
    run: RunDir,
    store: BundleStore,
    promote_on_pass: bool = True,
    sweep: dict[str, Any] | None = None,
    trained: tuple[Any, dict[str, Any]] | None = None,
):
    """Register the bundle (passed or not, so its report can be reproduced); promote it if allowed.

    `trained`: the rows the model learned from and their description (evaluation.refit); default the train part.
    """
    spec = loaded.spec
    train, trained_on = trained if trained is not None else (data.splits["train"], None)
    profile = build_profile(data.contract.accepted, spec.contract, spec.contract.profile.bins)
    with tempfile.TemporaryDirectory(prefix="keel-bundle-") as tmp:
        write_bundle_dir(
            Path(tmp),
            model,
            spec.contract,
            spec.features.derived,
            FeatureReference.from_frame(train, model.features),
            {"test": evaluation["metrics"], "gates": gate_report.to_dict()},
            profile.to_json(),
            loaded.to_yaml(),
            spec.evaluation.threshold,
        )
        monitor_reference = training_reference(
            data.contract.accepted,
            spec.contract,
            spec.features.derived,
            spec.monitoring.bins or spec.contract.profile.bins,
            spec.monitoring.segment_column,
        )
        (Path(tmp) / MONITOR_REFERENCE_FILE).write_text(monitor_reference.to_json(), encoding="utf-8")
        seen = pd.concat([train, data.splits["valid"]]) if len(data.splits["valid"]) else train  # vs champion
        write_training_rows(Path(tmp), seen, model.features, spec.features.derived, spec.data.label)
        ref = save_bundle(
            spec.name,
            Path(tmp),
            spec_sha256=loaded.sha256,
            data_fingerprint=fingerprint(train),
            code_version=code_version(),
            features=model.features,
            metrics=evaluation["metrics"],
            gate_passed=gate_report.passed,
            extra={
                "family": model.family,
                "run_dir": str(run.path),
                **({"sweep": sweep["id"]} if sweep else {}),
                **({"trained_on": trained_on} if trained_on else {}),
            },
            store=store,
        )
    if gate_report.passed and promote_on_pass:
        promote(spec.name, ref.tag, reason=f"gates passed in {run.path.name}", store=store)
    return ref.tag


@task(cache_policy=NO_CACHE)
def batch_score(loaded: LoadedSpec, tag: str, data, run: RunDir, store: BundleStore) -> dict[str, Any]:
    spec = loaded.spec
    bundle = load_tabular_bundle(store.get(tag))
    snapshot = latest_snapshot(data.contract.accepted, spec.data.entity_id, spec.data.timestamp)
    if spec.runtime.executor == "dask":  # scored and explained on the workers, the same list (ADR 0024)
        from pipeline.distributed.highrisk import high_risk_on_dask

        listing = high_risk_on_dask(spec.runtime, store, tag, snapshot, spec.data.entity_id, spec.evaluation.threshold)
    else:
        listing = score_high_risk(bundle, snapshot, spec.data.entity_id, spec.evaluation.threshold)
    outputs = listing.write(run.path)
    outputs |= masked_churner_outputs(spec, snapshot, loaded.base_dir, run.path, listing.frame.iloc[:, 0])
    outputs |= write_score_cache(spec, listing.frame, tag, store)  # what /cached_score serves (ADR 0018)
    return {"scored": listing.scored, "listed": len(listing.frame), **outputs}


@flow(name="keel-run", log_prints=True)
def run_flow(
    spec_path: str,
    overrides: list[str] | None = None,
    conf_dirs: list[str] | None = None,
    sweep: dict[str, Any] | None = None,
    promote_on_pass: bool = True,
) -> dict:
    """One run. A sweep job (`sweep` set) registers but never promotes: see docs/adr/0009-sweeps.md.
    promote_on_pass=False (a triggered retrain of a spec with a rollout) registers a passed bundle and holds
    it for its staged rollout: the rollout, not the run, makes it champion (docs/adr/0014)."""
    loaded = load_spec(spec_path, overrides or [], [Path(d) for d in conf_dirs or []])
    run = create_run_dir(loaded, "run")
    with run_cluster(loaded.spec.runtime, run):  # runtime.executor dask: one cluster for every step (ADR 0024)
        return _run_steps(loaded, run, sweep, promote_on_pass)


def _run_steps(loaded: LoadedSpec, run: RunDir, sweep: dict[str, Any] | None, promote_on_pass: bool) -> dict:
    """The steps of one run, in the run directory (and on the cluster) run_flow opened."""
    spec = loaded.spec
    store = bundle_store(loaded)
    data = prepare_data(spec, loaded.base_dir)
    model_spec, selection = select_challenger(spec, data, always=sweep is not None)  # a sweep ranks on CV
    model = fit_model(spec, model_spec, data)
    evaluation = evaluate_model(spec, model, data)
    sections = fairness_causal(spec, model, data, loaded.base_dir, run.path)
    evaluation["metrics"] |= sections.metrics()  # gate-able by name, stored for vs champion / baseline
    insufficient, evidence = sections.insufficient(), sections.evidence()  # fairness: intervals, groups left out
    gate_report, champion_tag = gate(spec, evaluation["metrics"], store, insufficient, data, model, evidence, selection)
    promoted = gate_report.passed and sweep is None and promote_on_pass
    model, trained, trained_on = refit_model(spec, model_spec, model, data)  # evaluation.refit (ADR 0020)
    tag = register(loaded, model, data, evaluation, gate_report, run, store, promoted, sweep, (trained, trained_on))
    scoring = batch_score(loaded, tag, data, run, store) if promoted else {}
    report = {
        "spec_name": spec.name,
        "spec_sha256": loaded.sha256,
        "run_dir": str(run.path),
        "status": "ok" if gate_report.passed else "failed",
        "bundle": tag,
        "promoted": promoted,
        "promotion": _promotion(gate_report.passed, promoted, sweep, promote_on_pass),
        "previous_champion": champion_tag,
        "model_family": model.family,
        "selection_metric": spec.selection.metric or "auc",
        "selection": selection,
        "trained_on": trained_on,
        "sweep": sweep,
        "rows": {
            "in": data.contract.rows_in,
            "quarantined": data.contract.rows_quarantined,
            **{part: len(frame) for part, frame in data.splits.items()},
        },
        "metrics": evaluation["metrics"],
        "gates": gate_report.to_dict(),
        "calibration": evaluation["calibration"],
        "lift": evaluation["lift"],
        "scoring": scoring,
        "fairness_causal": sections.to_dict() if sections.declared else None,
    }
    markdown = render_gates(
        gate_report, f"Gate report — {spec.name} ({tag})", report["promotion"], promoted, _facts(report)
    )
    markdown += render_run_details(report, exclude=sections.metrics()) + render_sections(sections)
    run.write_json("run_report.json", report)
    run.write_text("gate_report.md", markdown)
    publish_markdown(markdown, f"{spec.name}-gates", "Keel gate report", run.path)
    return report


def _facts(report: dict[str, Any]) -> list[str]:
    """The bullets under the gate table: what was registered, against what, and the list it wrote."""
    facts = [
        f"bundle `{report['bundle']}` ({report['model_family']}); previous champion: "
        f"{report['previous_champion'] or 'none'}",
        f"trained on {trained_on_text(report['trained_on'])}",
    ]
    rescored = next((g for g in report["gates"]["gates"] if g.get("reference_rows") is not None), None)
    if rescored is not None:  # vs champion: the same rows for both (docs/adr/0025-champion-rescored.md)
        how = "re-scored on" if rescored["comparable"] else "could not be scored on (not comparable)"
        facts.append(
            f"vs champion: {report['previous_champion']} {how} this run's {rescored['reference_rows']:,} "
            f"{rescored['reference_split']} rows, the challenger's own"
        )
    scoring = report["scoring"]
    if scoring:
        facts.append(
            f"high-risk list: {scoring['listed']:,} of {scoring['scored']:,} entities at or above the threshold: "
            f"`{Path(scoring['high_risk_csv']).name}`"
        )
    return facts


def _promotion(passed: bool, promoted: bool, sweep: dict[str, Any] | None, promote_on_pass: bool = True) -> str:
    """The promotion verdict in words, for the report and the CLI."""
    if promoted:
        return "promoted to champion"
    if passed and not sweep and not promote_on_pass:
        return "gates passed, held for the staged rollout (the rollout makes it champion)"
    if not passed or not sweep:
        return "NOT promoted (a gate said no)"
    return f"gates passed, held: sweep job {sweep['job']} of {sweep['jobs']} (only --promote-best promotes)"


def _selection_line(report: dict[str, Any]) -> str:
    rows = report["selection"]
    if not rows:
        return f"  model: {report['model_family']} (the only one declared)"
    scores = ", ".join(f"{r['source']} {r['family']} {r['mean']:.4f}" for r in rows)
    return f"  model: {report['model_family']}, best cross-validated {report['selection_metric']} of: {scores}"


def run_lifecycle(loaded: LoadedSpec, promote_on_pass: bool = True) -> dict[str, Any]:
    """promote_on_pass=False: register a passed bundle without promoting it (a retrain a staged rollout promotes)."""
    if loaded.spec.task == "recommendation":  # StreamRec: retrieval + ranking + re-ranking (flows/recsys.py)
        from flows.recsys import run_recsys

        return run_recsys(loaded, promote_on_pass)
    # the flow's parameters stay plain JSON (a deployment or the UI starts it by path); in this process it
    # gets the spec already composed instead of composing it again (unless a file changed since)
    with handing_over(loaded), _without_heartbeats():
        report = run_flow(str(loaded.path), loaded.overrides, [str(d) for d in loaded.conf_dirs], None, promote_on_pass)
    _skip_collection_at_exit()
    return lifecycle_summary(report)


HEARTBEAT_SETTINGS = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")


@contextlib.contextmanager
def _without_heartbeats() -> Iterator[None]:
    """No flow-run heartbeat thread for an in-process `keel run`, unless the environment sets its frequency.

    The sync engine joins the heartbeat thread when the flow ends, and the thread sleeps in 1 s steps:
    0-1 s of idle wall time per run (0.5 s on average). Heartbeats only feed a Prefect automation that
    marks silent runs crashed; Keel configures none and marks a killed run Crashed itself (the next run
    of the spec does, tests/integration/test_crashed_runs.py). States, logs, task runs and artifacts are
    unchanged in the UI. Set PREFECT_FLOWS_HEARTBEAT_FREQUENCY to keep Prefect's heartbeats.
    """
    if any(os.environ.get(name) for name in HEARTBEAT_SETTINGS):
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@functools.cache  # registered once per process
def _skip_collection_at_exit() -> None:
    """At interpreter exit, leave the heap to the OS instead of garbage-collecting it object by object.

    CPython's last collections walk every object Prefect, pydantic, pandas and LightGBM created (about
    1 s on a quiet box, 3 s on a busy one) and free nothing the process exit would not. gc.freeze
    runs as an atexit hook, after Prefect's log and event workers have drained (threading's exit hooks
    run before atexit's), so nothing the server needs is lost; later garbage is still collected.
    """
    atexit.register(gc.freeze)


def lifecycle_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The CLI's text and JSON for one run report (also each job of a sweep)."""
    verdict = "promoted" if report["promoted"] else report["promotion"]
    failed = [f"  - {g['name']}: {g['reason']}" for g in report["gates"]["gates"] if not g["passed"]]
    text = "\n".join(
        [
            f"run {report['status']}: bundle {report['bundle']} {verdict}",
            "  " + ", ".join(f"{k} {v:.4f}" for k, v in report["metrics"].items() if k in ("auc", "pr_auc", "brier")),
            _selection_line(report),
            f"  trained on {trained_on_text(report['trained_on'])}",
            *failed,
            f"report: {report['run_dir']}/gate_report.md",
        ]
    )
    keys = (
        "status",
        "run_dir",
        "bundle",
        "promoted",
        "promotion",
        "previous_champion",
        "model_family",
        "selection_metric",
        "selection",
        "trained_on",
        "metrics",
        "gates",
        "scoring",
    )
    return {"text": text, **{k: report[k] for k in keys}, "report": json.loads(json.dumps(report["rows"]))}

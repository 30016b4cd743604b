"""`keel run` for `task: recommendation`: validate -> examples -> two-tower + index -> candidates
-> ranker -> re-rank -> evaluate vs same-run baselines -> gate -> register -> batch top-K.

The StreamRec counterpart of flows/lifecycle.py, with the same run directory, reports and
CLI summary; every step is a call into pipeline/recsys/system.py. A failed gate registers
the bundle (marked gate-failed, so the report can be reproduced) but does not promote it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.evaluate import gate
from flows.train import fingerprint
from flows.validate import check_contract, write_outputs
from pipeline.contracts.result import ContractResult
from pipeline.data.errors import DataSourceError, TrainingDataError
from pipeline.data.prepare import load_frame
from pipeline.fairness.sections import Sections, recommendation_sections
from pipeline.fairness.sections import render_markdown as render_sections
from pipeline.gates.evaluate import GateReport
from pipeline.gates.report import render_gates
from pipeline.recsys import system
from pipeline.recsys.examples import RecExamples
from pipeline.recsys.online_features import publish_online_features
from pipeline.recsys.package import write_system_bundle
from pipeline.recsys.refit import refit_examples, refit_info, refit_recommender, refit_spec
from pipeline.recsys.report import render_summary
from pipeline.registry import BundleStore, promote, save_bundle
from pipeline.registry.home import spec_store
from pipeline.reports.artifact import publish_markdown
from pipeline.runs import RunDir, code_version, create_run_dir
from pipeline.spec.load import LoadedSpec, load_spec
from pipeline.spec.schema import Spec


def validate_log(spec: Spec, base_dir: Path, run: RunDir) -> tuple[ContractResult, dict[str, str]]:
    """The churn path's contract step on the interaction log; quarantined rows go to quarantine.parquet."""
    result = check_contract.fn(load_frame(spec, base_dir), spec)
    outputs = write_outputs.fn(result, run)
    if not result.ok:
        raise TrainingDataError(f"the interaction log breaks its contract: {result.policy_reason}")
    return result, outputs


def examples_step(spec: Spec, accepted: pd.DataFrame, base_dir: Path, run: RunDir):
    """Side tables, the split and every input check, so bad input fails before any model trains."""
    tables = system.load_side_tables(spec, base_dir)
    ex = system.make_examples(spec, accepted, tables)
    if len(ex.quarantine):
        frame = ex.quarantine.astype({c: "string" for c in ex.quarantine.columns if ex.quarantine[c].dtype == object})
        frame.to_parquet(run / "quarantine_examples.parquet", index=False)
    system.check_inputs(spec, tables, accepted)
    builder = system.feature_builder(spec, tables, ex)
    if spec.ranker is not None:
        system.ranker_features(spec, builder)
    attribute = system.diversity_attribute(spec, tables, ex)
    return tables, ex, builder, attribute


@task(cache_policy=NO_CACHE)
def inputs_task(spec: Spec, base_dir: Path, run: RunDir) -> dict[str, Any]:
    """Validate the log against its contract and place it (examples, side tables, features).

    Bad input (an empty log, a missing column) is returned, not raised: raised inside Prefect,
    it would be logged with a traceback, and the CLI promises a one-line reason (exit 1/2).
    """
    try:
        contract, outputs = validate_log(spec, base_dir, run)
        tables, ex, builder, attribute = examples_step(spec, contract.accepted, base_dir, run)
    except (TrainingDataError, DataSourceError) as exc:
        return {"error": exc}
    return {
        "contract": contract,
        "outputs": outputs,
        "tables": tables,
        "ex": ex,
        "builder": builder,
        "attribute": attribute,
    }


@task(cache_policy=NO_CACHE)
def fit_retrieval(spec: Spec, accepted: pd.DataFrame, tables: system.RecTables, ex: RecExamples):
    """The declared sources; the two-tower (and its index) only when one is merged (system.needs_two_tower)."""
    model = index = None
    if system.needs_two_tower(spec):
        model = system.fit_two_tower(spec, accepted, tables, ex)
        index = system.build_index(spec, model)
    sources = spec.retrieval.sources if spec.retrieval is not None else None
    return model, index, system.Retrieval.fit(model, index, ex, spec.model.candidates, sources)


@task(cache_policy=NO_CACHE)
def fit_ranker(spec: Spec, inputs: dict[str, Any], retrieval: system.Retrieval) -> system.Recommender:
    ranking = system.train_ranker(spec, inputs["builder"], retrieval, inputs["ex"], spec.data.seed)
    attribute, exposure = inputs["attribute"]
    cold = system.cold_start_for(spec, inputs["tables"], inputs["ex"], retrieval)
    return system.Recommender(spec, retrieval, inputs["builder"], ranking, attribute, exposure, cold_start=cold)


@task(cache_policy=NO_CACHE)
def fairness_task(
    spec: Spec, recommender: system.Recommender, ex: RecExamples, tables: system.RecTables, base_dir: Path, run: RunDir
) -> Sections:
    """Exposure and user-side fairness of the final lists, the exposure guarantee's effect, the causal ATE."""
    if spec.fairness is None and spec.causal is None:
        return Sections()
    try:
        return recommendation_sections(spec, recommender, ex, tables, base_dir, run.path)
    except DataSourceError as exc:  # a group column the tables lack: bad input, said in one line
        return Sections(notes=[f"fairness/causal not evaluated: {exc}"])


@task(cache_policy=NO_CACHE)
def evaluate_task(spec: Spec, recommender: system.Recommender, ex: RecExamples):
    return system.evaluate(spec, recommender, ex, spec.evaluation.top_k)


@task(cache_policy=NO_CACHE)
def register(
    loaded: LoadedSpec,
    model,
    index,
    recommender: system.Recommender,
    tables: system.RecTables,
    ex: RecExamples,
    evaluation: dict[str, Any],
    gate_report: GateReport,
    run: RunDir,
    store: BundleStore,
    sweep: dict[str, Any] | None = None,
    hold: bool = False,
    refit: dict[str, Any] | None = None,
) -> str:
    """One bundle, passed or not; promoted to champion only when every blocking gate passed and it is
    not held (a sweep job, or a retrain whose staged rollout will promote it)."""
    spec = loaded.spec
    metrics = {"test": evaluation["metrics"], "stages": evaluation["stages"], "gates": gate_report.to_dict()}
    with tempfile.TemporaryDirectory(prefix="keel-recsys-") as tmp:
        write_system_bundle(Path(tmp), loaded, model, index, recommender, tables, ex, metrics)
        ref = save_bundle(
            spec.name,
            Path(tmp),
            spec_sha256=loaded.sha256,
            data_fingerprint=_fingerprint(ex),
            code_version=code_version(),
            features=[*spec.model.features, *spec.model.item_features],
            metrics=evaluation["metrics"],
            gate_passed=gate_report.passed,
            extra={
                "family": _family(recommender.retrieval),
                "run_dir": str(run.path),
                "ranker_used": recommender.ranking.ranker is not None,
                "trained_on": (refit or {}).get("parts", "none"),
                **({"sweep": sweep["id"]} if sweep else {}),
            },
            store=store,
        )
    # online features go to Redis (when configured) before the bundle can become champion
    publish_online_features(spec, ref.tag, recommender.builder, ex.user_map.ids, ex.item_map.ids)
    if gate_report.passed and not hold and sweep is None:
        promote(spec.name, ref.tag, reason=f"gates passed in {run.path.name}", store=store)
    return ref.tag


@task(cache_policy=NO_CACHE)
def batch_task(
    spec: Spec, recommender: system.Recommender, ex: RecExamples, run: RunDir, store: BundleStore, tag: str
) -> dict[str, Any]:
    assert spec.data.user and spec.data.item
    if spec.runtime.executor == "dask":  # user chunks on the workers, one Parquet dataset (ADR 0024)
        from pipeline.distributed.topk import batch_top_k

        return batch_top_k(spec, ex, run, store, tag)  # the registered bundle, rebuilt on each worker
    return system.batch_top_k(
        recommender,
        ex,
        system.all_positive_matrix(ex),
        spec.evaluation.top_k,
        run / "recommendations.parquet",
        spec.data.user,
        spec.data.item,
    )


@flow(name="keel-run-recsys", log_prints=True)
def recsys_flow(
    spec_path: str,
    overrides: list[str] | None = None,
    conf_dirs: list[str] | None = None,
    sweep: dict[str, Any] | None = None,
    promote_on_pass: bool = True,
) -> dict:
    """One run. A sweep job (`sweep` set) registers but never promotes: docs/adr/0009-sweeps.md.
    promote_on_pass=False (a triggered retrain of a spec with a rollout): register only; the
    staged rollout makes it champion (flows/schedule.py)."""
    loaded = load_spec(spec_path, overrides or [], [Path(d) for d in conf_dirs or []])
    spec = loaded.spec
    run = create_run_dir(loaded, "run")
    store = _store(loaded)
    inputs = inputs_task(spec, loaded.base_dir, run)
    if "error" in inputs:
        return {"error": inputs["error"], "run_dir": str(run.path)}
    contract, outputs, tables, ex = inputs["contract"], inputs["outputs"], inputs["tables"], inputs["ex"]
    model, index, retrieval = fit_retrieval(spec, contract.accepted, tables, ex)
    recommender = fit_ranker(spec, inputs, retrieval)
    metrics, stages, diversity = evaluate_task(spec, recommender, ex)
    baseline_fits = diversity.pop("baselines", {})
    metrics = {k: v for k, v in system.finite(metrics).items() if v is not None}
    too_few = system.too_few_users(spec, ex, metrics)  # below evaluation.min_users: gates say "insufficient"
    sections = fairness_task(spec, recommender, ex, tables, loaded.base_dir, run)
    metrics |= sections.metrics()  # gate-able by name, stored for vs champion / baseline
    gated = {k: v for k, v in metrics.items() if k not in too_few}
    insufficient = sections.insufficient() | too_few
    same_run = {name: stages[name] for name in baseline_fits if name in stages}  # vs: baseline with a name
    gate_report, champion_tag = gate(spec, gated, store, insufficient, evidence=sections.evidence(), same_run=same_run)
    evaluation = {"metrics": metrics, "stages": stages}
    hold = sweep is not None or not promote_on_pass
    # evaluation.refit: the chosen configuration refit on the full history; the bundle and batch lists come from it
    served_ex, served_model, served_index, served = ex, model, index, recommender
    if spec.evaluation.refit != "none":
        served_ex = refit_examples(ex, spec.evaluation.refit)
        refit_with = refit_spec(spec, model)  # an early-stopped two-tower: its best epoch count
        served_model, served_index, served_retrieval = fit_retrieval(refit_with, contract.accepted, tables, served_ex)
        served = refit_recommender(spec, tables, served_ex, served_retrieval, recommender)
    refit = refit_info(ex, spec.evaluation.refit, recommender.ranking.ranker is not None)
    bundle = (served_model, served_index, served, tables, served_ex)
    tag = register(loaded, *bundle, evaluation, gate_report, run, store, sweep, hold, refit)
    promoted = gate_report.passed and not hold
    scoring = batch_task(spec, served, ex, run, store, tag) if promoted else {}
    report = {
        "spec_name": spec.name,
        "spec_sha256": loaded.sha256,
        "task": spec.task,
        "run_dir": str(run.path),
        "status": "ok" if gate_report.passed else "failed",
        "bundle": tag,
        "promoted": promoted,
        "promotion": "promoted to champion" if promoted else _held(gate_report.passed, sweep, promote_on_pass),
        "previous_champion": champion_tag,
        "model_family": _family(retrieval),
        "selection_metric": spec.selection.metric or "ndcg@10",
        "selection": [],
        "sweep": sweep,
        "rows": {
            "in": contract.rows_in,
            "quarantined": contract.rows_quarantined,
            **{f"examples_{k}": v for k, v in ex.counts().items()},
            "quarantine_reasons": ex.quarantine["reason"].value_counts().to_dict() if len(ex.quarantine) else {},
        },
        "split": {"method": ex.split, "valid_start": str(ex.valid_start), "test_start": str(ex.test_start)},
        "evaluated": system.evaluated_users(spec, ex),
        "refit": refit,
        "metrics": metrics,
        "stages": {name: system.finite(values) for name, values in stages.items()},
        "baselines": system.baseline_margins(stages, list(baseline_fits)),
        "baseline_fits": baseline_fits,
        "retrieval": {
            "sources": list(retrieval.names),
            "weights": list(retrieval.weights),
            "candidates_per_user": retrieval.k,
            "failed_sources": dict(retrieval.failures),
            **_two_tower_facts(spec, model),
        },
        "ranker": recommender.ranking.info,
        "diversity": diversity,
        "gates": gate_report.to_dict(),
        "scoring": scoring,
        "outputs": outputs,
        "fairness_causal": sections.to_dict() if sections.declared else None,
    }
    parts = "two_tower + FAISS" if model is not None else " + ".join(retrieval.names)
    ranked = "ranker" if recommender.ranking.ranker is not None else "merged order, the ranker not used"
    facts = [f"bundle `{tag}` ({parts} + {ranked}); previous champion: {champion_tag or 'none'}"]
    title = f"Gate report — {spec.name} ({tag})"
    markdown = render_gates(gate_report, title, report["promotion"], promoted, facts) + render_summary(report)
    markdown += render_sections(sections)
    run.write_json("run_report.json", report)
    run.write_text("gate_report.md", markdown)
    publish_markdown(markdown, f"{spec.name}-gates", "Keel recommendation report", run.path)
    if sweep and gate_report.passed:  # kept in memory (not in the report file) for `--promote-best`
        report["batch_after_promotion"] = lambda: batch_task(spec, served, ex, run, store, tag)
    return report


def _family(retrieval: system.Retrieval) -> str:
    """`two_tower` when the towers are trained, else the merged sources (e.g. item_knn+popularity)."""
    return "two_tower" if retrieval.has_two_tower else "+".join(retrieval.names)


def _two_tower_facts(spec: Spec, model: Any) -> dict[str, Any]:
    """The two-tower's training curve for the report; nothing when retrieval.sources declares no two-tower."""
    if model is None:
        return {"two_tower": "not trained (retrieval.sources declares no two_tower source)"}
    return {
        "two_tower_positives": spec.model.positives,
        "index": spec.model.index.type,
        "two_tower_epochs": [round(h["loss"], 4) for h in model.history],
        "two_tower_valid_ndcg@10": [round(h["valid"], 4) for h in model.history if "valid" in h],
        "two_tower_best_epoch": model.best_epoch,
    }


def _held(passed: bool, sweep: dict[str, Any] | None, promote_on_pass: bool = True) -> str:
    if not passed:
        return "NOT promoted (a gate said no)"
    if not sweep:
        return "NOT promoted (a gate said no)" if promote_on_pass else "gates passed, held for the staged rollout"
    return f"gates passed, held: sweep job {sweep['job']} of {sweep['jobs']} (only --promote-best promotes)"


def _store(loaded: LoadedSpec) -> BundleStore:
    return spec_store(loaded.spec)


def _fingerprint(ex: RecExamples) -> str:
    frame = pd.DataFrame({"u": ex.train.users, "i": ex.train.items, "t": ex.train.times, "p": ex.train.positive})
    return fingerprint(frame)


def run_recsys(loaded: LoadedSpec, promote_on_pass: bool = True) -> dict[str, Any]:
    conf_dirs = [str(d) for d in loaded.conf_dirs]
    report = recsys_flow(str(loaded.path), loaded.overrides, conf_dirs, None, promote_on_pass)
    if "error" in report:
        raise report["error"]  # outside Prefect: the CLI prints the reason, exit 1 (data) or 2 (input)
    return recsys_summary(report)


def recsys_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The CLI's text and JSON (last line with --json): metrics, baselines, gate verdicts."""
    verdict = "promoted" if report["promoted"] else report["promotion"]
    failed = [f"  - {g['name']}: {g['reason']}" for g in report["gates"]["gates"] if not g["passed"]]
    shown = [n for n in report["metrics"] if n.split("@")[0] in ("recall", "hit", "ndcg", "mrr", "coverage")]
    base = report["baselines"]
    text = "\n".join(
        [
            f"run {report['status']}: bundle {report['bundle']} {verdict}",
            "  " + ", ".join(f"{k} {report['metrics'][k]:.4f}" for k in shown if "@" in k),
            "  baselines ndcg@10: "
            + ", ".join(f"{n} {m['ndcg@10']['baseline']:.4f}" for n, m in base.items())
            + f"; ranker {'used' if report['ranker'].get('used') else 'not used'}",
            *failed,
            f"  served: {report['refit']['what']}",
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
        "metrics",
        "baselines",
        "gates",
        "scoring",
        "ranker",
        "refit",
        "evaluated",
    )
    return {"text": text, **{k: report[k] for k in keys}, "report": {"rows": report["rows"]}}


__all__ = ["recsys_flow", "recsys_summary", "run_recsys"]

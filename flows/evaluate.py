"""Evaluation tasks: test metrics, the champion and historical baseline, the gate report."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from pipeline.data.errors import DataSourceError
from pipeline.data.prepare import Prepared
from pipeline.fairness.sections import Sections, classification_sections
from pipeline.gates.champion import rescore_champion
from pipeline.gates.evaluate import ChampionReference, GateReport, evaluate_gates
from pipeline.gates.intervals import classification_evidence, cv_evidence
from pipeline.metrics import calibration_table, classification_metrics, lift_by_decile
from pipeline.models import TabularModel
from pipeline.registry import BundleStore, RegistryError
from pipeline.registry.aliases import aliases, history
from pipeline.spec.schema import Spec

BASELINE_BUNDLES = 5
"""The historical baseline: median of the last N gate-passed bundles (catches quiet degradation).

Sweep trials count only once promoted, so a sweep never gates against its own siblings."""


@task(cache_policy=NO_CACHE)
def evaluate_model(spec: Spec, model: TabularModel, data: Prepared) -> dict[str, Any]:
    test = data.splits["test"]
    y = data.labels("test", spec.data)
    p = model.predict_proba(test[model.features])
    return {
        "metrics": classification_metrics(y, p, spec.evaluation.threshold, spec.evaluation.top_k),
        "calibration": calibration_table(y, p),
        "lift": lift_by_decile(y, p),
        "test_rows": len(test),
        "test_positive_rate": float(y.mean()),
    }


def reference_metrics(spec: Spec, store: BundleStore) -> tuple[dict | None, dict | None, str | None]:
    """(champion metrics, baseline metrics, champion tag) from the registry; None when absent."""
    try:
        champion_tag = aliases(spec.name, store=store).get("champion")
        bundles = [b for b in store.list(spec.name) if b.manifest.gate_passed]
        if any(b.manifest.extra.get("sweep") for b in bundles):
            # sweep trials are not history: only the ones ever promoted count (docs/adr/0009-sweeps.md)
            ever = {e["to"] for e in history(spec.name, store=store) if e.get("alias") == "champion"}
            bundles = [b for b in bundles if not b.manifest.extra.get("sweep") or b.tag in ever]
    except RegistryError:
        return None, None, None
    champion = next((b.manifest.metrics for b in bundles if b.tag == champion_tag), None)
    recent = [b.manifest.metrics for b in bundles[:BASELINE_BUNDLES]]
    baseline = None
    if recent:
        names = set.intersection(*(set(m) for m in recent))
        baseline = {
            name: statistics.median(float(m[name]) for m in recent)
            for name in names
            if all(isinstance(m[name], int | float) for m in recent)
        }
    return champion, baseline, champion_tag


def promoted_history(spec: Spec, store: BundleStore, limit: int = 100) -> list[dict[str, Any]]:
    """Metrics of the models promoted to champion, newest first (`vs: baseline` gates pick their window).

    Rolled-back champions are left out: a model that failed in production is no yardstick.
    """
    try:
        events = history(spec.name, store=store)
    except RegistryError:
        return []
    failed = {e["from"] for e in events if e.get("action") == "rollback" and e.get("alias") == "champion"}
    tags = [e["to"] for e in reversed(events) if e.get("action") == "promote" and e.get("alias") == "champion"]
    metrics = []
    for tag in [t for t in dict.fromkeys(tags) if t and t not in failed][:limit]:
        try:
            metrics.append(store.get(tag).manifest.metrics)
        except RegistryError:  # a deleted bundle leaves a gap, not an error
            continue
    return metrics


@task(cache_policy=NO_CACHE)
def gate(
    spec: Spec,
    metrics: dict[str, Any],
    store: BundleStore,
    insufficient: dict[str, str] | None = None,
    data: Prepared | None = None,
    model: TabularModel | None = None,
    evidence: dict[str, Any] | None = None,
    selection: list[dict[str, Any]] | None = None,
    same_run: dict[str, dict[str, float]] | None = None,
) -> tuple[GateReport, str | None]:
    """`insufficient`: fairness/causal metrics without enough data, reported as such (docs/adr/0015).

    `data` (a tabular run's prepared splits) and `model` (the challenger): `vs: champion` gates compare
    with the champion bundle re-scored on these test rows (less any it was trained on, for both), not
    with its recorded metrics (docs/adr/0025-champion-rescored.md).

    `evidence` (e.g. `Sections.evidence()`: fairness intervals and groups left out) joins the test
    metrics' own (a bootstrap of the test rows when `data` and `model` are given); `selection` (the
    cross-validation table) is what `source: cv` gates read (docs/adr/0027-gates-that-know-their-evidence.md).
    `same_run` (recommendation: each same-run baseline's metrics on the same users) is what `vs: baseline`
    gates with a `baseline.name` compare with.
    """
    champion, baseline, champion_tag = reference_metrics(spec, store)
    ev = slice_evidence(spec, model, data) | dict(evidence or {})
    train_rows = len(data.splits["train"]) if data is not None else None
    cv = cv_evidence(selection or [], train_rows, spec.evaluation.confidence)
    promoted = promoted_history(spec, store)
    rescored = champion_on_test(spec, store, champion_tag, data)
    subset = None
    if rescored is not None and rescored.keep is not None and model is not None and data is not None:
        # the champion was trained on some of these rows: the challenger is measured on the rest too
        test = data.splits["test"]
        p = model.predict_proba(test[model.features])[rescored.keep]
        y = data.labels("test", spec.data)[rescored.keep]
        subset = classification_metrics(y, p, spec.evaluation.threshold, spec.evaluation.top_k)
    report = evaluate_gates(
        spec.gates,
        metrics,
        spec.task,
        champion,
        baseline,
        promoted,
        insufficient=insufficient,
        champion_reference=rescored,
        challenger_on_compared_rows=subset,
        evidence=ev,
        cv=cv,
        evaluation=spec.evaluation,
        same_run=same_run,
    )
    return report, champion_tag


def slice_evidence(spec: Spec, model: TabularModel | None, data: Prepared | None) -> dict[str, Any]:
    """Every classification metric's bootstrap interval on the test rows, with their rows and positives."""
    if model is None or data is None or spec.task != "binary_classification":
        return {}
    test = data.splits["test"]
    y, p = data.labels("test", spec.data), model.predict_proba(test[model.features])
    e = spec.evaluation
    kwargs = {"replicates": e.bootstrap, "confidence": e.confidence, "seed": spec.data.seed}
    return classification_evidence(y, p, e.threshold, e.top_k, **kwargs)


def champion_on_test(
    spec: Spec, store: BundleStore, champion_tag: str | None, data: Prepared | None
) -> ChampionReference | None:
    """The champion re-scored on the challenger's test rows, when a `vs: champion` gate needs it."""
    if data is None or champion_tag is None or not any(g.vs == "champion" for g in spec.gates.values()):
        return None
    test = data.splits["test"]
    labels = data.labels("test", spec.data)
    try:
        ref = store.get(champion_tag)
    except RegistryError as exc:
        return ChampionReference(champion_tag, None, len(test), int(labels.sum()), "test", False, str(exc))
    return rescore_champion(spec, ref, test, labels, "test")


@task(cache_policy=NO_CACHE)
def fairness_causal(spec: Spec, model: TabularModel, data: Prepared, base_dir: Path, run_path: Path) -> Sections:
    """The spec's fairness (test split, by group) and causal sections; empty when neither is declared."""
    if spec.fairness is None and spec.causal is None:
        return Sections()
    test = data.splits["test"]
    p = model.predict_proba(test[model.features])
    try:
        return classification_sections(spec, data.labels("test", spec.data), p, test, base_dir, run_path)
    except DataSourceError as exc:  # e.g. a group column the data lacks: said in the report, gates on it fail
        return Sections(notes=[f"fairness/causal not evaluated: {exc}"])

"""Evaluation tasks: test metrics, the champion and historical baseline, the gate report."""

from __future__ import annotations

import statistics
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from pipeline.data.prepare import Prepared
from pipeline.gates.evaluate import GateReport, evaluate_gates
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


@task(cache_policy=NO_CACHE)
def gate(spec: Spec, metrics: dict[str, Any], store: BundleStore) -> tuple[GateReport, str | None]:
    champion, baseline, champion_tag = reference_metrics(spec, store)
    return evaluate_gates(spec.gates, metrics, spec.task, champion, baseline), champion_tag

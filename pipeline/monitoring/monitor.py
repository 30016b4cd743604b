"""`monitor()`: one day's data against a reference -> a MonitorReport (the facts, no decisions).

Pure: no files, no Prefect, no registry. The flow (flows/monitor.py) loads the data and
the reference, calls this, writes the report and charts; triggers read the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from pipeline.contracts.profile import ReferenceProfile
from pipeline.data.derived import add_derived, derived_lineage
from pipeline.data.errors import DataSourceError
from pipeline.monitoring.drift import MISSING, SHIFTED, Thresholds, feature_drift, numeric_array
from pipeline.monitoring.history import binary_metrics, ranking_metrics
from pipeline.monitoring.lineage import group_shifts
from pipeline.monitoring.reference import MonitorReference
from pipeline.monitoring.report import MonitorReport
from pipeline.monitoring.segments import diagnose
from pipeline.monitoring.units import suspected_unit_change
from pipeline.spec.schema import Spec


@dataclass
class Outcomes:
    """Joined outcomes: the label that arrived later and the score served for the same row."""

    label: np.ndarray
    score: np.ndarray
    group: np.ndarray | None = None  # user / request id: enables CTR and NDCG@k
    bundle: str | None = None


def thresholds_of(spec: Spec) -> Thresholds:
    m = spec.monitoring
    return Thresholds(m.psi_warning, m.psi_alert, m.psi_critical)


def monitored_features(spec: Spec) -> list[str]:
    """The spec's monitoring.features, else model features plus the columns derived features read."""
    known = {*spec.contract.columns, *spec.features.derived}
    if spec.monitoring.features:
        unknown = [f for f in spec.monitoring.features if f not in known]
        if unknown:
            raise DataSourceError(
                f"monitoring.features names {', '.join(unknown)}, which is neither a contract column nor a derived "
                f"feature (known: {', '.join(sorted(known))})."
            )
        return list(dict.fromkeys(spec.monitoring.features))
    lineage = derived_lineage(spec.features.derived)
    roles = {spec.data.entity_id, spec.data.label, spec.data.timestamp}
    out: list[str] = []
    for feature in spec.model.features:
        for name in [*lineage.get(feature, []), feature]:
            if name in known and name not in roles and name not in out:
                out.append(name)
    return out


def monitor(
    spec: Spec,
    current: pd.DataFrame,
    reference: MonitorReference | ReferenceProfile,
    outcomes: Outcomes | None = None,
    as_of: date | None = None,
    threads: int | None = None,
) -> MonitorReport:
    """PSI per feature with levels, lineage groups, segment diagnosis, unit changes, performance metrics."""
    if isinstance(reference, ReferenceProfile):
        reference = MonitorReference(reference, source="reference profile")
    as_of = as_of or datetime.now(UTC).date()
    thresholds = thresholds_of(spec)
    features = monitored_features(spec)
    frame, absent_inputs = _with_derived(spec, current)
    drifts = feature_drift(reference.profile, frame, features, thresholds, threads)
    for name, missing in absent_inputs.items():
        if name in drifts:
            drifts[name].message = f"derived from {', '.join(missing)}, absent from the current data"
    groups = group_shifts(drifts, spec.features.derived)
    shifted = [n for n, d in drifts.items() if d.level in SHIFTED]
    segments = diagnose(reference, frame, shifted, thresholds) if shifted else []
    units = [
        change
        for n in shifted
        if n in reference.profile.numeric
        and (change := suspected_unit_change(n, reference.profile.numeric[n], numeric_array(frame[n]))) is not None
    ]
    for change in units:
        drifts[change.feature].message = f"looks like a unit change ({change.factor}: {change.meaning})"
    return MonitorReport(
        spec_name=spec.name,
        as_of=as_of,
        rows=len(current),
        reference_source=reference.source,
        reference_sources={n: reference.sources.get(n, reference.source) for n in features},
        thresholds=thresholds,
        features=drifts,
        groups=groups,
        segments=segments,
        unit_changes=units,
        metrics=_metrics(spec, outcomes),
        bundle=outcomes.bundle if outcomes else None,
        problems=[d.message for d in drifts.values() if d.level == MISSING] + _empty(current),
    )


def _empty(current: pd.DataFrame) -> list[str]:
    return ["the current data has no rows"] if current.empty else []


def _with_derived(spec: Spec, current: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Current data with text numerics parsed and every computable derived feature added."""
    frame = current
    text = [
        c
        for c, col in spec.contract.columns.items()
        if col.dtype in ("int", "float") and c in frame.columns and not pd.api.types.is_numeric_dtype(frame[c].dtype)
    ]
    if text:
        frame = frame.assign(**{c: numeric_array(frame[c]) for c in text})
    lineage = derived_lineage(spec.features.derived)
    absent = {n: [c for c in roots if c not in frame.columns] for n, roots in lineage.items()}
    absent = {n: cols for n, cols in absent.items() if cols}
    computable = {n: f for n, f in spec.features.derived.items() if n not in absent and n not in frame.columns}
    if computable:
        frame = add_derived(frame, computable)
    return frame, absent


def _metrics(spec: Spec, outcomes: Outcomes | None) -> dict[str, float]:
    if outcomes is None:
        return {}
    k = spec.evaluation.top_k
    if outcomes.group is not None:
        return ranking_metrics(outcomes.group, outcomes.label, outcomes.score, min(k, 20))
    return binary_metrics(outcomes.label, outcomes.score, spec.evaluation.threshold, k)

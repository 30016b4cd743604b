"""The spec's `causal` section as one evaluation: load the logged table, estimate, test the experiment.

Gate-able metrics (pipeline.spec.catalog): ate (the primary estimator), ate_<estimator>,
ate_<estimator>_low / _high (interval bounds), ab_effect, ab_effect_low / _high,
ab_p_value, ab_mde. Too few treated or untreated rows (below `min_group_size`) leaves the
metric undefined and named in `insufficient`, so a gate on it reports "insufficient data".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.causal.estimators import estimate_effects
from pipeline.causal.experiment import ab_test
from pipeline.data.errors import DataSourceError
from pipeline.data.sources import load_source
from pipeline.fairness.result import INSUFFICIENT
from pipeline.spec.schema import CausalSpec


@dataclass
class CausalReport:
    metrics: dict[str, float | None] = field(default_factory=dict)
    insufficient: dict[str, str] = field(default_factory=dict)
    estimates: list[dict[str, Any]] = field(default_factory=list)
    experiment: dict[str, Any] | None = None
    rows: dict[str, int] = field(default_factory=dict)
    naive_over_causal: float | None = None

    def set(self, name: str, value: float | None, why: str = "") -> None:
        clean = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        self.metrics[name] = clean
        if clean is None:
            self.insufficient[name] = why or INSUFFICIENT

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": dict(self.metrics),
            "insufficient": dict(self.insufficient),
            "estimates": list(self.estimates),
            "experiment": self.experiment,
            "rows": dict(self.rows),
            "naive_over_causal": self.naive_over_causal,
        }


def causal_evaluation(spec: CausalSpec, base_dir: Path) -> CausalReport:
    frame = load_source(spec.data, base_dir)
    return analyse(frame, spec)


def analyse(frame: pd.DataFrame, spec: CausalSpec) -> CausalReport:
    """Estimators on the logged-policy rows; A/B on the experiment's arms (when declared)."""
    needed = [spec.treatment, spec.outcome, spec.propensity, *spec.covariates]
    if spec.experiment is not None:
        needed.append(spec.experiment.column)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataSourceError(f"causal: columns {missing} are not in the logged table (columns: {list(frame)})")
    report = CausalReport()
    logged = frame
    if spec.experiment is not None:
        arm = frame[spec.experiment.column].astype(str)
        in_experiment = arm.isin([spec.experiment.treatment, spec.experiment.holdout])
        logged = frame[~in_experiment.to_numpy()]
        _experiment(report, frame, arm, spec)
    _observational(report, logged.reset_index(drop=True), spec)
    return report


def _observational(report: CausalReport, frame: pd.DataFrame, spec: CausalSpec) -> None:
    t = pd.to_numeric(frame[spec.treatment], errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(frame[spec.outcome], errors="coerce").to_numpy(dtype=float)
    e = pd.to_numeric(frame[spec.propensity], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(t) & np.isfinite(y) & np.isfinite(e) & frame[spec.covariates].notna().all(axis=1).to_numpy()
    n_treated, n_control = int((t[keep] == 1).sum()), int((t[keep] == 0).sum())
    report.rows = {"logged": len(frame), "used": int(keep.sum()), "treated": n_treated, "untreated": n_control}
    names = [*spec.estimators]
    if spec.primary not in names:
        names.append(spec.primary)
    if min(n_treated, n_control) < spec.min_group_size:
        why = f"{INSUFFICIENT}: {n_treated} treated / {n_control} untreated rows, {spec.min_group_size} needed in each"
        for name in ["ate", *(f"ate_{n}" for n in names)]:
            report.set(name, None, why)
        return
    estimates = estimate_effects(
        t[keep],
        y[keep],
        e[keep],
        frame.loc[keep, spec.covariates] if spec.covariates else None,
        estimators=names,
        clip=spec.clip,
        replicates=spec.bootstrap,
        confidence=spec.confidence,
        seed=spec.seed,
    )
    for name, estimate in estimates.items():
        report.estimates.append(estimate.to_dict())
        report.set(f"ate_{name}", estimate.value)
        if estimate.low is not None:
            report.set(f"ate_{name}_low", estimate.low)
            report.set(f"ate_{name}_high", estimate.high)
    report.set("ate", estimates[spec.primary].value)
    naive, primary = report.metrics.get("ate_naive"), estimates[spec.primary].value
    if naive is not None and primary:
        report.naive_over_causal = naive / primary


def _experiment(report: CausalReport, frame: pd.DataFrame, arm: pd.Series, spec: CausalSpec) -> None:
    exp = spec.experiment
    assert exp is not None
    y = pd.to_numeric(frame[spec.outcome], errors="coerce")
    treated = y[(arm == exp.treatment).to_numpy()].dropna().to_numpy(dtype=float)
    held = y[(arm == exp.holdout).to_numpy()].dropna().to_numpy(dtype=float)
    result = ab_test(treated, held, exp.alpha, exp.power)
    report.experiment = result.to_dict()
    names = ("ab_effect", "ab_effect_low", "ab_effect_high", "ab_p_value", "ab_mde")
    if min(len(treated), len(held)) < spec.min_group_size:
        why = f"{INSUFFICIENT}: arms of {len(treated)} / {len(held)} rows, {spec.min_group_size} needed in each"
        for name in names:
            report.set(name, None, why)
        return
    for name, value in zip(names, (result.effect, result.low, result.high, result.p_value, result.mde), strict=True):
        report.set(name, value)

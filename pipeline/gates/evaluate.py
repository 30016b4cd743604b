"""Gates: the spec's pass/fail rules applied to a challenger's metrics.

A gate is absolute (`min`/`max`) or relative to a reference (`vs: champion` or
`vs: baseline`, with `max_drop` / `max_relative_drop`). Missing, NaN or infinite metrics
fail: no evidence is not a pass (Flagger treats "no values found" the same way). The
evaluation fails closed on its rule too: a NaN or infinite bound (`value < nan` is
False), or a gate with no bound at all, never passes, whatever `keel check` let through.
With no champion or baseline yet, a relative gate passes and says so.

`vs: champion` compares like with like when given a `ChampionReference`: the champion bundle
re-scored on the challenger's own test rows (pipeline/gates/champion.py). A champion that cannot
score them is *not comparable*; the gate's `if_not_comparable` (default block) decides, and a
metric the re-scoring does not compute is not comparable either (never the champion's own
recorded number, measured on other rows). docs/adr/0025-champion-rescored.md.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.spec.catalog import metric_info
from pipeline.spec.schema import BaselineSpec, GateSpec


@dataclass(frozen=True)
class GateResult:
    name: str
    metric: str
    value: float | None
    passed: bool
    blocking: bool
    rule: str
    reason: str
    reference: float | None = None
    insufficient: bool = False  # a fairness/causal metric with too little data: neither a pass nor a silent fail
    comparable: bool | None = None  # vs champion: False when the champion could not be scored on these rows
    reference_rows: int | None = None  # vs champion: the rows the reference was measured on (the challenger's)
    reference_split: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChampionReference:
    """The champion re-scored on the challenger's rows, or why it could not be (comparable False)."""

    tag: str
    metrics: dict[str, Any] | None
    rows: int
    positives: int
    split: str = "test"
    comparable: bool = True
    reason: str = ""
    unseen: dict[str, int] = field(default_factory=dict)  # categories the champion never saw, scored as missing
    left_out: int = 0  # test rows the champion was trained on, left out of the comparison for both models
    keep: Any = field(default=None, repr=False, compare=False)  # boolean mask of the rows compared (None: all)
    note: str = ""

    def describe(self) -> str:
        rows = f"{self.rows:,} {self.split} rows ({self.positives:,} positive)"
        return f"champion {self.tag} re-scored on this run's {rows}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "keep"}


@dataclass
class GateReport:
    results: list[GateResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results if r.blocking)

    @property
    def failed(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "gates": [r.to_dict() for r in self.results]}


def _number(value: Any) -> float | None:
    """A finite float, or None: NaN, infinity, None and non-numbers are no evidence."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _bad_bounds(gate: GateSpec) -> str | None:
    """Why the gate's own rule cannot be applied (fail closed), or None."""
    named = {"min": gate.min, "max": gate.max, "max_drop": gate.max_drop, "max_relative_drop": gate.max_relative_drop}
    for key, bound in named.items():
        if bound is not None and _number(bound) is None:
            return f"bound {key} {bound!r} is not a finite number: the gate cannot pass"
    if gate.vs is None and gate.min is None and gate.max is None:
        return "the gate has no min or max: nothing to check, so it cannot pass"
    if gate.vs is not None and gate.max_drop is None and gate.max_relative_drop is None:
        return f"the gate 'vs: {gate.vs}' has no max_drop or max_relative_drop: it cannot pass"
    return None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def evaluate_gates(
    gates: Mapping[str, GateSpec],
    metrics: Mapping[str, Any],
    task: str,
    champion: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
    insufficient: Mapping[str, str] | None = None,
    champion_reference: ChampionReference | None = None,
    challenger_on_compared_rows: Mapping[str, Any] | None = None,
) -> GateReport:
    """Apply every gate; each result says which rule, the value, the bound and the reference.

    `history` is the promoted models' metrics, newest first: with it, a `vs: baseline` gate
    compares with its own `baseline.window`/`statistic` of that history; without it, with the
    ready-made `baseline` mapping (older callers). `champion_reference`: the champion re-scored
    on the challenger's rows; with it, `vs: champion` uses only that (the `champion` mapping,
    its recorded metrics, is then ignored). When the champion was trained on some of those rows they
    are left out for both: `challenger_on_compared_rows` is the challenger's metrics on the rest.
    """
    report = GateReport()
    for name, gate in gates.items():
        metric = gate.metric or name
        value = _number(metrics.get(metric))
        if insufficient and metric in insufficient and value is None:
            report.results.append(_insufficient(name, metric, gate, insufficient[metric]))
            continue
        broken = _bad_bounds(gate)
        if broken:
            report.results.append(GateResult(name, metric, value, False, gate.blocking, "invalid rule", broken))
            continue
        if gate.vs is None:
            result = _absolute(name, metric, value, gate)
        else:
            info = metric_info(metric, task)
            higher = info.higher_is_better if info else True
            reference = champion if gate.vs == "champion" else baseline
            if gate.vs == "baseline" and history is not None:
                reference = baseline_reference(history, metric, gate.baseline, higher)
            if gate.vs == "champion" and champion_reference is not None:
                subset = challenger_on_compared_rows
                result = _vs_rescored(name, metric, value, gate, champion_reference, higher, subset)
            else:
                result = _relative(name, metric, value, gate, reference, higher)
        report.results.append(result)
    return report


def baseline_reference(
    history: Sequence[Mapping[str, Any]], metric: str, spec: BaselineSpec, higher_is_better: bool = True
) -> dict[str, float] | None:
    """`{metric: value}`: the spec's statistic over the last `window` promoted models that report the metric.

    None when no promoted model reports it (the gate then passes and says there is no baseline yet).
    """
    values = [v for v in (_number(m.get(metric)) for m in history[: spec.window]) if v is not None]
    if not values:
        return None
    if spec.statistic == "best":
        value = max(values) if higher_is_better else min(values)
    elif spec.statistic == "mean":
        value = statistics.fmean(values)
    else:
        value = statistics.median(values)
    return {metric: value}


def _absolute(name: str, metric: str, value: float | None, gate: GateSpec) -> GateResult:
    bounds = [f"{k} {v:g}" for k, v in (("min", gate.min), ("max", gate.max)) if v is not None]
    rule = " and ".join(bounds)
    if value is None:
        return GateResult(name, metric, None, False, gate.blocking, rule, f"{metric} was not computed (no data)")
    too_low = gate.min is not None and value < gate.min
    too_high = gate.max is not None and value > gate.max
    if too_low or too_high:
        bound = f"below min {gate.min:g}" if too_low else f"above max {gate.max:g}"
        return GateResult(name, metric, value, False, gate.blocking, rule, f"{metric} {_fmt(value)} is {bound}")
    return GateResult(name, metric, value, True, gate.blocking, rule, f"{metric} {_fmt(value)} within {rule}")


def _relative(
    name: str,
    metric: str,
    value: float | None,
    gate: GateSpec,
    reference: Mapping[str, Any] | None,
    higher_is_better: bool,
) -> GateResult:
    parts = []
    if gate.max_drop is not None:
        parts.append(f"drop <= {gate.max_drop:g}")
    if gate.max_relative_drop is not None:
        parts.append(f"relative drop <= {gate.max_relative_drop:.1%}")
    window = f"baseline ({gate.baseline.statistic} of last {gate.baseline.window})"
    against = gate.vs if gate.vs == "champion" else window
    rule = f"vs {against}: " + " and ".join(parts)
    if reference is None:
        return GateResult(
            name,
            metric,
            value,
            value is not None,
            gate.blocking,
            rule,
            f"no {gate.vs} yet: nothing to compare with"
            if value is not None
            else f"{metric} was not computed (no data)",
        )
    ref = _number(reference.get(metric))
    if value is None or ref is None:
        missing = "challenger" if value is None else gate.vs
        return GateResult(name, metric, value, False, gate.blocking, rule, f"{metric} missing for the {missing}", ref)
    drop = (ref - value) if higher_is_better else (value - ref)
    relative = drop / abs(ref) if ref else (math.inf if drop > 0 else 0.0)
    too_far = (gate.max_drop is not None and drop > gate.max_drop) or (
        gate.max_relative_drop is not None and relative > gate.max_relative_drop
    )
    verdict = "worse than allowed" if too_far else "within bounds"
    reason = f"{metric} {_fmt(value)} vs {gate.vs} {_fmt(ref)}: drop {drop:+.4g} ({relative:+.1%}), {verdict}"
    return GateResult(name, metric, value, not too_far, gate.blocking, rule, reason, ref)


def _vs_rescored(
    name: str,
    metric: str,
    value: float | None,
    gate: GateSpec,
    champion: ChampionReference,
    higher_is_better: bool,
    challenger_subset: Mapping[str, Any] | None = None,
) -> GateResult:
    """vs the champion re-scored on the same rows; not comparable -> `if_not_comparable` decides."""
    where = {"reference_rows": champion.rows, "reference_split": champion.split}
    if champion.comparable and champion.keep is not None:  # the challenger on the same subset (rows it trained on out)
        value = _number((challenger_subset or {}).get(metric))
    reason = champion.reason
    if champion.comparable and (champion.metrics is None or _number(champion.metrics.get(metric)) is None):
        reason = f"{metric} is not re-computed for the champion on these rows"
    if champion.comparable and not reason:
        result = _relative(name, metric, value, gate, champion.metrics, higher_is_better)
        text = result.reason.replace(f"vs {gate.vs} ", f"vs champion {champion.tag} ", 1)
        text += f"; both on this run's {champion.rows:,} {champion.split} rows"
        if champion.left_out:
            text += f" (the {champion.left_out:,} it was trained on left out)"
        if champion.note:
            text += f" ({champion.note})"
        return GateResult(**{**result.to_dict(), "reason": text, "comparable": True, **where})
    policy = getattr(gate, "if_not_comparable", "block")
    rule = _relative(name, metric, value, gate, None, higher_is_better).rule + f"; if_not_comparable: {policy}"
    passed = policy == "pass" and value is not None
    verdict = "passes (if_not_comparable: pass)" if passed else "blocks (if_not_comparable: block)"
    if value is None:
        verdict = f"{metric} was not computed for the challenger either"
    text = f"not comparable: champion {champion.tag} cannot be scored on this run's {champion.split} rows: {reason}"
    text += f"; {verdict}"
    return GateResult(name, metric, value, passed, gate.blocking, rule, text, None, comparable=False, **where)


def _insufficient(name: str, metric: str, gate: GateSpec, why: str) -> GateResult:
    """Too little data for the metric (e.g. a group below fairness.min_group_size): reported as such,
    blocking only when the gate says `on_insufficient: fail` (docs/adr/0015-fairness-and-causal.md)."""
    blocking = gate.blocking and gate.on_insufficient == "fail"
    rule = f"on_insufficient: {gate.on_insufficient}"
    return GateResult(name, metric, None, False, blocking, rule, f"{metric}: {why}", insufficient=True)


def render_markdown(report: GateReport, title: str) -> str:
    """The gate table without a promotion decision (verdict PASSED / FAILED); see pipeline/gates/report.py."""
    from pipeline.gates.report import render_gates  # report.py imports this module

    return render_gates(report, title)

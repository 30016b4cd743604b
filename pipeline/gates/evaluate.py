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

Every metric gate knows its evidence (`Evidence`): the value's interval (a bootstrap of the test
rows, the fairness bootstrap, or the CV folds with `source: cv`) and the rows/positives it rests
on. `decide_on` picks the number a min/max bound is checked against (the point estimate by
default; for fairness gaps, disparities and equity the cautious side of the interval). Fewer
rows/positives than `min_rows`/`min_positives`, or groups left out for size whose point
estimates would flip a pass, make the gate *insufficient*, never passed; `on_insufficient`
decides whether that blocks. docs/adr/0027-gates-that-know-their-evidence.md.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.spec.catalog import GROUPED_METRICS, metric_info
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
    low: float | None = None  # the value's interval (Evidence), shown beside it
    high: float | None = None
    rows: int | None = None  # what the value rests on: rows (recommendation: users), positives
    positives: int | None = None
    decided_on: str = "point"  # point, lower_bound, upper_bound, or lower_bound/upper_bound (one per bound)
    source: str = "test"  # test slice, or cv (the selected model's folds)
    excluded: tuple[dict[str, Any], ...] = ()  # fairness: groups left out for size, with their point estimates
    suggestion: str = ""  # insufficient: what would give enough evidence

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["excluded"] = [dict(g) for g in self.excluded]
        return out


@dataclass(frozen=True)
class Evidence:
    """What a metric's value rests on: its interval, the rows and positives, how it was measured.

    Fairness metrics also carry the groups left out for size (`excluded`: group, point value, n)
    and the metric's value with them in at those point estimates (`with_excluded`). With
    `source: cv` the gate's value is `value` (the folds' mean), not the test metric.
    """

    low: float | None = None
    high: float | None = None
    rows: int | None = None
    positives: int | None = None
    method: str = ""
    excluded: tuple[Mapping[str, Any], ...] = ()
    with_excluded: float | None = None
    value: float | None = None


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
    if gate.vs is not None and getattr(gate, "decide_on", None) not in (None, "point"):
        return f"decide_on: {gate.decide_on} applies to min/max bounds; 'vs: {gate.vs}' compares point values"
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
    evidence: Mapping[str, Evidence] | None = None,
    cv: Mapping[str, Evidence] | None = None,
    evaluation: Any = None,
    same_run: Mapping[str, Mapping[str, Any]] | None = None,
) -> GateReport:
    """Apply every gate; each result says which rule, the value, the bound and the reference.

    `history` is the promoted models' metrics, newest first: with it, a `vs: baseline` gate
    compares with its own `baseline.window`/`statistic` of that history; without it, with the
    ready-made `baseline` mapping (older callers). `champion_reference`: the champion re-scored
    on the challenger's rows; with it, `vs: champion` uses only that (the `champion` mapping,
    its recorded metrics, is then ignored). When the champion was trained on some of those rows they
    are left out for both: `challenger_on_compared_rows` is the challenger's metrics on the rest.

    `evidence`: metric -> Evidence (interval, rows, positives, groups left out) of the test-slice
    values; `cv`: metric -> Evidence of the selected model's cross-validation (its `value` the
    folds' mean), read by `source: cv` gates; `evaluation` (the spec's) gives the default
    `min_rows` / `min_positives`. `same_run`: baseline name -> its metrics on the same users in this
    run, read by `vs: baseline` gates that name one (a name not there fails closed).
    """
    report = GateReport()
    for name, gate in gates.items():
        metric = gate.metric or name
        source = getattr(gate, "source", "test") or "test"
        ev = (evidence or {}).get(metric)
        value = _number(metrics.get(metric))
        if source == "cv":
            ev = (cv or {}).get(metric)
            if ev is None:
                why = f"source: cv, but no cross-validation measured {metric} in this run"
                hint = "declare selection.cv_folds with candidates (or run it in a sweep), or use source: test"
                report.results.append(_insufficient(name, metric, gate, why, suggestion=hint, source="cv"))
                continue
            value = _number(ev.value)
        if insufficient and metric in insufficient and value is None:
            hint = "more rows in the small groups: a larger data.split.test_fraction or more data"
            hint = hint if is_group_metric(metric) else ""
            why = insufficient[metric]
            report.results.append(_insufficient(name, metric, gate, why, None, ev, hint, source=source))
            continue
        broken = _bad_bounds(gate)
        if broken:
            report.results.append(GateResult(name, metric, value, False, gate.blocking, "invalid rule", broken))
            continue
        short = _too_little(gate, ev, evaluation, source)
        if short is not None and value is not None:
            report.results.append(_insufficient(name, metric, gate, short[0], value, ev, short[1], source=source))
            continue
        if gate.vs is None:
            result = _absolute(name, metric, value, gate, ev, source)
        else:
            info = metric_info(metric, task)
            higher = info.higher_is_better if info else True
            reference = champion if gate.vs == "champion" else baseline
            if gate.vs == "baseline" and history is not None:
                reference = baseline_reference(history, metric, gate.baseline, higher)
            named = getattr(gate.baseline, "name", None) if gate.vs == "baseline" else None
            if named is not None:
                reference = (same_run or {}).get(named)
                if reference is None:  # declared but not fitted (skipped, or not this task): never a pass
                    why = f"no same-run baseline '{named}' in this run: nothing to compare with"
                    report.results.append(GateResult(name, metric, value, False, gate.blocking, "vs baseline", why))
                    continue
            if gate.vs == "champion" and champion_reference is not None:
                subset = challenger_on_compared_rows
                result = _vs_rescored(name, metric, value, gate, champion_reference, higher, subset)
                if champion_reference.comparable and champion_reference.keep is not None:
                    # measured on the rows the champion never saw: the full slice's interval is not this value's
                    ev = Evidence(rows=champion_reference.rows, positives=champion_reference.positives)
            else:
                result = _relative(name, metric, value, gate, reference, higher)
            result = _shown_with(result, ev, source)
        report.results.append(result)
    return report


def _shown_with(result: GateResult, ev: Evidence | None, source: str) -> GateResult:
    """A relative gate decides on point values; its interval and evidence are shown beside them."""
    if ev is None:
        return GateResult(**{**result.to_dict(), "source": source, "excluded": ()})
    extra = {"low": ev.low, "high": ev.high, "rows": ev.rows, "positives": ev.positives, "source": source}
    return GateResult(**{**result.to_dict(), **extra, "excluded": tuple(ev.excluded)})


def is_group_metric(metric: str) -> bool:
    """A fairness gap, disparity or equity (`tpr_gap[age_band]`, `hit_disparity@10`, `exposure_equity`)."""
    base = metric.split("[", 1)[0].split("@", 1)[0]
    return base in GROUPED_METRICS or base == "exposure_gini"


def _sides(gate: GateSpec, metric: str) -> dict[str, str]:
    """Bound -> the number it is checked against: the spec's `decide_on`, else point, except group
    metrics (fairness): the cautious side, the lower bound for a min, the upper bound for a max."""
    decide_on = getattr(gate, "decide_on", None)
    if decide_on is not None:
        return {"min": decide_on, "max": decide_on}
    if is_group_metric(metric):
        return {"min": "lower_bound", "max": "upper_bound"}
    return {"min": "point", "max": "point"}


SIDE_WORDS = {"point": "", "lower_bound": "its interval's lower bound ", "upper_bound": "its interval's upper bound "}


def _too_little(gate: GateSpec, ev: Evidence | None, evaluation: Any, source: str) -> tuple[str, str] | None:
    """(why, what would give enough) when the evidence is below the declared min_rows / min_positives."""
    if ev is None:
        return None
    needs = {
        "rows": getattr(gate, "min_rows", None) or getattr(evaluation, "min_rows", None),
        "positives": getattr(gate, "min_positives", None) or getattr(evaluation, "min_positives", None),
    }
    have = {"rows": ev.rows, "positives": ev.positives}
    short = [
        f"{have[k]:,} {k} < min_{k} {needs[k]:,}"
        for k in needs
        if needs[k] and have[k] is not None and have[k] < needs[k]
    ]
    if not short:
        return None
    where = "cross-validation folds" if source == "cv" else "test slice"
    hint = (
        "more rows (data.rows or a longer history) or more folds"
        if source == "cv"
        else "a larger data.split.test_fraction, more rows, or `source: cv` with selection.cv_folds "
        "(every training row is held out once)"
    )
    return f"too little evidence in the {where}: {', '.join(short)}", hint


def _interval_text(low: float | None, high: float | None) -> str:
    return f" [{_fmt(low)}, {_fmt(high)}]" if low is not None and high is not None else ""


def _left_out_text(excluded: Sequence[Mapping[str, Any]], limit: int = 4) -> str:
    parts = [f"{g['group']} {_fmt(_number(g.get('value')))} (n={g.get('n')})" for g in excluded[:limit]]
    more = f" and {len(excluded) - limit} more" if len(excluded) > limit else ""
    return ", ".join(parts) + more


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


def _absolute(
    name: str, metric: str, value: float | None, gate: GateSpec, ev: Evidence | None = None, source: str = "test"
) -> GateResult:
    bounds = {k: v for k, v in (("min", gate.min), ("max", gate.max)) if v is not None}
    plain = " and ".join(f"{k} {v:g}" for k, v in bounds.items())
    if value is None:
        return GateResult(name, metric, None, False, gate.blocking, plain, f"{metric} was not computed (no data)")
    low, high = (ev.low, ev.high) if ev is not None else (None, None)
    sides = _sides(gate, metric)
    checked: dict[str, tuple[float, str]] = {}
    notes = []
    for key in bounds:
        side = sides[key]
        number = {"point": value, "lower_bound": low, "upper_bound": high}[side]
        if number is None:
            if getattr(gate, "decide_on", None) is not None:  # asked for, not there: cannot decide as declared
                why = f"decide_on: {side}, but {metric} has no interval (bootstrap 0, or none for this metric)"
                hint = "set evaluation.bootstrap / fairness.bootstrap above 0, or decide_on: point"
                return _insufficient(name, metric, gate, why, value, ev, hint, source=source)
            notes.append("no interval: decided on the point estimate")
            number, side = value, "point"
        checked[key] = (number, side)
    rule = " and ".join(
        f"{k} {v:g}" + ("" if checked[k][1] == "point" else f" ({checked[k][1].replace('_', ' ')})")
        for k, v in bounds.items()
    )
    decided = "/".join(dict.fromkeys(side for _, side in checked.values())) or "point"
    shown = f"{metric} {_fmt(value)}{_interval_text(low, high)}"
    where = {"low": low, "high": high, "decided_on": decided, "source": source}
    if ev is not None:
        where |= {"rows": ev.rows, "positives": ev.positives, "excluded": tuple(ev.excluded)}
    left_out = f"; left out for size: {_left_out_text(ev.excluded)}" if ev is not None and ev.excluded else ""
    note = f" ({'; '.join(dict.fromkeys(notes))})" if notes else ""
    for key, bound in bounds.items():
        number, side = checked[key]
        if (key == "min" and number < bound) or (key == "max" and number > bound):
            word = "below min" if key == "min" else "above max"
            said = f": {SIDE_WORDS[side]}{_fmt(number)} is" if side != "point" else " is"
            reason = f"{shown}{said} {word} {bound:g}{note}{left_out}"
            return GateResult(name, metric, value, False, gate.blocking, rule, reason, **where)
    if ev is not None and ev.with_excluded is not None:
        w = ev.with_excluded
        flips = [f"{k} {b:g}" for k, b in bounds.items() if (k == "min" and w < b) or (k == "max" and w > b)]
        if flips:  # the groups left out would change the verdict: not a pass
            why = (
                f"{shown} passes on the groups large enough, but with the groups left out for size at their "
                f"point estimates ({_left_out_text(ev.excluded)}) it is {_fmt(w)}, outside {' and '.join(flips)}"
            )
            hint = "more rows in the small groups: a larger data.split.test_fraction or more data"
            return _insufficient(name, metric, gate, why, value, ev, hint, rule=rule, decided=decided, source=source)
    reason = f"{shown} within {rule}{note}{left_out}"
    return GateResult(name, metric, value, True, gate.blocking, rule, reason, **where)


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
    named = getattr(gate.baseline, "name", None)
    history_window = f"baseline ({gate.baseline.statistic} of last {gate.baseline.window})"
    window = f"baseline {named} (same run)" if named else history_window
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
    versus = f"baseline {named}" if named else gate.vs
    reason = f"{metric} {_fmt(value)} vs {versus} {_fmt(ref)}: drop {drop:+.4g} ({relative:+.1%}), {verdict}"
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


def _insufficient(
    name: str,
    metric: str,
    gate: GateSpec,
    why: str,
    value: float | None = None,
    ev: Evidence | None = None,
    suggestion: str = "",
    rule: str = "",
    decided: str = "point",
    source: str = "test",
) -> GateResult:
    """Too little evidence for the gate (a metric left undefined by small groups, fewer rows or positives than
    declared, groups left out that would flip it): reported as such, never passed, blocking only when the gate
    says `on_insufficient: fail` (docs/adr/0015-fairness-and-causal.md, 0027)."""
    blocking = gate.blocking and gate.on_insufficient == "fail"
    rule = f"{rule}; on_insufficient: {gate.on_insufficient}" if rule else f"on_insufficient: {gate.on_insufficient}"
    reason = why if why.startswith(metric) else f"{metric}: {why}"
    extra: dict[str, Any] = {"decided_on": decided, "source": source, "suggestion": suggestion}
    if ev is not None:
        extra |= {"low": ev.low, "high": ev.high, "rows": ev.rows, "positives": ev.positives}
        extra["excluded"] = tuple(ev.excluded)
    return GateResult(name, metric, value, False, blocking, rule, reason, insufficient=True, **extra)


def render_markdown(report: GateReport, title: str) -> str:
    """The gate table without a promotion decision (verdict PASSED / FAILED); see pipeline/gates/report.py."""
    from pipeline.gates.report import render_gates  # report.py imports this module

    return render_gates(report, title)

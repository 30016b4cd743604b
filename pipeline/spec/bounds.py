"""Bounds that can never bind: a gate or trigger threshold outside the range its metric can take.

Type-checking already makes every float finite; this check compares each bound with the
metric's range from the catalogue. `error_rate: {max: 5}` (a percentage where a share is
meant) would never fail and `auc: {min: 70}` would never pass: both are spec errors with
file and line, not decisions discovered after a training run.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.spec.catalog import metric_range
from pipeline.spec.compose import Provenance
from pipeline.spec.errors import Problem
from pipeline.spec.schema import Spec

Finding = tuple[str, str]


def _span(low: float | None, high: float | None) -> str:
    return f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"


def _outside(key: str, metric: str, value: float | None, effect_low: str, effect_high: str) -> Iterator[Finding]:
    low, high = metric_range(metric)
    if value is None:
        return
    if low is not None and value < low:
        yield key, f"{value:g} is below the range of {metric} {_span(low, high)}: {effect_low}"
    if high is not None and value > high:
        yield key, f"{value:g} is above the range of {metric} {_span(low, high)}: {effect_high}"


def _findings(spec: Spec) -> Iterator[Finding]:
    for name, gate in spec.gates.items():
        metric, key = gate.metric or name, f"gates.{name}"
        yield from _outside(f"{key}.min", metric, gate.min, "the bound checks nothing", "the gate can never pass")
        yield from _outside(f"{key}.max", metric, gate.max, "the gate can never pass", "the bound checks nothing")
        low, high = metric_range(metric)
        if gate.max_drop is not None and low is not None and high is not None and gate.max_drop > high - low:
            span = _span(low, high)
            yield f"{key}.max_drop", f"max_drop {gate.max_drop:g} is wider than the range of {metric} {span}: no effect"
    performance = spec.triggers.performance
    if performance is not None:
        effect = "the floor decides nothing"
        yield from _outside("triggers.performance.floor", performance.metric, performance.floor, effect, effect)


def check_bounds(spec: Spec, provenance: Provenance) -> list[Problem]:
    """Every bound outside its metric's range, as Problems with file:line."""
    return [provenance.problem(key, reason) for key, reason in _findings(spec)]

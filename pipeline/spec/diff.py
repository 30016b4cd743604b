"""Semantic diff of two resolved specs, grouped by concern and said in words.

A reviewer reading a spec pull request wants "gate auc: min 0.80 -> 0.85 (stricter)",
not a YAML diff. Known shapes (gates, contract columns, rollout stages, derived
features, masked churners) get sentences; anything else falls back to "key: old -> new".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CONCERNS = {
    "data": "data",
    "contract": "contract",
    "features": "features",
    "model": "model",
    "candidates": "model",
    "selection": "model",
    "ranker": "model",
    "reranker": "model",
    "evaluation": "evaluation",
    "gates": "gates",
    "masked_churners": "scoring",
    "rollout": "rollout",
    "triggers": "triggers",
    "monitoring": "monitoring",
    "runtime": "runtime",
}
ORDER = [
    "contract",
    "features",
    "model",
    "gates",
    "rollout",
    "triggers",
    "evaluation",
    "scoring",
    "data",
    "monitoring",
    "runtime",
    "spec",
]


@dataclass(frozen=True)
class Change:
    concern: str
    path: str
    old: Any
    new: Any
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_MISSING = object()


def diff_specs(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """All changes from `old` to `new` (resolved specs), in concern order."""
    changes: list[Change] = []
    for key in dict.fromkeys([*old, *new]):
        before, after = old.get(key, _MISSING), new.get(key, _MISSING)
        if before == after:
            continue
        concern = CONCERNS.get(key, "spec")
        if key == "gates":
            changes += _gate_changes(before or {}, after or {})
        elif key == "contract" and isinstance(before, dict) and isinstance(after, dict):
            changes += _contract_changes(before, after, new.get("model", {}).get("features", []))
        elif key == "rollout" and isinstance(before, dict) and isinstance(after, dict):
            changes += _rollout_changes(before, after)
        elif key == "masked_churners":
            changes += _masked_changes(before, after)
        elif key == "features" and isinstance(before, dict) and isinstance(after, dict):
            changes += _derived_changes(before.get("derived", {}), after.get("derived", {}))
        else:
            changes += _generic(concern, key, before, after)
    return sorted(changes, key=lambda c: ORDER.index(c.concern))


def render(changes: list[Change]) -> str:
    if not changes:
        return "no changes: the two specs resolve to the same configuration"
    lines: list[str] = []
    current = None
    for change in changes:
        if change.concern != current:
            current = change.concern
            lines.append(f"{current}:")
        lines.append(f"  - {change.text}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is _MISSING or value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _generic(concern: str, path: str, before: Any, after: Any, label: str | None = None) -> list[Change]:
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[Change] = []
        for key in dict.fromkeys([*before, *after]):
            b, a = before.get(key, _MISSING), after.get(key, _MISSING)
            if b != a:
                out += _generic(concern, f"{path}.{key}", b, a, f"{label} {key}" if label else None)
        return out
    shown = label or path
    if before is _MISSING or before is None:
        text = f"{shown}: added ({_fmt(after) if not isinstance(after, dict) else 'section'})"
    elif after is _MISSING or after is None:
        text = f"{shown}: removed (was {_fmt(before) if not isinstance(before, dict) else 'a section'})"
    elif isinstance(before, list) and isinstance(after, list) and all(isinstance(x, str) for x in [*before, *after]):
        added = [x for x in after if x not in before]
        removed = [x for x in before if x not in after]
        parts = [f"added {', '.join(added)}"] if added else []
        parts += [f"removed {', '.join(removed)}"] if removed else []
        text = f"{shown}: {'; '.join(parts) or 'reordered'}"
    else:
        text = f"{shown}: {_fmt(before)} -> {_fmt(after)}"
    return [Change(concern, path, _plain(before), _plain(after), text)]


def _plain(value: Any) -> Any:
    return None if value is _MISSING else value


def _direction(old: float | None, new: float | None, tighter_when_higher: bool) -> str:
    if old is None or new is None:
        return ""
    if new == old:
        return ""
    stricter = (new > old) == tighter_when_higher
    return " (stricter)" if stricter else " (looser)"


def _gate_changes(before: dict, after: dict) -> list[Change]:
    out: list[Change] = []
    for name in dict.fromkeys([*before, *after]):
        b, a = before.get(name), after.get(name)
        path = f"gates.{name}"
        if b == a:
            continue
        if b is None:
            out.append(Change("gates", path, None, a, f"gate {name}: added ({_describe_gate(a)})"))
            continue
        if a is None:
            out.append(Change("gates", path, b, None, f"gate {name}: removed (was {_describe_gate(b)})"))
            continue
        for bound, tighter_when_higher in (
            ("min", True),
            ("max", False),
            ("max_drop", False),
            ("max_relative_drop", False),
        ):
            if b.get(bound) != a.get(bound):
                direction = _direction(b.get(bound), a.get(bound), tighter_when_higher)
                text = f"gate {name}: {bound} {_fmt(b.get(bound))} -> {_fmt(a.get(bound))}{direction}"
                out.append(Change("gates", f"{path}.{bound}", b.get(bound), a.get(bound), text))
        for key in ("metric", "vs", "blocking"):
            if b.get(key) != a.get(key):
                text = f"gate {name}: {key} {_fmt(b.get(key))} -> {_fmt(a.get(key))}"
                out.append(Change("gates", f"{path}.{key}", b.get(key), a.get(key), text))
    return out


def _describe_gate(gate: dict) -> str:
    parts = [f"{k} {_fmt(gate[k])}" for k in ("min", "max") if gate.get(k) is not None]
    if gate.get("vs"):
        drop = gate.get("max_drop")
        rel = gate.get("max_relative_drop")
        parts.append(f"vs {gate['vs']}, " + (f"max drop {_fmt(drop)}" if drop is not None else f"max drop {rel:.0%}"))
    metric = gate.get("metric")
    return (f"{metric}: " if metric else "") + ", ".join(parts)


def _contract_changes(before: dict, after: dict, model_features: list[str]) -> list[Change]:
    out: list[Change] = []
    cols_b, cols_a = before.get("columns", {}), after.get("columns", {})
    for name in dict.fromkeys([*cols_b, *cols_a]):
        b, a = cols_b.get(name), cols_a.get(name)
        if b == a:
            continue
        kind = "feature" if name in model_features else "column"
        path = f"contract.columns.{name}"
        if b is None:
            out.append(Change("contract", path, None, a, f"{kind} {name}: new column ({a.get('dtype')})"))
            continue
        if a is None:
            out.append(Change("contract", path, b, None, f"{kind} {name}: column removed"))
            continue
        allowed_b, allowed_a = b.get("allowed") or [], a.get("allowed") or []
        for value in allowed_a:
            if value not in allowed_b:
                out.append(
                    Change(
                        "contract",
                        f"{path}.allowed",
                        allowed_b,
                        allowed_a,
                        f"{kind} {name}: new allowed value {value!r}",
                    )
                )
        for value in allowed_b:
            if value not in allowed_a:
                out.append(
                    Change(
                        "contract",
                        f"{path}.allowed",
                        allowed_b,
                        allowed_a,
                        f"{kind} {name}: allowed value {value!r} removed (rows with it will be quarantined)",
                    )
                )
        for bound, widen_when_higher in (("min", False), ("max", True)):
            if b.get(bound) != a.get(bound):
                old, new = b.get(bound), a.get(bound)
                if old is None or new is None:
                    how = ""
                else:
                    how = " (range widened)" if (new > old) == widen_when_higher else " (range narrowed)"
                out.append(
                    Change(
                        "contract",
                        f"{path}.{bound}",
                        old,
                        new,
                        f"{kind} {name}: {bound} {_fmt(old)} -> {_fmt(new)}{how}",
                    )
                )
        for key in ("dtype", "unit", "nullable", "unique", "description"):
            if b.get(key) != a.get(key):
                out.append(
                    Change(
                        "contract",
                        f"{path}.{key}",
                        b.get(key),
                        a.get(key),
                        f"{kind} {name}: {key} {_fmt(b.get(key))} -> {_fmt(a.get(key))}",
                    )
                )
    rest_b = {k: v for k, v in before.items() if k != "columns"}
    rest_a = {k: v for k, v in after.items() if k != "columns"}
    return out + _generic("contract", "contract", rest_b, rest_a)


def _stage_text(stage: dict) -> str:
    return f"{stage['traffic']:.0%} for {stage['duration']}"


def _rollout_changes(before: dict, after: dict) -> list[Change]:
    out: list[Change] = []
    stages_b = {s["name"]: s for s in before.get("stages", [])}
    stages_a = {s["name"]: s for s in after.get("stages", [])}
    for name in dict.fromkeys([*stages_b, *stages_a]):
        b, a = stages_b.get(name), stages_a.get(name)
        path = f"rollout.stages.{name}"
        if b == a:
            continue
        if b is None:
            out.append(Change("rollout", path, None, a, f"stage {name}: added ({_stage_text(a)})"))
        elif a is None:
            out.append(Change("rollout", path, b, None, f"stage {name}: removed (was {_stage_text(b)})"))
        else:
            if (b["traffic"], b["duration"]) != (a["traffic"], a["duration"]):
                out.append(Change("rollout", path, b, a, f"stage {name}: {_stage_text(b)} -> {_stage_text(a)}"))
            for key in ("min_samples", "checks", "approval"):
                if b.get(key) != a.get(key):
                    out += _generic("rollout", f"{path}.{key}", b.get(key), a.get(key), f"stage {name}: {key}")
    if list(stages_b) != list(stages_a) and set(stages_b) == set(stages_a):
        out.append(
            Change(
                "rollout",
                "rollout.stages",
                list(stages_b),
                list(stages_a),
                f"stage order: {' -> '.join(stages_b)} => {' -> '.join(stages_a)}",
            )
        )
    rest_b = {k: v for k, v in before.items() if k != "stages"}
    rest_a = {k: v for k, v in after.items() if k != "stages"}
    return out + _generic("rollout", "rollout", rest_b, rest_a)


def _derived_changes(before: dict, after: dict) -> list[Change]:
    out: list[Change] = []
    for name in dict.fromkeys([*before, *after]):
        b, a = before.get(name), after.get(name)
        path = f"features.derived.{name}"
        if b == a:
            continue
        if b is None:
            out.append(Change("features", path, None, a, f"derived feature {name}: added ({a['expr']})"))
        elif a is None:
            out.append(Change("features", path, b, None, f"derived feature {name}: removed"))
        elif b.get("expr") != a.get("expr"):
            out.append(
                Change(
                    "features",
                    f"{path}.expr",
                    b["expr"],
                    a["expr"],
                    f"derived feature {name}: {b['expr']} -> {a['expr']}",
                )
            )
        else:
            out += _generic("features", path, b, a, f"derived feature {name}")
    return out


def _describe_masked(masked: dict) -> str:
    moves = "rises" if masked.get("direction", "increase") == "increase" else "falls"
    text = (
        f"{masked['feature']} {moves} less than {masked['fraction']:.0%} of its {masked['segment']} median "
        f"since {masked['previous']['source']}"
    )
    return text if masked.get("enabled", True) else f"{text}; disabled"


def _masked_changes(before: Any, after: Any) -> list[Change]:
    path = "masked_churners"
    if not isinstance(before, dict):
        return [Change("scoring", path, None, after, f"masked churners: added ({_describe_masked(after)})")]
    if not isinstance(after, dict):
        return [Change("scoring", path, before, None, f"masked churners: removed (was {_describe_masked(before)})")]
    out: list[Change] = []
    if before.get("enabled") != after.get("enabled"):
        text = "masked churners: enabled" if after.get("enabled") else "masked churners: disabled (no list is written)"
        out.append(Change("scoring", f"{path}.enabled", before.get("enabled"), after.get("enabled"), text))
    old, new = before.get("fraction"), after.get("fraction")
    if old != new:
        effect = "lists more entities" if new > old else "lists fewer entities"
        text = f"masked churners: fraction {_fmt(old)} -> {_fmt(new)} ({effect})"
        out.append(Change("scoring", f"{path}.fraction", old, new, text))
    rest_b = {k: v for k, v in before.items() if k not in ("enabled", "fraction")}
    rest_a = {k: v for k, v in after.items() if k not in ("enabled", "fraction")}
    return out + _generic("scoring", path, rest_b, rest_a, "masked churners")

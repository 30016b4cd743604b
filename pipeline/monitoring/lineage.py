"""Group shifted features that share a source column through derived-feature lineage.

engagement_intensity = sessions_last_30d * avg_session_minutes / 30: when sessions drift,
both alert. Reporting them as two problems sends two people to chase one cause, so
features are joined when they share a *shifted* source (or, when no source of theirs
shifted on its own, any source), and the group names that source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from pipeline.data.derived import derived_lineage
from pipeline.monitoring.drift import SHIFTED, FeatureDrift, level_rank
from pipeline.spec.schema import DerivedFeature


@dataclass
class ShiftGroup:
    sources: list[str]  # the underlying column(s) the group's features share
    features: list[str]  # shifted features in the group, worst first
    level: str  # the worst level in the group
    max_psi: float
    explanation: str

    def to_dict(self) -> dict:
        return asdict(self)


def group_shifts(drifts: Mapping[str, FeatureDrift], derived: Mapping[str, DerivedFeature]) -> list[ShiftGroup]:
    """One group per underlying shift among features at WARNING or worse, worst group first."""
    lineage = derived_lineage(derived)
    shifted = [name for name, d in drifts.items() if d.level in SHIFTED]
    flagged = set(shifted)
    suspects: dict[str, set[str]] = {}
    for name in shifted:
        roots = set(lineage.get(name, [name]))
        suspects[name] = (roots & flagged) or roots
    parent = {name: name for name in shifted}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    owner: dict[str, str] = {}
    for name in shifted:
        for root in suspects[name]:
            if root in owner:
                parent[find(name)] = find(owner[root])
            else:
                owner[root] = name
    members: dict[str, list[str]] = {}
    for name in shifted:
        members.setdefault(find(name), []).append(name)
    groups = [_group(names, suspects, drifts, lineage) for names in members.values()]
    return sorted(groups, key=lambda g: (-level_rank(g.level), -g.max_psi))


def _group(
    names: list[str],
    suspects: dict[str, set[str]],
    drifts: Mapping[str, FeatureDrift],
    lineage: dict[str, list[str]],
) -> ShiftGroup:
    ordered = sorted(names, key=lambda n: (-level_rank(drifts[n].level), -(drifts[n].psi or 0.0)))
    common = set.intersection(*(suspects[n] for n in names))
    sources = sorted(common or set.union(*(suspects[n] for n in names)))
    worst = drifts[ordered[0]]
    derived_members = [n for n in ordered if n in lineage]
    source_text = " and ".join(sources)
    if len(ordered) == 1 and not derived_members:
        text = f"{ordered[0]} shifted on its own (PSI {worst.psi:.3f})"
    elif derived_members:
        base = [n for n in ordered if n not in lineage]
        head = f"{', '.join(derived_members)} {'is' if len(derived_members) == 1 else 'are'} derived from {source_text}"
        shifted_base = f" (itself {drifts[base[0]].level}, PSI {drifts[base[0]].psi:.3f})" if base else ""
        text = f"{head}{shifted_base}: one shift, {len(ordered)} alerts"
    else:
        text = f"{', '.join(ordered)} share {source_text}: one shift"
    return ShiftGroup(sources, ordered, worst.level, float(worst.psi or 0.0), text)

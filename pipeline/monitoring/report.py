"""MonitorReport: what the monitor found, as data (JSON for triggers and scripts) and as Markdown."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pipeline.monitoring.drift import SHIFTED, FeatureDrift, Thresholds, level_rank
from pipeline.monitoring.lineage import ShiftGroup
from pipeline.monitoring.segments import SegmentDiagnosis
from pipeline.monitoring.units import UnitChange
from pipeline.reports.format import fmt_number


@dataclass
class MonitorReport:
    spec_name: str
    as_of: date
    rows: int
    reference_source: str
    reference_sources: dict[str, str]
    thresholds: Thresholds
    features: dict[str, FeatureDrift]
    groups: list[ShiftGroup]
    segments: list[SegmentDiagnosis]
    unit_changes: list[UnitChange]
    metrics: dict[str, float]
    bundle: str | None = None
    problems: list[str] = field(default_factory=list)  # missing features, empty data
    outputs: dict[str, str] = field(default_factory=dict)  # files written beside the report
    decision: dict[str, Any] = field(default_factory=dict)  # filled by whoever evaluates triggers

    @property
    def level(self) -> str:
        """The worst level over features: OK, WARNING, ALERT or CRITICAL (missing/no-data count as ALERT)."""
        ranks = [level_rank(d.level) for d in self.features.values()]
        return ("OK", "WARNING", "ALERT", "CRITICAL")[max([0, *ranks])]

    def psi(self) -> dict[str, float]:
        """PSI per feature that has one: the signal drift triggers compare with psi_above."""
        return {n: d.psi for n, d in self.features.items() if d.psi is not None}

    def levels(self) -> dict[str, str]:
        return {n: d.level for n, d in self.features.items()}

    def segment_for(self, feature: str) -> SegmentDiagnosis | None:
        return next((s for s in self.segments if s.feature == feature), None)

    def to_dict(self) -> dict[str, Any]:
        return _clean(
            {
                "spec_name": self.spec_name,
                "as_of": self.as_of.isoformat(),
                "level": self.level,
                "rows": self.rows,
                "bundle": self.bundle,
                "reference_source": self.reference_source,
                "thresholds": asdict(self.thresholds),
                "levels": self.levels(),
                "psi": self.psi(),
                "features": {n: d.to_dict() for n, d in self.features.items()},
                "groups": [g.to_dict() for g in self.groups],
                "segments": [s.to_dict() for s in self.segments],
                "unit_changes": [u.to_dict() for u in self.unit_changes],
                "metrics": self.metrics,
                "problems": self.problems,
                "reference_sources": self.reference_sources,
                "outputs": self.outputs,
                "decision": self.decision,
            }
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_markdown(self) -> str:
        t = self.thresholds
        lines = [
            f"# Monitor — {self.spec_name}, {self.as_of.isoformat()}: {self.level}",
            "",
            f"{self.rows:,} current rows vs {self.reference_source}. Levels: WARNING >= {t.warning}, "
            f"ALERT >= {t.alert}, CRITICAL >= {t.critical} (PSI).",
            "",
        ]
        lines += [f"- **problem:** {p}" for p in self.problems]
        if self.groups:
            lines += ["## Shifts (grouped through derived-feature lineage)", ""]
            for g in self.groups:
                lines.append(f"- **{g.level}** {g.explanation}")
                seg = self.segment_for(g.sources[0]) or self.segment_for(g.features[0])
                if seg is not None:
                    lines.append(f"  - segments ({seg.column}): **{seg.pattern}** — {seg.likely}")
            lines.append("")
        if self.unit_changes:
            lines += ["## Suspected unit changes", ""]
            lines += [
                f"- `{u.feature}`: {u.factor} ({u.meaning}); median ratio {u.median_ratio:.3g}, "
                f"mean ratio {u.mean_ratio:.3g}"
                for u in self.unit_changes
            ]
            lines.append("")
        lines += [
            "## Features",
            "",
            "| feature | PSI | level | rows | null rate (ref) | note |",
            "|---|---:|---|---:|---|---|",
        ]
        for n, d in sorted(self.features.items(), key=lambda kv: (-level_rank(kv[1].level), -(kv[1].psi or 0))):
            psi = "" if d.psi is None else f"{d.psi:.3f}"
            nulls = "" if d.null_rate is None else f"{d.null_rate:.1%} ({(d.ref_null_rate or 0):.1%})"
            lines.append(f"| {n} | {psi} | {d.level} | {d.count:,} | {nulls} | {d.message} |")
        if self.segments:
            lines += ["", "## Segment diagnosis", "", f"Statistic: {self.segments[0].statistic}.", ""]
            for s in self.segments:
                per = ", ".join(f"{k} {v['psi']:.3f}" for k, v in s.per_segment.items())
                lines.append(f"- `{s.feature}`: **{s.pattern}** ({per})")
        if self.metrics:
            lines += ["", "## Performance (joined outcomes)", "", "| metric | value |", "|---|---:|"]
            lines += [f"| {k} | {fmt_number(v)} |" for k, v in self.metrics.items()]
        if self.decision:
            lines += ["", "## Decision", "", f"- {self.decision.get('summary', '')}"]
            lines += [f"  - {r}" for r in self.decision.get("reasons", [])]
        charts = {k: v for k, v in self.outputs.items() if k.endswith("_png")}
        if charts:  # image links relative to the report, embedded as data URIs in the Prefect artifact
            lines += ["", "## Charts", ""]
            lines += [f"![{k.removesuffix('_png')}]({self._relative(v)})\n" for k, v in charts.items()]
        return "\n".join(lines) + "\n"

    def _relative(self, path: str) -> str:
        """A chart's path relative to the report's folder (absolute when the report path is unknown)."""
        report = self.outputs.get("report")
        if not report:
            return path
        try:
            return Path(path).relative_to(Path(report).parent).as_posix()
        except ValueError:
            return path

    @property
    def shifted(self) -> list[str]:
        return [n for n, d in self.features.items() if d.level in SHIFTED]


def _clean(value: Any) -> Any:
    """NaN/inf become null so the JSON is valid for every reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value

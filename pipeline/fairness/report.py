"""The fairness and causal part of the gate report, as tables a reviewer can scan.

One row per (grouping, group) with a column per metric instead of one row per
(group, metric): five times fewer lines, and a group's rates read side by side. The gap
metrics are one row per gap with a column per grouping. Groups with too little data are
shown (never dropped) and marked with a dagger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.fairness.result import OK, GroupMetric
from pipeline.reports.format import fmt_count, fmt_number

if TYPE_CHECKING:
    from pipeline.fairness.sections import Sections

CHART = "fairness_causal.png"
DAGGER = "†"
WORST = "worst of all"


def render_markdown(sections: Sections, chart_name: str = CHART) -> str:
    """Markdown for the fairness/causal sections ("" when the spec declares neither)."""
    if not sections.declared:
        return ""
    lines = ["", "## Fairness and causal evaluation", "", *(f"- {note}" for note in sections.notes)]
    if sections.chart:
        lines += [f"![group metrics with intervals]({chart_name})", ""]
    f = sections.fairness
    if f is not None:
        lines += ["### Gaps between groups (gate-able)", ""]
        lines += _gap_table(f.metrics, f.intervals, f.insufficient)
        lines += ["", "### Metrics per group", ""]
        lines += _group_table(f.groups)
        if "exposure_reference" in f.extra:
            lines += [
                "",
                f"Exposure equity: worst group's position-weighted exposure share over its "
                f"{f.extra['exposure_reference']} share.",
            ]
    if sections.guarantee:
        lines += _guarantee(sections.guarantee)
    if sections.causal is not None:
        lines += _causal(sections.causal)
    return "\n".join(lines) + "\n"


def _interval(low: float | None, high: float | None) -> str:
    return f" [{low:.4f}, {high:.4f}]" if low is not None and high is not None else ""


def _split(name: str) -> tuple[str, str]:
    """`tpr_gap[age_band]` -> (`tpr_gap`, `age_band`); an unqualified name is the worst of all groupings."""
    if name.endswith("]") and "[" in name:
        base, _, grouping = name[:-1].partition("[")
        return base, grouping
    return name, WORST


def _gap_table(metrics: dict[str, Any], intervals: dict[str, Any], insufficient: dict[str, str]) -> list[str]:
    rows: dict[str, dict[str, str]] = {}
    columns: dict[str, None] = {}
    why: dict[str, str] = {}  # grouping -> reason (the group sizes are in the per-group table)
    for name, value in metrics.items():
        base, grouping = _split(name)
        columns.setdefault(grouping, None)
        if value is None:
            rows.setdefault(base, {})[grouping] = f"insufficient{DAGGER}"
            why.setdefault(grouping, insufficient.get(name, "insufficient data").split("; short:")[0])
            continue
        low, high = intervals.get(name, (None, None))
        rows.setdefault(base, {})[grouping] = f"{value:.4f}{_interval(low, high)}"
    order = [c for c in columns if c != WORST] + ([WORST] if WORST in columns else [])
    lines = ["| gap | " + " | ".join(order) + " |", "|---|" + "---:|" * len(order)]
    lines += [f"| {base} | " + " | ".join(cells.get(c, "") for c in order) + " |" for base, cells in rows.items()]
    notes = [f"- {DAGGER} {grouping}: {reason} (group sizes below)" for grouping, reason in why.items()]
    return lines + (["", *notes] if notes else [])


def _group_table(groups: list[GroupMetric]) -> list[str]:
    metrics = list(dict.fromkeys(g.metric for g in groups))
    table: dict[tuple[str, str], dict[str, GroupMetric]] = {}
    for g in groups:
        table.setdefault((g.grouping, g.group), {})[g.metric] = g
    lines = ["| grouping | group | rows | " + " | ".join(metrics) + " |", "|---|---|---:|" + "---:|" * len(metrics)]
    short = False
    for (grouping, group), cells in table.items():
        rows = max(c.n for c in cells.values())
        values = []
        for m in metrics:
            c = cells.get(m)
            if c is None:
                values.append("")
                continue
            mark = "" if c.status == OK else DAGGER
            short |= bool(mark)
            values.append(f"{fmt_number(c.value)}{mark}")
        lines.append(f"| {grouping} | {group} | {fmt_count(rows)} | " + " | ".join(values) + " |")
    if short:
        lines += ["", f"{DAGGER} insufficient data: too few rows for this metric in this group; shown, not gated."]
    lines += ["", "Bootstrap intervals per group are in the chart and in `run_report.json`."]
    return lines


def _guarantee(g: dict[str, Any]) -> list[str]:
    with_, without = g["with_guarantee"], g["without_guarantee"]
    hit = next(k for k in with_ if k.startswith("hit@"))
    change = g.get(f"relative_{hit}_change")
    lines = [
        "",
        f"### Minimum-exposure guarantee ({g['attribute']}, {g['min_exposure_share']:.0%} of slots)",
        "",
        f"| re-ranker | worst group | its exposure share | its catalogue share | exposure equity | {hit} |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, row in (("without the guarantee", without), ("with the guarantee", with_)):
        lines.append(
            f"| {label} | {row['worst_group']} | {row['worst_group_exposure_share']:.4f} | "
            f"{row['worst_group_catalog_share']:.4f} | {row['exposure_equity']:.3f} | {row[hit]:.4f} |"
        )
    if change is not None:
        lines += ["", f"{hit} relative change from the guarantee: {change:+.2%}"]
    lines += ["", "| group | catalogue share | exposure share without | with |", "|---|---:|---:|---:|"]
    for label, row in g["groups"].items():
        shares = " | ".join(f"{row[c]:.4f}" for c in ("catalog_share", "without_guarantee", "with_guarantee"))
        lines.append(f"| {label} | {shares} |")
    return lines


def _causal(c: Any) -> list[str]:
    lines = ["", "### Causal effect", ""]
    rows = c.rows
    if isinstance(rows, dict):
        lines.append("- logged rows: " + ", ".join(f"{k} {fmt_count(v)}" for k, v in rows.items()))
    else:
        lines.append(f"- logged rows: {fmt_number(rows)}")
    if c.estimates:
        lines += ["", "| estimator | ATE | interval |", "|---|---:|---|"]
        for e in c.estimates:
            lines.append(f"| {e['estimator']} | {e['value']:.4f} |{_interval(e['low'], e['high'])} |")
        if c.naive_over_causal is not None:
            lines += ["", f"The naive difference is {c.naive_over_causal:.2f}x the causal estimate."]
    for name, why in c.insufficient.items():
        lines.append(f"- {name}: {why}")
    x = c.experiment
    if x and x.get("effect") is not None:
        lines += [
            "",
            "| randomized A/B | treatment rows | holdout rows | effect | interval | p-value | min. detectable effect |",
            "|---|---:|---:|---:|---|---:|---|",
            f"| treatment vs holdout | {x['n_treatment']:,} | {x['n_holdout']:,} | {x['effect']:+.4f} "
            f"|{_interval(x['low'], x['high'])} | {x['p_value']:.3g} "
            f"| {x['mde']:.4f} (power {x['power']:.0%}, alpha {x['alpha']:g}) |",
        ]
    return lines

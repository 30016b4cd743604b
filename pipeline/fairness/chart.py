"""A PNG of group metrics with their bootstrap intervals (and the causal estimates), for the run report.

matplotlib's Agg backend: no display, no fonts downloaded, the same bytes on a server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from pipeline.fairness.result import OK, FairnessReport
from pipeline.reports.format import save_png

MAX_PANELS = 10
ROW_INCHES = 0.24  # per group label at fontsize 7
PANEL_INCHES = 0.9  # title, x tick labels and padding of one panel
DPI = 80  # the chart is embedded in the Prefect artifact: keep it well under 200 KB
# What the picture shows (the tables in the report have every metric): the rates gaps are made of,
# exposure relative to the reference share, and Hit@k per user group.
CHARTED = ("exposure_ratio", "hit@", "tpr", "fpr", "auc")


def write_chart(path: Path, fairness: FairnessReport | None, estimates: list[dict[str, Any]] | None) -> Path | None:
    """One panel per (grouping, metric): groups as points with interval bars, insufficient groups hollow grey."""
    panels: list[tuple[str, list]] = []
    if fairness is not None:
        keys = dict.fromkeys((g.grouping, g.metric) for g in fairness.groups if g.metric.startswith(CHARTED))
        for grouping, metric in list(keys)[:MAX_PANELS]:
            rows = [g for g in fairness.groups if g.grouping == grouping and g.metric == metric]
            panels.append((f"{metric} by {grouping}", rows))
    if estimates:
        panels.append(("average treatment effect", estimates))
    if not panels:
        return None
    cols = min(2, len(panels))
    grid = [panels[i : i + cols] for i in range(0, len(panels), cols)]
    # each row of panels is as tall as its longest list of groups: labels never overlap
    heights = [max(len(rows) for _, rows in row) * ROW_INCHES + PANEL_INCHES for row in grid]
    fig, axes = plt.subplots(
        len(grid),
        cols,
        figsize=(7.0 * cols, sum(heights) + 0.5),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
        layout="constrained",
    )
    for ax, (title, rows) in zip(axes.ravel(), panels, strict=False):
        if title == "average treatment effect":
            _estimates(ax, rows)
        else:
            _groups(ax, rows)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.grid(axis="x", alpha=0.3)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    if fairness is not None and any(g.status != OK or g.value is None for g in fairness.groups):
        fig.suptitle("hollow grey point, grey label: insufficient data (shown, not gated)", fontsize=8, color="grey")
    save_png(fig, path, DPI)
    plt.close(fig)
    return path


def _groups(ax, rows) -> None:
    for i, g in enumerate(rows):
        if g.status != OK or g.value is None:
            if g.value is not None:
                ax.plot([g.value], [i], "o", mfc="none", color="grey")
        else:
            lo = g.value - g.low if g.low is not None else 0
            hi = g.high - g.value if g.high is not None else 0
            ax.errorbar([g.value], [i], xerr=[[max(lo, 0)], [max(hi, 0)]], fmt="o", color="tab:blue", capsize=3)
    ax.set_yticks(range(len(rows)), [f"{g.group} (n={g.n:,})" for g in rows])
    for label, g in zip(ax.get_yticklabels(), rows, strict=True):
        if g.status != OK or g.value is None:
            label.set_color("grey")
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first group on top, half a row of margin


def _estimates(ax, rows) -> None:
    for i, e in enumerate(rows):
        low, high = e.get("low"), e.get("high")
        err = [[e["value"] - low], [high - e["value"]]] if low is not None and high is not None else None
        color = "tab:red" if e["estimator"] == "naive" else "tab:green"
        ax.errorbar([e["value"]], [i], xerr=err, fmt="o", color=color, capsize=3)
    ax.set_yticks(range(len(rows)), [e["estimator"] for e in rows])
    ax.axvline(0, color="black", lw=0.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)

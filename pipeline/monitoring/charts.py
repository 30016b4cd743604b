"""PNG charts: reference vs current bin shares for each alerted feature, and the metric history.

The histogram uses the reference's own bins, so the bars are exactly what PSI compared.
matplotlib's Agg backend draws without a display (servers, CI, Prefect workers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.monitoring.drift import FeatureDrift
from pipeline.reports.format import save_png

DPI = 90


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def drift_chart(d: FeatureDrift, path: Path) -> Path | None:
    """Side-by-side bars of reference and current shares per bin; None when there is nothing to draw."""
    if not d.cur_shares or not d.ref_shares:
        return None
    plt = _pyplot()
    x = np.arange(len(d.ref_shares))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(x)), 3.6))
    try:
        ax.bar(x - 0.2, d.ref_shares, width=0.4, label="reference", color="#7a8ca5")
        ax.bar(x + 0.2, d.cur_shares, width=0.4, label="current", color="#d9534f")
        ax.set_xticks(x, d.bins, rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("share of rows")
        ax.set_title(f"{d.feature}: PSI {d.psi:.3f} ({d.level})", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        save_png(fig, path, DPI)
    finally:
        plt.close(fig)
    return path


def history_chart(history: pd.DataFrame, path: Path) -> Path | None:
    """One line per performance metric over the recorded dates; None without metric rows.

    The date axis spans the recorded days plus a margin (three days either side of a single
    day) with day-level ticks, so one day is not drawn on a multi-year axis.
    """
    metrics = history[history["kind"] == "metric"]
    metrics = metrics[~metrics["name"].isin(["outcomes"])]
    if metrics.empty:
        return None
    plt = _pyplot()
    import matplotlib.dates as mdates

    dates = pd.to_datetime(metrics["date"])
    first, last = dates.min().normalize(), dates.max().normalize()
    pad = pd.Timedelta(days=3) if first == last else max(pd.Timedelta(days=1), (last - first) * 0.05)
    fig, ax = plt.subplots(figsize=(8.0, 3.6), layout="constrained")
    try:
        for name, rows in metrics.groupby("name", sort=True):
            ax.plot(pd.to_datetime(rows["date"]), rows["value"], marker="o", label=str(name))
        ax.set_xlim(first - pad, last + pad)
        locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
        locator.intervald[mdates.DAILY] = [1, 2, 7, 14]  # whole days only, never hours
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.set_ylabel("value")
        days = dates.dt.normalize().nunique()
        ax.set_title(f"performance metrics by day ({days} day{'s' if days != 1 else ''})", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # never over the lines
        save_png(fig, path, DPI)
    finally:
        plt.close(fig)
    return path

"""Performance metrics from joined outcomes, and the metrics history they are appended to.

History layout: `<dir>/date=YYYY-MM-DD/part.parquet`, long format (date, kind, name, value,
bundle, spec_sha256). One file per date, replaced atomically: running the monitor twice
for the same day leaves one day's rows, so a retry or a backfill never double-counts.
Triggers (relative decline vs a rolling baseline) and backtests read it back.
"""

from __future__ import annotations

import math
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.atomic_files import read_table_verified, write_table_atomic
from pipeline.metrics.classification import classification_metrics

SCHEMA = pa.schema(
    [
        ("date", pa.date32()),
        ("kind", pa.string()),  # metric | psi
        ("name", pa.string()),
        ("value", pa.float64()),
        ("bundle", pa.string()),
        ("spec_sha256", pa.string()),
    ]
)
PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
BINARY_KEYS = ("auc", "pr_auc", "brier", "log_loss", "precision_at_k", "flagged_share")


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float, k: int) -> dict[str, float]:
    """AUC and friends for churn outcomes, plus the observed positive rate."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    keep = np.isfinite(y) & np.isfinite(p)
    y, p = y[keep].astype(np.int8), p[keep]
    if not len(y):
        return {}
    metrics = classification_metrics(y, p, threshold, k)
    out = {key: metrics[key] for key in BINARY_KEYS}
    out["positive_rate"] = float(y.mean())
    out["outcomes"] = float(len(y))
    return out


def ranking_metrics(group: np.ndarray, y: np.ndarray, score: np.ndarray, k: int) -> dict[str, float]:
    """CTR (clicks per impression) and NDCG@k per group (user/request), averaged over groups with a click."""
    frame = pd.DataFrame({"g": group, "y": np.asarray(y, dtype=np.float64), "s": np.asarray(score, dtype=np.float64)})
    frame = frame.dropna()
    if frame.empty:
        return {}
    frame = frame.sort_values(["g", "s"], ascending=[True, False], kind="stable")
    frame["rank"] = frame.groupby("g").cumcount()
    top = frame[frame["rank"] < k]
    gain = (top["y"] / np.log2(top["rank"] + 2)).groupby(top["g"]).sum()
    ideal_counts = frame.groupby("g")["y"].sum().clip(upper=k).astype(int)
    discounts = np.concatenate([[0.0], np.cumsum(1 / np.log2(np.arange(2, k + 2)))])
    ideal = pd.Series(discounts[ideal_counts.to_numpy()], index=ideal_counts.index)
    clicked = ideal > 0
    ndcg = (gain.reindex(ideal.index, fill_value=0.0)[clicked] / ideal[clicked]).mean()
    return {
        "ctr": float(frame["y"].mean()),
        f"ndcg@{k}": float(ndcg) if clicked.any() else math.nan,
        "outcomes": float(len(frame)),
    }


def history_rows(
    day: date, metrics: dict[str, float], psi: dict[str, float], bundle: str | None, spec_sha256: str
) -> pd.DataFrame:
    rows = [("metric", k, v) for k, v in metrics.items()] + [("psi", k, v) for k, v in psi.items()]
    return pd.DataFrame(
        {
            "date": [day] * len(rows),
            "kind": [r[0] for r in rows],
            "name": [r[1] for r in rows],
            "value": [float(r[2]) if r[2] is not None else math.nan for r in rows],
            "bundle": [bundle] * len(rows),
            "spec_sha256": [spec_sha256] * len(rows),
        }
    )


def write_day(directory: Path, day: date, rows: pd.DataFrame) -> Path:
    """Replace the date's partition with `rows` (temp file + rename: a crash leaves the old one)."""
    target = directory / f"date={day.isoformat()}" / "part.parquet"
    return write_table_atomic(pa.Table.from_pandas(rows, schema=SCHEMA, preserve_index=False), target)


def read_history(directory: Path) -> pd.DataFrame:
    """Every day's rows, sorted by date; an absent directory is an empty history."""
    frames = []
    if directory.is_dir():
        for part in sorted(directory.iterdir()):
            if PARTITION.match(part.name) and (part / "part.parquet").is_file():
                frames.append(read_table_verified(part / "part.parquet", schema=SCHEMA).to_pandas())
    if not frames:
        return SCHEMA.empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True).sort_values(["date", "kind", "name"], kind="stable")

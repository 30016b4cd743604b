"""StreamFlow churn written by hand with pandas, numpy, LightGBM and scikit-learn: the benches' baseline.

What a data scientist would script without Keel: read the table, drop the rows that break the
contract, add the derived features, split by time, train LightGBM with early stopping, compute the
test metrics, save the booster, then score every subscriber's latest snapshot and explain the
listed ones (top 3 tree-SHAP contributors by argsort). It imports nothing from Keel, so that as a
subprocess its start-up is only the interpreter and these libraries.

    python bench/plain_churn.py CONFIG.json DATA.parquet OUT_DIR   # prints one JSON line

CONFIG.json is written by bench_run.py from the composed spec (contract rules, the LightGBM
parameters Keel derives from the spec, split fractions, threshold), so both sides use one spec.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def derived(frame: pd.DataFrame) -> pd.DataFrame:
    """The spec's five derived features, written out in numpy."""
    col = lambda name: frame[name].to_numpy(dtype=np.float64, na_value=np.nan)  # noqa: E731
    sessions = col("sessions_last_30d")
    with np.errstate(divide="ignore", invalid="ignore"):
        extra = {
            "engagement_intensity": sessions * col("avg_session_minutes") / 30,
            "recency_score": 1 / (1 + col("days_since_last_activity")),
            "support_burden": col("support_tickets_last_90d") / (1 + col("tenure_months")),
            "charges_per_session": np.where(sessions != 0, col("monthly_charges") / sessions, 0.0),
            "content_diversity_ratio": np.where(sessions != 0, col("distinct_titles_last_30d") / sessions, 0.0),
        }
    return frame.assign(**extra)


def check_contract(frame: pd.DataFrame, columns: dict[str, dict[str, Any]]) -> tuple[pd.DataFrame, int]:
    """Rows that break any column rule are dropped; returns (typed accepted rows, quarantined count)."""
    bad = np.zeros(len(frame), dtype=bool)
    typed: dict[str, Any] = {}
    for name, rule in columns.items():
        column = frame[name]
        dtype = rule["dtype"]
        if dtype in ("int", "float"):
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            missing = np.isnan(values)
            with np.errstate(invalid="ignore"):
                fails = ~np.isfinite(values) & ~missing
                if rule.get("min") is not None:
                    fails |= values < rule["min"]
                if rule.get("max") is not None:
                    fails |= values > rule["max"]
                if dtype == "int":
                    fails |= values != np.round(values)
                if rule.get("allowed") is not None:
                    fails |= ~np.isin(values, np.asarray(rule["allowed"], dtype=np.float64)) & ~missing
            typed[name] = values
        elif dtype == "category":
            missing = column.isna().to_numpy()
            fails = ~column.isin(rule["allowed"]).to_numpy() & ~missing
            typed[name] = pd.Categorical(column.astype(object), categories=rule["allowed"])
        elif dtype == "datetime":
            typed[name] = pd.to_datetime(column, errors="coerce")
            missing = column.isna().to_numpy()
            fails = typed[name].isna().to_numpy() & ~missing
        else:
            missing = column.isna().to_numpy()
            fails = column.duplicated(keep="first").to_numpy() & ~missing if rule.get("unique") else np.zeros_like(bad)
            typed[name] = column.astype("string")
        if not rule.get("nullable"):
            fails |= missing
        bad |= fails
    accepted = pd.DataFrame(typed, index=frame.index).iloc[np.flatnonzero(~bad)].reset_index(drop=True)
    for name, rule in columns.items():
        if rule["dtype"] == "int" and not rule.get("nullable"):
            accepted[name] = accepted[name].astype(np.int64)
    return accepted, int(bad.sum())


def time_split(
    frame: pd.DataFrame, timestamp: str, valid_fraction: float, test_fraction: float
) -> dict[str, pd.DataFrame]:
    """Oldest rows train, newest test; cuts snap to the nearest snapshot-date boundary."""
    times = frame[timestamp].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    n = len(frame)

    def snap(position: int) -> int:
        start = int(np.searchsorted(ordered, ordered[position], side="left"))
        end = int(np.searchsorted(ordered, ordered[position], side="right"))
        return start if position - start <= end - position else end

    n_test, n_valid = round(n * test_fraction), round(n * valid_fraction)
    test_start = snap(n - n_test)
    valid_start = min(snap(n - n_test - n_valid), test_start)
    cuts = {"train": order[:valid_start], "valid": order[valid_start:test_start], "test": order[test_start:]}
    return {part: frame.iloc[rows] for part, rows in cuts.items()}


def score(
    booster: lgb.Booster, frame: pd.DataFrame, features: list[str], entity_id: str, threshold: float, reasons: bool
) -> pd.DataFrame:
    """Predict, keep >= threshold ranked, and name the top-3 contributors of each listed row."""
    x = derived(frame)[features]
    probability = booster.predict(x)
    order = np.argsort(-probability, kind="stable")
    chosen = order[probability[order] >= threshold]
    out = pd.DataFrame(
        {
            entity_id: frame[entity_id].to_numpy()[chosen],
            "probability": probability[chosen],
            "rank": np.arange(1, len(chosen) + 1),
        }
    )
    if reasons:
        contributions = booster.predict(x.iloc[chosen], pred_contrib=True)[:, :-1]
        top = np.argsort(-contributions, axis=1)[:, :3]
        out["reasons"] = np.asarray(features, dtype=object)[top].tolist()
    return out


def run(config: dict[str, Any], data: Path, out: Path) -> dict[str, Any]:
    """Every step of the plain pipeline, timed; returns the timings and what the run produced."""
    steps: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        steps[name] = round(now - clock, 3)
        clock = now

    entity, stamp, label = config["entity_id"], config["timestamp"], config["label"]
    features = config["features"]
    frame = pd.read_parquet(data)
    lap("read")
    accepted, quarantined = check_contract(frame, config["contract"])
    if quarantined > config["max_quarantine_fraction"] * len(frame):
        raise SystemExit(f"too many bad rows: {quarantined}")
    lap("validate")
    with_features = derived(accepted)
    lap("derive")
    parts = time_split(with_features, stamp, config["valid_fraction"], config["test_fraction"])
    y = {part: (rows[label].to_numpy() == config["positive"]).astype(np.int8) for part, rows in parts.items()}
    lap("split")
    train = lgb.Dataset(parts["train"][features], label=y["train"], free_raw_data=True)
    valid = lgb.Dataset(parts["valid"][features], label=y["valid"], reference=train)
    booster = lgb.train(
        config["lightgbm"],
        train,
        num_boost_round=config["n_estimators"],
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(config["early_stopping_rounds"], verbose=False)],
    )
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    lap("train")
    p = booster.predict(parts["test"][features])
    yt = y["test"]
    order = np.argsort(-p, kind="stable")
    deciles = np.array_split(yt[order], 10)
    metrics = {
        "auc": float(roc_auc_score(yt, p)),
        "pr_auc": float(average_precision_score(yt, p)),
        "brier": float(brier_score_loss(yt, p)),
        "precision_at_k": float(yt[order[: config["top_k"]]].mean()),
        "lift_top_decile": float(deciles[0].mean() / yt.mean()),
    }
    lap("evaluate")
    out.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(out / "booster.txt"))
    (out / "metrics.json").write_text(json.dumps(metrics))
    lap("save")
    latest = accepted.sort_values(stamp, kind="stable").drop_duplicates(entity, keep="last")
    listing = score(booster, latest, features, entity, config["threshold"], reasons=True)
    lap("score")
    listing.to_parquet(out / "high_risk.parquet", index=False)
    listing.assign(reasons=listing["reasons"].map("; ".join)).to_csv(out / "high_risk.csv", index=False)
    lap("write")
    return {
        "steps": steps,
        "rows_in": len(frame),
        "quarantined": quarantined,
        "trees": booster.num_trees(),
        "metrics": metrics,
        "scored": len(latest),
        "listed": len(listing),
    }


if __name__ == "__main__":
    cfg_path, data_path, out_dir = sys.argv[1:4]
    print(json.dumps(run(json.loads(Path(cfg_path).read_text()), Path(data_path), Path(out_dir))))

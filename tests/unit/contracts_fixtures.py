"""Shared builders for the contract tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.spec.schema import ContractSpec

CONF = Path(__file__).resolve().parents[2] / "conf" / "contract"


def load_contract(name: str, **overrides) -> ContractSpec:
    d = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    d.update(overrides)
    return ContractSpec(**d)


def interactions(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A clean, typed frame for the streamrec_interactions contract."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "interaction_id": np.arange(n, dtype=np.int64),
            "user_id": rng.integers(0, 1000, n),
            "item_id": rng.integers(0, 500, n),
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="min"),
            "position": rng.integers(0, 500, n),
            "watch_minutes": rng.uniform(0, 120, n),
            "clicked": rng.integers(0, 2, n),
            "propensity": rng.uniform(0.01, 1, n),
            "platform": rng.choice(["web", "ios", "android", "tv"], n),
        }
    )


def as_csv_strings(df: pd.DataFrame) -> pd.DataFrame:
    """What a string-preserving CSV reader gives: every column text, nulls as None."""
    return pd.DataFrame({c: df[c].astype(str).where(df[c].notna(), None).astype("str") for c in df.columns})

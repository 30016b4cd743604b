"""PSI per feature: levels from thresholds, agreement with a plain computation, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.contracts.profile import build_profile
from pipeline.monitoring.drift import MISSING, NO_DATA, Thresholds, feature_drift
from pipeline.spec.schema import ColumnContract, ContractSpec

CONTRACT = ContractSpec(
    name="t",
    columns={
        "x": ColumnContract(dtype="float", nullable=True),
        "plan": ColumnContract(dtype="category", allowed=["a", "b", "c"]),
        "genre": ColumnContract(dtype="str"),
    },
)
T = Thresholds(0.10, 0.25, 0.50)


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, n),
            "plan": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
            "genre": rng.choice(["drama", "comedy"], n),
        }
    )


@pytest.mark.parametrize(
    ("psi", "level"),
    [(0.0, "OK"), (0.0999, "OK"), (0.10, "WARNING"), (0.25, "ALERT"), (0.5, "CRITICAL"), (3.2, "CRITICAL")],
)
def test_levels_follow_the_thresholds(psi: float, level: str) -> None:
    assert T.level(psi) == level


def test_numeric_psi_matches_a_plain_numpy_computation() -> None:
    ref, cur = frame(20_000, 1), frame(30_000, 2, shift=0.4)
    profile = build_profile(ref, CONTRACT, 10)
    d = feature_drift(profile, cur, ["x"], T)["x"]
    edges = np.asarray(profile.numeric["x"].edges)
    counts = np.bincount(np.searchsorted(edges, cur["x"].to_numpy(), side="left"), minlength=len(edges) + 1)
    e = np.clip(np.asarray(profile.numeric["x"].shares), 1e-4, None)
    a = np.clip(counts / counts.sum(), 1e-4, None)
    assert d.psi == pytest.approx(float(np.sum((a - e) * np.log(a / e))), rel=1e-9)
    assert d.level in ("WARNING", "ALERT", "CRITICAL")
    assert feature_drift(profile, frame(30_000, 3), ["x"], T)["x"].level == "OK"


def test_categorical_with_no_overlap_is_critical_and_names_the_new_values() -> None:
    ref = frame(5_000, 1)
    cur = ref.assign(genre=np.where(np.arange(len(ref)) % 2, "anime", "documentary"))
    d = feature_drift(build_profile(ref, CONTRACT, 10), cur, ["genre"], T)["genre"]
    assert d.level == "CRITICAL" and d.psi > 5
    assert set(d.unseen) == {"anime", "documentary"}
    assert "never saw" in d.message and "0% of rows fall in known categories" in d.message


def test_an_all_null_day_is_no_data_not_a_crash() -> None:
    ref = frame(5_000, 1)
    cur = ref.assign(x=np.nan, plan=pd.Series([None] * len(ref), dtype="object"))
    out = feature_drift(build_profile(ref, CONTRACT, 10), cur, ["x", "plan"], T)
    for name in ("x", "plan"):
        assert out[name].level == NO_DATA and out[name].psi is None
        assert "5,000 of 5,000 values are null" in out[name].message


def test_a_feature_missing_from_the_current_data_is_reported() -> None:
    ref = frame(5_000, 1)
    out = feature_drift(build_profile(ref, CONTRACT, 10), ref.drop(columns=["x"]), ["x", "plan"], T)
    assert out["x"].level == MISSING and "'x' is absent from the current data" in out["x"].message
    assert out["plan"].level == "OK"


def test_text_numbers_from_csv_are_parsed() -> None:
    ref = frame(5_000, 1)
    cur = ref.assign(x=ref["x"].map(lambda v: f"{v:.6f}").astype("string"))
    d = feature_drift(build_profile(ref, CONTRACT, 10), cur, ["x"], T)["x"]
    assert d.level == "OK" and d.count == 5_000

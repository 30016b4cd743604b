"""Reference profile and PSI: finite always, statuses, unit-change diagnosis."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.contracts.profile import ReferenceProfile, bin_counts, build_profile
from pipeline.contracts.psi import psi_against, psi_value
from pipeline.spec.schema import ContractSpec

CONTRACT = ContractSpec(
    name="t",
    columns={
        "avg_session_minutes": {"dtype": "float", "unit": "minutes", "min": 0, "max": 600},
        "sessions": {"dtype": "int", "min": 0, "max": 1000},
        "plan": {"dtype": "category", "allowed": ["basic", "premium"]},
    },
)


def _frame(n=50_000, seed=0, scale=1.0, shift=0.0):
    rng = np.random.default_rng(seed)
    minutes = rng.lognormal(3, 0.4, n)
    return pd.DataFrame(
        {
            "avg_session_minutes": minutes * scale + shift * minutes.std(),
            "sessions": rng.poisson(20, n),
            "plan": rng.choice(["basic", "premium"], n, p=[0.7, 0.3]),
        }
    )


def test_profile_json_round_trip():
    p = build_profile(_frame(), CONTRACT, bins=10)
    q = ReferenceProfile.from_json(p.to_json())
    assert q == p
    num = q.numeric["avg_session_minutes"]
    assert len(num.edges) == 9 and math.isclose(sum(num.shares), 1.0)
    assert num.edges == sorted(set(num.edges))
    assert set(q.categorical["plan"].shares) == {"basic", "premium", "__other__"}


def test_identical_data_is_ok():
    df = _frame()
    res = psi_against(build_profile(df, CONTRACT, 10), df)
    for r in res.values():
        assert r.psi < 1e-6 and r.status == "OK" and r.suspected_unit_change is None


def test_unit_bug_x1_60_alerts_and_is_diagnosed():
    prof = build_profile(_frame(), CONTRACT, 10)
    r = psi_against(prof, _frame(seed=1, scale=1 / 60), 0.10, 0.25)["avg_session_minutes"]
    assert r.status == "ALERT" and r.psi > 1
    assert r.suspected_unit_change == "x1/60" and "unit change (x1/60)" in r.message


def test_mean_shift_half_std_warns_or_alerts():
    prof = build_profile(_frame(), CONTRACT, 10)
    r = psi_against(prof, _frame(seed=2, shift=0.5))["avg_session_minutes"]
    assert r.status in ("WARNING", "ALERT") and r.suspected_unit_change is None


def test_empty_bins_and_tiny_data_stay_finite():
    prof = build_profile(_frame(), CONTRACT, 10)
    cur = pd.DataFrame(
        {"avg_session_minutes": np.full(5000, 1e6), "sessions": np.zeros(5000, int), "plan": ["gold"] * 5000}
    )
    res = psi_against(prof, cur)
    assert all(math.isfinite(r.psi) for r in res.values())
    assert res["plan"].status == "ALERT" and "outside the reference" in res["plan"].message
    tiny = psi_against(prof, _frame(n=10))
    assert all(r.status == "insufficient_data" and math.isfinite(r.psi) for r in tiny.values())
    empty = psi_against(prof, _frame().iloc[:0])
    assert all(r.psi == 0.0 and r.status == "insufficient_data" for r in empty.values())
    allnan = psi_against(prof, pd.DataFrame({"avg_session_minutes": np.full(1000, np.nan)}))
    assert allnan["avg_session_minutes"].null_rate == 1.0 and math.isfinite(allnan["avg_session_minutes"].psi)


def test_bin_counts_matches_histogram():
    rng = np.random.default_rng(0)
    v = rng.normal(size=300_001)
    v[::97] = np.nan
    edges = np.quantile(v[~np.isnan(v)], [0.1, 0.5, 0.9])
    got = bin_counts(v, edges, chunk=1000)
    want, _ = np.histogram(v[~np.isnan(v)], bins=np.r_[-np.inf, edges, np.inf])
    # histogram bins are [a, b); ours are (a, b]: equal for continuous data
    assert got[:-1].tolist() == want.tolist() and got[-1] == np.isnan(v).sum()
    assert psi_value(np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5])) > 0

"""Immediate triggers: no verdict below the minimum sample count, then error rate and p99 against the spec."""

from __future__ import annotations

from pipeline.serving.triggers import ImmediateTriggers


def test_no_verdict_below_the_minimum_samples_then_error_rate_fires() -> None:
    triggers = ImmediateTriggers(error_rate=0.005, p99_latency_ms=60, min_samples=100)
    triggers.reset("ro-1")
    for i in range(99):
        triggers.record("challenger", 2.0, error=i == 0)
    assert triggers.breach() is None  # 1 error in 99: too few samples to judge
    triggers.record("challenger", 2.0, error=False)
    assert "error rate 1.00%" in (triggers.breach() or "")
    assert triggers.breach("champion") is None


def test_p99_latency_fires_and_a_new_rollout_starts_clean() -> None:
    triggers = ImmediateTriggers(error_rate=0.005, p99_latency_ms=60, min_samples=50)
    triggers.reset("ro-1")
    for i in range(100):
        triggers.record("challenger", 100.0 if i % 10 == 0 else 3.0, error=False)
    assert "p99 latency 100.0 ms" in (triggers.breach() or "")
    triggers.reset("ro-1")  # same rollout (a new stage): the window is kept
    assert triggers.breach() is not None
    triggers.reset("ro-2")
    assert triggers.breach() is None and triggers.to_dict()["challenger"]["samples"] == 0


def test_thresholds_switched_off_never_fire() -> None:
    triggers = ImmediateTriggers(error_rate=None, p99_latency_ms=None, min_samples=1)
    triggers.reset("ro-1")
    for _ in range(10):
        triggers.record("challenger", 1000.0, error=True)
    assert triggers.breach() is None

"""Retrain triggers: thresholds, dedup, critical bypass, same-minute merge, label waits, the record."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.spec.errors import SpecError
from pipeline.spec.load import load_spec
from pipeline.spec.schema import DriftTrigger, PerformanceTrigger, ScheduleTrigger, TriggersSpec
from pipeline.triggers import DayFacts, TriggerEngine, evaluate_and_record, read_record, record_not_started
from pipeline.triggers.cron import fire_times

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # a Sunday, 02:00


def engine(**triggers) -> TriggerEngine:
    spec = TriggersSpec(
        schedule=ScheduleTrigger(cron="0 2 * * 0"),
        drift=DriftTrigger(features=["a", "b"], **triggers.pop("drift", {})),
        performance=PerformanceTrigger(metric="ndcg@10", floor=0.15, max_relative_decline=0.10, baseline_window="7d"),
        **triggers,
    )
    return TriggerEngine(spec, ["a", "b"], "recommendation")


def facts(day: date, psi: float = 0.01, ndcg: float = 0.18, labels: bool = True) -> DayFacts:
    return DayFacts(day, {"a": psi, "b": 0.02}, {"ndcg@10": ndcg}, labels)


def test_drift_levels_and_reasons() -> None:
    e = engine()
    d = e.evaluate(T0, facts(T0.date(), psi=0.10))
    assert [(x.trigger, x.status) for x in d.evaluations] == [
        ("drift", "below_threshold"),
        ("performance", "below_threshold"),
    ]
    assert "max PSI 0.100 (a) <= 0.25" in d.evaluations[0].reason
    d = e.evaluate(T0 + timedelta(days=2), facts(T0.date(), psi=0.30))
    assert d.retrain == 1 and d.fired[0].reason.startswith("PSI a 0.300 (> 0.25)") and d.approval


def test_two_triggers_in_the_same_minute_start_one_retrain() -> None:
    e = engine()
    d = e.evaluate(T0, facts(T0.date(), psi=0.30), scheduled=True)
    assert d.retrain == 1 and {x.trigger for x in d.fired} == {"schedule", "drift"}
    # the same signal again 20 seconds later (another process, same minute): merged, no second retrain
    again = e.evaluate(T0 + timedelta(seconds=20), facts(T0.date(), psi=0.9))
    assert again.retrain is None and again.evaluations[0].status == "merged"
    assert e.retrains == 1


def test_dedup_window_and_critical_bypass() -> None:
    e = engine(rearm=False)
    assert e.on_schedule(T0).retrain == 1
    later = T0 + timedelta(hours=5)
    d = e.evaluate(later, facts(T0.date(), psi=0.30))
    assert d.retrain is None and d.evaluations[0].status == "suppressed"
    assert "dedup: retrain #1 at 2026-03-01 02:00 was 5.0 h ago < min_interval 24h" in d.evaluations[0].reason
    d = e.evaluate(later + timedelta(hours=1), facts(T0.date(), psi=0.55))
    assert d.retrain == 2 and d.critical and "bypasses the 24h dedup window" in d.fired[0].reason
    d = e.evaluate(later + timedelta(hours=2), facts(T0.date(), ndcg=0.14))  # below the floor: critical too
    assert d.retrain == 3 and d.fired[0].trigger == "performance"
    assert e.on_schedule(T0 + timedelta(days=7)).retrain == 4  # the window has passed


def test_a_lasting_condition_retrains_once_until_it_clears() -> None:
    e = engine()
    day = T0.date()
    assert e.evaluate(T0 + timedelta(days=1), facts(day, psi=0.3)).retrain == 1
    held = e.evaluate(T0 + timedelta(days=3), facts(day, psi=0.3))
    assert held.retrain is None and "fires again once it clears" in held.evaluations[0].reason
    e.evaluate(T0 + timedelta(days=4), facts(day, psi=0.05))  # cleared: re-armed
    assert e.evaluate(T0 + timedelta(days=5), facts(day, psi=0.3)).retrain == 2


def test_relative_decline_vs_rolling_baseline() -> None:
    e = engine()
    start = date(2026, 3, 1)
    for i in range(7):
        e.evaluate(datetime(2026, 3, 2 + i, tzinfo=UTC), facts(start + timedelta(days=i), ndcg=0.18))
    d = e.evaluate(datetime(2026, 3, 9, tzinfo=UTC), facts(start + timedelta(days=7), ndcg=0.16))
    [fired] = d.fired
    assert (
        fired.trigger == "performance"
        and "7-day mean 0.1800" in fired.reason
        and "decline 11.1% > 10.0%" in fired.reason
    )


def test_wait_for_labels_holds_a_drift_retrain() -> None:
    e = engine(drift={"wait_for_labels": True})
    day = T0.date()
    d = e.evaluate(T0 + timedelta(days=1), facts(day, psi=0.3, labels=False))
    assert d.retrain is None and d.evaluations[0].status == "waiting_for_labels"
    assert d.evaluations[1].status == "no_data"  # no labels: performance measures nothing
    d = e.evaluate(T0 + timedelta(days=2), facts(day + timedelta(days=1), psi=0.05, labels=True))
    assert d.retrain == 1 and "labels now in" in d.fired[0].reason
    # critical drift does not wait
    d = e.evaluate(T0 + timedelta(days=9), facts(day, psi=0.7, labels=False))
    assert d.retrain == 2


def test_record_is_append_only_and_resumes_the_engine(tmp_path: Path) -> None:
    spec = load_spec(REPO / "specs" / "streamrec.yaml").spec
    path = tmp_path / "triggers.jsonl"
    day = date(2026, 3, 1)
    psi = {"item_id": 0.3}
    first = evaluate_and_record(spec, DayFacts(day, psi, {"ndcg@10": 0.18}), path=path)
    assert first.retrain == 1
    # a second process, 30 s later, same minute and the schedule: one retrain between them
    at = first.at + timedelta(seconds=30)
    second = evaluate_and_record(spec, None, scheduled=True, at=at, path=path, source="schedule")
    assert second.retrain is None and second.evaluations[0].status == "merged"
    lines = read_record(path)
    assert [(r["trigger"], r["status"]) for r in lines] == [
        ("drift", "fired"),
        ("performance", "below_threshold"),
        ("schedule", "merged"),
    ]
    assert all(r["reason"] for r in lines)


def test_monitoring_today_never_dates_a_retrain_in_the_future(tmp_path: Path) -> None:
    """Today's facts are 'observed' at the end of today; the live record must say now instead."""
    spec = load_spec(REPO / "specs" / "streamrec.yaml").spec
    path = tmp_path / "triggers.jsonl"
    before = datetime.now(UTC)
    decision = evaluate_and_record(spec, DayFacts(before.date(), {"item_id": 0.3}, {"ndcg@10": 0.18}), path=path)
    assert decision.retrain == 1
    assert all(datetime.fromisoformat(r["at"]) <= datetime.now(UTC) for r in read_record(path))


def test_a_retrain_that_never_started_does_not_dedup_the_next(tmp_path: Path) -> None:
    """The monitor prescribed a retrain nobody started: the scheduled one an hour later must still run."""
    spec = load_spec(REPO / "specs" / "streamrec.yaml").spec
    path = tmp_path / "triggers.jsonl"
    at = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    prescribed = evaluate_and_record(spec, DayFacts(date(2026, 2, 28), {"item_id": 0.3}), at=at, path=path)
    assert prescribed.retrain == 1
    # without the not_started line the schedule would be suppressed (dedup against #1, 1 h ago < 24 h)
    record_not_started(spec, 1, "monitor without --retrain", "monitor", path=path)
    scheduled = evaluate_and_record(spec, None, scheduled=True, at=at + timedelta(hours=1), path=path)
    assert scheduled.retrain == 2 and scheduled.evaluations[0].status == "fired"
    # ... and a retrain that ran does dedup the next one
    again = evaluate_and_record(spec, None, scheduled=True, at=at + timedelta(hours=2), path=path)
    assert again.retrain is None and again.evaluations[0].status == "suppressed"
    assert "retrain #2" in again.evaluations[0].reason


def test_cron_fires_in_its_timezone() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    times = fire_times("0 2 * * 0", "Europe/Berlin", start, start + timedelta(days=14))
    assert [t.isoformat() for t in times] == ["2026-03-01T01:00:00+00:00", "2026-03-08T01:00:00+00:00"]


def test_a_cron_that_never_fires_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as err:
        load_spec(REPO / "specs" / "streamrec.yaml", ["triggers.schedule.cron=0 2 30 2 *"])
    text = err.value.render()
    assert "triggers.schedule.cron" in text and "never fires" in text

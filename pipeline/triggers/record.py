"""The append-only record of every trigger evaluation of a spec (JSONL), and the live entry point.

One line per evaluation: fired, suppressed by dedup, merged into a retrain of the same
minute, waiting for labels, below threshold, or no data, each with its reason. The record
is also the engine's memory: a new process rebuilds the state from it, under an exclusive
lock, so the monitor flow and a scheduled retrain firing in the same minute start one
retrain between them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.spec.schema import Spec
from pipeline.triggers.engine import NOT_STARTED, Decision, TriggerEngine
from pipeline.triggers.facts import DayFacts

RECORD_FILE = "triggers.jsonl"


def record_path(spec: Spec, base: Path | None = None) -> Path:
    """`<runtime.runs_dir>/<spec name>/triggers.jsonl` (runs_dir relative to `base`, default the cwd)."""
    runs = Path(spec.runtime.runs_dir)
    if not runs.is_absolute() and base is not None:
        runs = base / runs
    return runs / spec.name / RECORD_FILE


def read_record(path: Path) -> list[dict[str, Any]]:
    """Every recorded evaluation, oldest first; a torn last line (a crash mid-append) is skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and "at" in entry:
                out.append(entry)
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _append(path: Path, decision: Decision, source: str) -> None:
    lines = [json.dumps({**e.to_dict(), "source": source}, sort_keys=True) for e in decision.evaluations]
    if not lines:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def evaluate_and_record(
    spec: Spec,
    facts: DayFacts | None = None,
    *,
    scheduled: bool = False,
    at: datetime | None = None,
    path: Path | None = None,
    source: str = "monitor",
) -> Decision:
    """Evaluate a spec's triggers now (or `at`) on `facts` and/or a schedule firing; record every evaluation.

    The API the daily monitor calls with its DayFacts (and the scheduled retrain flow with
    scheduled=True). `decision.retrain` is not None when a retrain should start;
    `decision.approval` says whether its model needs a human approval before canary.
    """
    path = path or record_path(spec)
    now = datetime.now(UTC)
    # a day's facts are "observed" when the day ends; monitoring today must not date a retrain in the future
    at = at or (min(facts.observed_at(), now) if facts is not None else now)
    with _locked(path):
        engine = TriggerEngine.for_spec(spec)
        engine.restore(read_record(path))
        decision = engine.evaluate(at, facts, scheduled=scheduled)
        _append(path, decision, source)
    return decision


def record_not_started(spec: Spec, retrain: int, reason: str, source: str, path: Path | None = None) -> None:
    """Retrain #`retrain` was decided but nobody started it: dedup and rearm then ignore it."""
    path = path or record_path(spec)
    line = {"at": datetime.now(UTC).isoformat(), "trigger": "retrain", "status": NOT_STARTED}
    line |= {"retrain": retrain, "reason": reason, "source": source}
    with _locked(path), open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())

"""Request log: rows round-trip through Parquet parts, outcomes join by request id, a full buffer drops (counted)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from pipeline.serving.request_log import Entry, RequestLog, join_outcomes, read_request_log


def _entry(i: int, **extra) -> Entry:
    fields = dict(
        request_id=f"r{i}",
        entity_id=f"sub-{i}",
        bundle="churn:v1",
        side="champion" if i % 2 else "challenger",
        stage="canary",
        rollout_id="ro-1",
        latency_ms=1.5,
        status="ok",
        probability=i / 100,
    )
    return Entry(**{**fields, **extra})


def test_rows_round_trip_and_join_outcomes(tmp_path: Path) -> None:
    rlog = RequestLog(tmp_path / "requests", flush_rows=10, flush_interval_s=60)
    for i in range(25):
        rlog.log(_entry(i))
    rlog.log(_entry(99, status="error", error="ValueError: boom", probability=None, shadow=True))
    assert rlog.flush() is not None
    frame = read_request_log(tmp_path / "requests")
    assert len(frame) == 26 and set(frame["request_id"]) == {f"r{i}" for i in [*range(25), 99]}
    row = frame.set_index("request_id").loc["r99"]
    assert row["status"] == "error" and row["error"] == "ValueError: boom" and bool(row["shadow"])
    assert pd.isna(row["probability"]) and str(frame["ts"].dtype).startswith("datetime64")
    outcomes = pd.DataFrame({"request_id": ["r3", "r4"], "churned": [1, 0]})
    joined = join_outcomes(frame, outcomes)
    assert joined.set_index("request_id").loc[["r3", "r4"], "churned"].tolist() == [1, 0]
    assert joined["churned"].isna().sum() == 24


def _wait(done, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_writer_thread_flushes_by_size_and_by_time_into_separate_parts(tmp_path: Path) -> None:
    rlog = RequestLog(tmp_path, worker="w1", flush_rows=5, flush_interval_s=0.2).start()
    try:
        for i in range(5):
            rlog.log(_entry(i))
        _wait(lambda: rlog.written == 5)  # the fifth row woke the writer
        rlog.log(_entry(5))
        _wait(lambda: rlog.written == 6)  # one row: written when the interval ran out
    finally:
        rlog.stop()
    parts = sorted(p.name for p in tmp_path.glob("part-*.parquet"))
    assert rlog.written == 6 and parts[0] == "part-w1-000001.parquet" and len(parts) >= 2
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_a_full_buffer_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    rlog = RequestLog(tmp_path, max_buffer=3, flush_rows=100, flush_interval_s=60)
    for i in range(10):
        rlog.log(_entry(i))
    expected = {"logged": 3, "dropped": 7, "written": 0, "write_errors": 0, "quarantined": 0, "buffered": 3}
    assert rlog.counts() == expected


def test_a_failed_write_is_counted_and_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    rlog = RequestLog(blocker / "requests", flush_rows=100, flush_interval_s=60)
    rlog.log(_entry(1))
    assert rlog.flush() is None
    assert rlog.counts()["write_errors"] == 1 and rlog.counts()["dropped"] == 1


def test_one_unencodable_row_is_quarantined_and_the_others_are_written(tmp_path: Path) -> None:
    """Issue 15.2: a lone surrogate in one row used to lose the worker's whole buffered part."""
    rlog = RequestLog(tmp_path / "requests", flush_rows=10_000, flush_interval_s=60)
    for i in range(999):
        rlog.log(_entry(i))
    rlog.log(_entry(1000, entity_id="\udc80", status="invalid", error="bad \udc80 text"))
    assert rlog.flush() is not None
    frame = read_request_log(tmp_path / "requests")
    assert len(frame) == 999 and "r1000" not in set(frame["request_id"])
    counts = rlog.counts()
    assert counts["written"] == 999 and counts["quarantined"] == 1 and counts["dropped"] == 0, counts
    lines = [json.loads(line) for p in (tmp_path / "requests" / "quarantine").glob("*.jsonl") for line in p.open()]
    assert len(lines) == 1 and lines[0]["row"]["request_id"] == "r1000", lines
    assert lines[0]["row"]["entity_id"] == "\udc80" and "surrogate" in lines[0]["reason"], lines

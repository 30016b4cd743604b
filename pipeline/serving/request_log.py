"""A buffered Parquet log of every scoring request: which bundle answered, on which side, how fast.

/score rows carry the probability; /recommend rows carry the returned `items` and the fallback
`level` instead. /score rows during a live rollout carry `groups`, a JSON object of the
record's fairness group values (e.g. {"age_band": "50+"}), so a stage can measure the
challenger's group gaps against outcomes. Parts written before a column existed read it back null.

Why buffered on a thread: a request must never wait for, or fail because of, a disk write. The
request path appends one tuple under a lock (~1 us); a daemon thread writes a Parquet part
every `flush_rows` rows or `flush_interval_s` seconds, as a temp file renamed into place, so a
reader never sees a half-written part. When the buffer is full (the disk is slow or gone),
rows are dropped and counted, never queued without bound. A row that cannot be encoded is
quarantined (`<dir>/quarantine/*.jsonl`, with the reason) and the part's other rows are
written. Outcomes (a churn label weeks later, a click) join the log by `request_id`.

Layout: `<dir>/part-<worker>-<seq>.parquet`; `<worker>` is pid plus a random suffix, so two
workers (or a restarted one) never write the same name.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from prometheus_client import Counter

from pipeline.atomic_files import read_table_verified, write_table_atomic

log = logging.getLogger("keel.serving")

SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("entity_id", pa.string()),
        ("bundle", pa.string()),
        ("side", pa.string()),  # champion | challenger
        ("stage", pa.string()),  # rollout stage, null outside a rollout
        ("rollout_id", pa.string()),
        ("latency_ms", pa.float64()),
        ("status", pa.string()),  # ok | invalid (4xx) | error (5xx or a failed shadow) | unavailable
        ("error", pa.string()),
        ("probability", pa.float64()),
        ("shadow", pa.bool_()),
        ("items", pa.list_(pa.string())),  # /recommend: the returned item ids, in order (null for /score)
        ("level", pa.string()),  # /recommend: the degradation level that answered (null for /score)
        ("groups", pa.string()),  # /score in a rollout: JSON {group column: value} of the record (null otherwise)
    ]
)
FIELDS = tuple(SCHEMA.names)
QUARANTINE_DIR = "quarantine"  # rows that could not be encoded, as JSON lines with the reason
ERROR_MAX = 300

ROWS = Counter("keel_request_log_rows", "Request-log rows, by what happened to them", ["outcome"])
_LOGGED, _DROPPED = ROWS.labels("logged"), ROWS.labels("dropped")  # bound once: the request path uses them


@dataclass(frozen=True)
class Entry:
    """One request (or one record of a batch, or one shadow score)."""

    request_id: str
    entity_id: str | None
    bundle: str | None
    side: str
    stage: str | None
    rollout_id: str | None
    latency_ms: float
    status: str
    error: str | None = None
    probability: float | None = None
    shadow: bool = False
    items: list[str] | None = None
    level: str | None = None
    groups: str | None = None


class RequestLog:
    """Never blocks a request: append under a lock, write on a daemon thread, drop (counted) when full."""

    def __init__(
        self,
        directory: Path,
        worker: str | None = None,
        flush_rows: int = 1000,
        flush_interval_s: float = 1.0,
        max_buffer: int = 50_000,
    ) -> None:
        self.directory = Path(directory)
        self.worker = worker or f"{os.getpid()}-{secrets.token_hex(2)}"
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self.max_buffer = max_buffer
        self.logged = self.dropped = self.written = self.write_errors = self.quarantined = 0
        self._rows: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seq = 0
        self._thread: threading.Thread | None = None

    def log(self, entry: Entry) -> None:
        """Buffer one row; O(1), no I/O, never raises for a full buffer (the row is dropped and counted)."""
        row = (
            entry.request_id,
            datetime.now(UTC),
            entry.entity_id,
            entry.bundle,
            entry.side,
            entry.stage,
            entry.rollout_id,
            entry.latency_ms,
            entry.status,
            entry.error[:ERROR_MAX] if entry.error else None,
            entry.probability,
            entry.shadow,
            entry.items,
            entry.level,
            entry.groups,
        )
        with self._lock:
            if len(self._rows) >= self.max_buffer:
                self.dropped += 1
                _DROPPED.inc()
                return
            self._rows.append(row)
            self.logged += 1
            full = len(self._rows) >= self.flush_rows
        _LOGGED.inc()
        if full:
            self._wake.set()

    def start(self) -> RequestLog:
        self._thread = threading.Thread(target=self._run, name="keel-request-log", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Flush what is buffered and stop the writer (service shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.flush()

    def flush(self) -> Path | None:
        """Write the buffered rows as one part now; None when there was nothing to write or the write failed.

        A row that cannot be encoded (e.g. text with a lone surrogate) must not take its part's other
        rows with it (issue 15.2): on a failed encode the rows are tried one by one, the valid ones are
        written, the others quarantined as JSON lines with the reason.
        """
        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return None
            try:
                table = _table(rows)
            except Exception:
                rows = self._quarantine_bad(rows)
                if not rows:
                    return None
                table = _table(rows)
            try:
                return self._write(table)
            except Exception:  # disk full, permissions: count and drop, never take serving down
                self.write_errors += 1
                self.dropped += len(rows)
                ROWS.labels("write_failed").inc(len(rows))
                log.exception("request log: could not write %d rows to %s", len(rows), self.directory)
                return None

    def _quarantine_bad(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The rows that encode; the others go to `<dir>/quarantine/` with why, and are counted."""
        good: list[tuple[Any, ...]] = []
        bad: list[dict[str, Any]] = []
        for row in rows:
            try:
                _table([row])
            except Exception as exc:
                record = {name: _jsonable(value) for name, value in zip(FIELDS, row, strict=True)}
                bad.append({"reason": f"{type(exc).__name__}: {exc}"[:ERROR_MAX], "row": record})
            else:
                good.append(row)
        self.quarantined += len(bad)
        ROWS.labels("quarantined").inc(len(bad))
        self._seq += 1
        target = self.directory / QUARANTINE_DIR / f"part-{self.worker}-{self._seq:06d}.jsonl"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a", encoding="ascii") as out:  # ensure_ascii: a lone surrogate becomes "\udc80"
                out.writelines(json.dumps(b, ensure_ascii=True, default=str) + "\n" for b in bad)
        except OSError:
            log.exception("request log: could not quarantine %d rows in %s", len(bad), target.parent)
        log.error("request log: %d of %d rows could not be encoded, quarantined in %s", len(bad), len(rows), target)
        return good

    def _write(self, table: pa.Table) -> Path:
        self._seq += 1
        final = write_table_atomic(table, self.directory / f"part-{self.worker}-{self._seq:06d}.parquet")
        self.written += table.num_rows
        ROWS.labels("written").inc(table.num_rows)
        return final

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval_s
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_flush - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                break
            self.flush()
            next_flush = time.monotonic() + self.flush_interval_s

    def counts(self) -> dict[str, int]:
        return {
            "logged": self.logged,
            "dropped": self.dropped,
            "written": self.written,
            "write_errors": self.write_errors,
            "quarantined": self.quarantined,
            "buffered": len(self._rows),
        }


def _table(rows: list[tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    return pa.table([pa.array(col, type=SCHEMA.field(i).type) for i, col in enumerate(columns)], schema=SCHEMA)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def read_request_log(directory: Path) -> pd.DataFrame:
    """Every committed part under `directory` as one frame (temp files of in-flight writes are skipped)."""
    parts = sorted(Path(directory).glob("part-*.parquet"))
    if not parts:
        return SCHEMA.empty_table().to_pandas()
    return pa.concat_tables([read_table_verified(p, schema=SCHEMA) for p in parts]).to_pandas()


def join_outcomes(requests: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """Requests with their outcomes (any columns keyed by request_id); requests without one keep NaN."""
    return requests.merge(outcomes, on="request_id", how="left", validate="many_to_one")

"""The outcomes log: what happened after a request (a click, a churn, a watch), joined to the request log by request_id.

Why a separate append-only directory of Parquet parts beside the request log rather than a
column in it: outcomes arrive later (seconds for a click, weeks for a churn) and from another
process (the event pipeline, the simulator, an operator's CSV), while the request log is
written only by the serving workers. Each append is one part written to a temp name and
renamed, so a reader never sees half a part and two writers never collide.

Layout: `$BENTOML_HOME/keel/<name>/outcomes/part-<time>-<random>.parquet` with columns
request_id, ts, outcome (the metric name, e.g. "ctr"), value (1.0 = clicked).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa

from pipeline.atomic_files import read_table_verified, write_table_atomic
from pipeline.registry.tags import check_name

OUTCOMES_DIR = "outcomes"
REQUESTS_DIR = "requests"
SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("outcome", pa.string()),
        ("value", pa.float64()),
    ]
)


def outcomes_dir(keel_dir: Path, name: str) -> Path:
    return Path(keel_dir) / check_name(name) / OUTCOMES_DIR


def requests_dir(keel_dir: Path, name: str) -> Path:
    """Where the service writes its request log by default (KEEL_REQUEST_LOG_DIR overrides it there)."""
    return Path(keel_dir) / check_name(name) / REQUESTS_DIR


def append_outcomes(directory: Path, rows: Iterable[tuple[str, str, float]], ts: datetime | None = None) -> Path | None:
    """Append (request_id, outcome, value) rows as one part; None when there were none. ValueError on a bad row."""
    rows = list(rows)
    if not rows:
        return None
    for i, row in enumerate(rows):
        if len(row) != 3 or not isinstance(row[0], str) or not row[0] or not isinstance(row[1], str) or not row[1]:
            raise ValueError(f"outcome row {i}: expected (request_id, outcome name, value), got {row!r}")
        if isinstance(row[2], bool) or not isinstance(row[2], int | float):
            raise ValueError(f"outcome row {i}: value {row[2]!r} is not a number")
    when = ts or datetime.now(UTC)
    table = pa.table(
        {
            "request_id": [r[0] for r in rows],
            "ts": pa.array([when] * len(rows), type=pa.timestamp("us", tz="UTC")),
            "outcome": [r[1] for r in rows],
            "value": [float(r[2]) for r in rows],
        },
        schema=SCHEMA,
    )
    final = Path(directory) / f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}.parquet"
    return write_table_atomic(table, final)


def read_outcomes(directory: Path) -> pd.DataFrame:
    """Every committed part as one frame (empty, with the columns, when there is none)."""
    parts = sorted(Path(directory).glob("part-*.parquet"))
    if not parts:
        return SCHEMA.empty_table().to_pandas()
    return pa.concat_tables([read_table_verified(p, schema=SCHEMA) for p in parts]).to_pandas()


def read_outcomes_csv(path: Path) -> list[tuple[str, str, float]]:
    """An operator's CSV (request_id, outcome, value) as rows for append_outcomes; ValueError names the problem."""
    frame = pd.read_csv(path, dtype={"request_id": str, "outcome": str})
    missing = {"request_id", "outcome", "value"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)} (need request_id, outcome, value)")
    values = pd.to_numeric(frame["value"], errors="coerce")
    bad = frame.index[values.isna() | frame["request_id"].isna() | frame["outcome"].isna()].tolist()
    if bad:
        raise ValueError(f"{path}: rows {bad[:10]} have an empty request_id/outcome or a non-numeric value")
    return list(zip(frame["request_id"], frame["outcome"], values.astype(float), strict=True))

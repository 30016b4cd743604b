"""Parquet files that appear whole or not at all (request log parts, outcomes, metrics history)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_table_atomic(table: pa.Table, target: Path) -> Path:
    """Temp file + rename in the same folder: a reader or a crash sees the old file or the whole new one.

    The temp name starts with a dot, so globbing `part-*.parquet` and pyarrow datasets skip it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return target

"""Keel's own Parquet files: written whole or not at all, with page checksums, and read back verified.

Every Parquet file Keel writes for itself (request-log parts, outcomes, metrics history, the score
cache, high-risk and masked-churner lists, scores, quarantine) goes through `write_table_atomic` or
`write_frame_atomic`, and Keel reads them back with `read_table_verified`.

Why checksums: a flipped bit on disk in a data page of a snappy-compressed float column can
decode without error into different numbers (issue 15): a probability, a latency or an outcome
silently changes a rollout decision. Each data page carries a CRC32 (`write_page_checksum=True`,
~1% larger write time), and reads verify it (`page_checksum_verification=True`), so a damaged
file is an error that names the file instead of wrong numbers. A file written before this (or by
someone else, without checksums) still reads: pages without a CRC are not verified.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["DamagedParquet", "read_table_verified", "write_frame_atomic", "write_table_atomic"]


class DamagedParquet(OSError):
    """A Keel Parquet file failed its page checksums (or is otherwise unreadable); the message names the file."""


def write_table_atomic(table: pa.Table, target: Path, **options: Any) -> Path:
    """Temp file + rename in the same folder: a reader or a crash sees the old file or the whole new one.

    The temp name starts with a dot, so globbing `part-*.parquet` and pyarrow datasets skip it.
    Every data page carries a CRC32 (`read_table_verified` checks it). `options` go to pq.write_table.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        pq.write_table(table, tmp, write_page_checksum=True, **options)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return target


def write_frame_atomic(frame: pd.DataFrame, target: Path, **options: Any) -> Path:
    """`frame.to_parquet(target, index=False)`, atomically and with page checksums."""
    return write_table_atomic(pa.Table.from_pandas(frame, preserve_index=False), target, **options)


def read_table_verified(path: Path | str, **options: Any) -> pa.Table:
    """pq.read_table with page checksum verification; DamagedParquet (naming the file) when it fails.

    A missing file stays FileNotFoundError. `options` go to pq.read_table (columns, schema, ...).
    """
    try:
        return pq.read_table(path, page_checksum_verification=True, **options)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise DamagedParquet(
            f"{path}: damaged Parquet file, refused rather than read as wrong values "
            f"(page checksum or format check failed: {str(exc)[:300]}); restore it or remove it"
        ) from exc

"""Benchmark: `keel init-spec` on a 10M-row x 100-column Parquet file (target: under 10 s by sampling).

Usage: python bench/bench_init_spec.py [--rows 10000000] [--row-group 500000] [--sample-rows 100000]
                                        [--dir DIR] [--keep]
The file is written once into a temporary folder (or DIR) in row groups, from one generated block
repeated with a shifted id, so generation stays near a minute: 1 id, 59 floats, 30 ints, 9
categories (strings), 1 timestamp and a 0/1 label with ~12% positives. The last row group holds
values past every other group's range, so the figures also show that the ranges come from the
footer statistics of all rows, not from the sample. It runs the real CLI in a fresh process
(`keel init-spec FILE --label churned`), prints the wall time and what init-spec said it read,
then `keel check` on what it wrote.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

KEEL = Path(sys.executable).with_name("keel")
PLANS = ["basic", "standard", "premium", "family", "trial"]


def block(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for i in range(59):
        cols[f"f{i:02d}"] = np.round(rng.gamma(2.0, 10.0 + i, rows), 1)
    for i in range(30):
        cols[f"n{i:02d}"] = rng.integers(0, 10 + 10 * i, rows)
    for i in range(9):
        cols[f"c{i}"] = np.array(PLANS)[rng.integers(0, 3 + i % 3, rows)]
    cols["churned"] = (rng.random(rows) < 0.12).astype(np.int64)
    return cols


def write(path: Path, rows: int, row_group: int) -> float:
    """Write `rows` rows in groups of `row_group`; returns seconds taken."""
    start = time.perf_counter()
    base = block(row_group)
    schema = None
    t0 = np.datetime64("2024-01-01T00:00:00", "s")
    with_writer = None
    try:
        for first in range(0, rows, row_group):
            n = min(row_group, rows - first)
            cols = {"customer_id": np.arange(first, first + n, dtype=np.int64)}
            cols |= {k: v[:n] for k, v in base.items()}
            cols["event_time"] = t0 + np.arange(first, first + n, dtype=np.int64) * 3  # 3 s apart: ~1 year
            if first + n >= rows:  # the last group reaches past every other group's range
                cols["f00"] = cols["f00"] + 10_000.0
            table = pa.table(cols)
            if with_writer is None:
                schema = table.schema
                with_writer = pq.ParquetWriter(path, schema, compression="snappy")
            with_writer.write_table(table, row_group_size=row_group)
    finally:
        if with_writer is not None:
            with_writer.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--row-group", type=int, default=500_000)
    parser.add_argument("--sample-rows", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None, help="reuse/keep the file here")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="keel-bench-init-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data" / "wide.parquet"
    data.parent.mkdir(exist_ok=True)
    if not data.exists() or pq.ParquetFile(data).metadata.num_rows != args.rows:
        seconds = write(data, args.rows, args.row_group)
        print(f"generated {args.rows:,} rows x 101 columns in {seconds:.1f} s")
    meta = pq.ParquetFile(data).metadata
    size = data.stat().st_size / 2**20
    print(
        f"file: {meta.num_rows:,} rows, {meta.num_columns} columns, {meta.num_row_groups} row groups, {size:,.0f} MiB"
    )
    for stale in (work / "specs", work / "conf"):
        shutil.rmtree(stale, ignore_errors=True)
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}
    command = [
        str(KEEL),
        "init-spec",
        "data/wide.parquet",
        "--label",
        "churned",
        "--sample-rows",
        str(args.sample_rows),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    print(done.stdout.strip() or done.stderr.strip())
    print(f"keel init-spec wall time: {wall:.2f} s (exit {done.returncode}; target < 10 s)")
    check = subprocess.run(
        [str(KEEL), "check", "specs/wide.yaml"], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    print(check.stdout.strip() or check.stderr.strip())
    f00 = next(line for line in (work / "conf" / "contract" / "wide.yaml").read_text().splitlines() if "f00:" in line)
    print(f"f00 (the last row group is +10000): {f00.strip()}")
    if not (args.keep or args.dir):
        shutil.rmtree(work)


if __name__ == "__main__":
    main()

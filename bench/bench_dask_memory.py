"""A table larger than any one process may hold, validated and scored on Dask by the real CLI (issue 17).

    GX_ANALYTICS_ENABLED=false PYTHONPATH=. python bench/bench_dask_memory.py --rows 10000000 --parts 40

Writes `--rows` synthetic StreamFlow rows as `--parts` Parquet files (ids unique across parts), measures
the table's size in memory part by part (pandas, deep), trains a bundle with one `keel run` (20k rows),
then runs `keel validate` and `keel score --data DIR` with `runtime=dask_local` and a worker memory limit
of `--memory-limit`, each in a fresh process that reports, at exit, its own peak resident set
(`RUSAGE_SELF`) and the largest of the processes it started and waited for (`RUSAGE_CHILDREN`: the Dask
workers), and counts worker restarts in its log (Dask's nanny restarts a worker past 95% of its limit).
The claim checked: no process ever held the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_dask import SPEC, make_table, train_bundle  # noqa: E402


def table_bytes(table: Path) -> int:
    """The table's pandas size, one part in memory at a time."""
    return sum(int(pd.read_parquet(p).memory_usage(deep=True).sum()) for p in sorted(table.glob("*.parquet")))


WRAPPER = """
import json, resource, sys
from pipeline.cli import main
code = 1
try:
    code = main(sys.argv[1:])
finally:
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"client_kib": self_kib, "workers_kib": kids_kib}), file=sys.stderr)
sys.exit(code)
"""


def peak_of(argv: list[str], env: dict[str, str], cwd: Path) -> dict:
    """Run `keel argv` in a fresh process: wall s, the keel process's own peak resident set, the largest of
    the processes it started (the Dask workers, waited for when the cluster closed), worker restarts."""
    start = time.perf_counter()
    command = [sys.executable, "-c", WRAPPER, *argv]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"keel {' '.join(argv[:2])} exited {done.returncode}:\n{done.stderr[-3000:]}")
    peaks = json.loads([line for line in done.stderr.splitlines() if line.startswith('{"client_kib"')][-1])
    restarts = done.stderr.count("Restarting worker") + done.stderr.count("exceeded 95% memory budget")
    return {
        "wall": wall,
        "client": peaks["client_kib"] * 1024,
        "workers": peaks["workers_kib"] * 1024,
        "restarts": restarts,
        "result": json.loads(done.stdout.strip().splitlines()[-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--parts", type=int, default=40)
    parser.add_argument("--memory-limit", default="1GiB", help="per worker (runtime.dask.local.memory_limit)")
    parser.add_argument("--dir", default=None, help="work folder (kept); default a temporary one")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="keel-bench-dask-mem-"))
    root.mkdir(parents=True, exist_ok=True)
    table = root / "table"
    if not table.exists():
        start = time.perf_counter()
        make_table(root, args.rows, args.parts)
        print(f"wrote {args.rows:,} rows in {args.parts} parts in {time.perf_counter() - start:.0f} s")
    size = table_bytes(table)
    on_disk = sum(p.stat().st_size for p in table.glob("*.parquet"))
    _store, tag = train_bundle(root)
    print(f"table: {size / 2**30:.2f} GiB in memory (pandas, deep), {on_disk / 2**30:.2f} GiB of Parquet; bundle {tag}")
    env = {**os.environ, "BENTOML_HOME": str(root / "bentoml"), "GX_ANALYTICS_ENABLED": "false", "KEEL_WARM": "0"}
    dask = ["runtime=dask_local", f"runtime.dask.local.memory_limit={args.memory_limit}", f"data.source={table}"]
    rows = []
    got = peak_of(["validate", SPEC, *dask, "--json"], env, root)
    rows.append(("keel validate", got, f"{got['result'].get('rows_accepted', 0):,} accepted"))
    out = root / "scores.parquet"
    got = peak_of(["score", SPEC, "--data", str(table), "--out", str(out), "--bundle", tag, *dask, "--json"], env, root)
    rows.append(("keel score", got, f"{got['result'].get('rows_scored', 0):,} scored"))
    print(f"\nworkers: 2 x 1 thread, memory limit {args.memory_limit} each; table {size / 2**30:.2f} GiB in memory")
    print(f"{'command':<16}{'wall s':>8}{'keel process':>15}{'largest worker':>17}{'restarts':>10}  result")
    for name, got, what in rows:
        client, workers = got["client"] / 2**30, got["workers"] / 2**30
        print(f"{name:<16}{got['wall']:>8.1f}{client:>11.2f} GiB{workers:>13.2f} GiB{got['restarts']:>10}  {what}")


if __name__ == "__main__":
    main()

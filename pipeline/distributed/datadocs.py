"""Great Expectations Data Docs for a partitioned table: a seeded sample, with Keel's verdict on each row.

GX validates one pandas frame in one process, so on the Dask executor it sees a sample of at most
`contract.ge_sample_rows` rows (all of them when the table is smaller, and then its pages equal the
local path's): each partition contributes its share of the rows, drawn on its worker with a seed;
Keel's verdict on each sampled row comes from the quarantine dataset the validation committed (its
global row numbers). The pages say it is a sample, of how many rows, with Keel's counts for the
whole table. Only the sample crosses the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.contracts.result import ROW_COL
from pipeline.data.partitioned import Partitions
from pipeline.distributed.validate import MergedResult, load_part
from pipeline.spec.schema import Spec


def shares(rows: list[int], want: int) -> list[int]:
    """Rows to draw from each partition: proportional to its size, `want` in all (largest remainders)."""
    total = sum(rows)
    if total <= want:
        return list(rows)
    exact = np.asarray(rows, dtype=np.float64) * want / total
    out = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - out), kind="stable")[: want - int(out.sum())]:
        out[i] += 1
    return out.tolist()


def sample_part(url: str, start: int, n: int, seed: int, spec: Spec) -> pd.DataFrame:
    """On a worker: `n` seeded rows of one partition, indexed by their row number in the whole table."""
    frame = load_part(url, spec)
    frame.index = pd.RangeIndex(start, start + len(frame))
    if n >= len(frame):
        return frame
    return frame.sample(n=n, random_state=seed).sort_index()


def data_docs_on_dask(
    client: Any,
    spec: Spec,
    parts: Partitions,
    result: MergedResult,
    quarantine: Path,
    out_dir: Path,
    reasons: list[str],
) -> dict[str, Any]:
    """Data Docs of a sample of the partitioned table (the same fields as the local `data_docs` task)."""
    from pipeline.contracts.expectations import write_data_docs

    contract = spec.contract
    if contract.ge_sample_rows == 0:
        return {"index": None, "note": "disabled (contract.ge_sample_rows is 0)"}
    if result.schema_problems or result.rows_in == 0:
        return {"index": None, "note": "no rows to document"}
    rows = [int(p["rows_in"]) for p in result.partitions]
    starts = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(int).tolist()
    take = shares(rows, contract.ge_sample_rows)
    seeds = [spec.data.seed + i for i in range(len(rows))]
    futures = client.map(sample_part, parts.urls(), starts, take, seeds, spec=spec, pure=False)
    sample = pd.concat(client.gather(futures))
    quarantined = pd.read_parquet(quarantine, columns=[ROW_COL])[ROW_COL].to_numpy(dtype=np.int64)
    accepted = ~np.isin(sample.index.to_numpy(), quarantined)
    docs = write_data_docs(
        contract,
        sample.reset_index(drop=True),
        out_dir,
        result=result,
        reasons=reasons,
        table_rows=result.rows_in,
        keel_accepted=accepted,
    )
    return docs.summary()

"""`keel validate` on a Dask cluster: each worker holds its partitions to the contract.

Per partition (on a worker): read -> epoch timestamps -> validate_frame -> write the quarantined rows
(row numbers offset to the table's) as one part of a staging dataset -> keep the accepted rows in
worker memory for the profile. On the client: counts added up (rows_in = accepted + quarantined
for every partition and in total), the reference profile / PSI merged (pipeline/distributed/profile.py),
then the staging directory is renamed to `quarantine/` in one step: a run that fails leaves no
quarantine that looks complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.atomic_files import write_frame_atomic
from pipeline.contracts.result import ROW_COL, ContractResult, SchemaProblem, apply_policy
from pipeline.contracts.validate import validate_frame
from pipeline.data.partitioned import Partitions, read_partition
from pipeline.data.timestamps import apply_timestamp_unit
from pipeline.distributed.errors import DistributedError
from pipeline.distributed.unique import cross_partition_repeats
from pipeline.spec.schema import ContractSpec, Spec

EXAMPLES = 20


@dataclass
class PartResult:
    """One partition's contract result; the accepted frame stays on its worker."""

    index: int
    offset: int
    rows_in: int
    accepted: pd.DataFrame
    rows_quarantined: int
    check_counts: dict[str, int]
    schema_problems: list[SchemaProblem]
    quarantined: pd.DataFrame  # all of them on the worker; a few examples in a summary


@dataclass
class MergedResult(ContractResult):
    """A ContractResult whose counts are summed over partitions (the frames stay on the workers)."""

    accepted_rows: int = 0
    quarantined_rows: int = 0
    partitions: list[dict[str, int]] = field(default_factory=list)

    @property
    def rows_accepted(self) -> int:
        return self.accepted_rows

    @property
    def rows_quarantined(self) -> int:
        return self.quarantined_rows


def load_part(url: str, spec: Spec) -> pd.DataFrame:
    """On a worker: one partition, epoch timestamps already times (as load_frame does locally)."""
    return apply_timestamp_unit(read_partition(url), spec.data, spec.contract)


def check_partition(
    frame: pd.DataFrame,
    index: int,
    offset: int,
    spec: Spec,
    duplicates: dict[str, np.ndarray] | None = None,
) -> PartResult:
    """On a worker: one partition held to the contract (pure: the scheduler may recompute it after a worker
    dies, so it writes nothing; `write_quarantine_part` does).

    `duplicates`: rows repeating a unique value of an earlier partition (pipeline/distributed/unique.py).
    """
    result = validate_frame(frame, spec.contract, duplicates or None)
    accepted = result.accepted
    accepted.index = accepted.index + offset  # row labels of the whole table, as the local read gives
    quarantined = result.quarantined
    quarantined[ROW_COL] = quarantined[ROW_COL] + offset
    return PartResult(
        index,
        offset,
        result.rows_in,
        accepted,
        result.rows_quarantined,
        dict(result.check_counts),
        list(result.schema_problems),
        quarantined,
    )


def write_quarantine_part(part: PartResult, staging: str) -> str:
    """On a worker: the partition's quarantined rows as staging/part-NNNNN.parquet (tmp + rename)."""
    path = os.path.join(staging, f"part-{part.index:05d}.parquet")
    q = part.quarantined
    q = q.astype({c: "string" for c in q.columns if q[c].dtype == object})
    write_frame_atomic(q, Path(path))  # tmp + rename, page checksums; a retried task rewrites the same part
    return path


def _summary(part: PartResult) -> PartResult:
    """The part without its rows, a few quarantined ones as examples (what crosses the network back)."""
    return PartResult(
        part.index,
        part.offset,
        part.rows_in,
        part.accepted.iloc[:0],
        part.rows_quarantined,
        part.check_counts,
        part.schema_problems,
        part.quarantined.head(EXAMPLES),
    )


def _accepted(part: PartResult) -> pd.DataFrame:
    return part.accepted


def validate_partitions(
    client: Any, spec: Spec, parts: Partitions, quarantine_dir: Path | None
) -> tuple[MergedResult, list[Any]]:
    """Contract result summed over partitions, and futures of the accepted frames (kept on the workers).

    `quarantine_dir`: where the quarantine dataset is committed (renamed from a staging directory beside it).
    """
    if parts.protocol == "memory":
        raise DistributedError(
            f"{parts.source}: memory:// lives in one process, so Dask workers cannot read it; "
            "use runtime.executor local or a shared filesystem/object store"
        )
    frames = client.map(load_part, parts.urls(), spec=spec, pure=False)
    rows = [int(n) for n in client.gather(client.map(len, frames, pure=False))]
    starts = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(int).tolist()
    columns = client.submit(lambda f: [str(c) for c in f.columns], frames[0]).result() if frames else []
    repeats = cross_partition_repeats(client, frames, starts, rows, spec.contract, columns)
    staging = None
    if quarantine_dir is not None:
        staging = quarantine_dir.with_name(f".{quarantine_dir.name}.staging-{uuid.uuid4().hex[:8]}")
        staging.mkdir(parents=True)
    try:
        futures = [
            client.submit(check_partition, frame, i, start, spec, repeat, pure=False)
            for i, (frame, start, repeat) in enumerate(zip(frames, starts, repeats, strict=True))
        ]
        summaries = client.gather(client.map(_summary, futures, pure=False))
        if staging is not None:
            client.gather(client.map(write_quarantine_part, futures, staging=str(staging), pure=False))
        accepted = client.map(_accepted, futures, pure=False)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    merged = merge_results(spec.contract, summaries)
    if staging is not None and quarantine_dir is not None:
        os.replace(staging, quarantine_dir)  # one rename: the dataset appears whole or not at all
    return merged, accepted


def merge_results(contract: ContractSpec, parts: list[PartResult]) -> MergedResult:
    counts: dict[str, int] = {}
    problems: list[SchemaProblem] = []
    for part in parts:
        for k, n in part.check_counts.items():
            counts[k] = counts.get(k, 0) + n
        for p in part.schema_problems:
            if p not in problems:
                problems.append(p)
    accepted_rows = sum(p.rows_in - p.rows_quarantined for p in parts)
    quarantined_rows = sum(p.rows_quarantined for p in parts)
    examples = [p.quarantined for p in parts if len(p.quarantined)]
    head = pd.concat(examples, ignore_index=True).head(EXAMPLES) if examples else pd.DataFrame()
    result = MergedResult(
        contract=contract.name,
        engine=f"{contract.engine} (dask, {len(parts)} partitions)",
        rows_in=sum(p.rows_in for p in parts),
        accepted=pd.DataFrame(),
        quarantined=head,
        check_counts=counts,
        schema_problems=problems,
        accepted_rows=accepted_rows,
        quarantined_rows=quarantined_rows,
        partitions=[
            {"rows_in": p.rows_in, "accepted": p.rows_in - p.rows_quarantined, "quarantined": p.rows_quarantined}
            for p in parts
        ],
    )
    assert result.rows_in == accepted_rows + quarantined_rows  # counts in = accepted + quarantined, always
    return apply_policy(result, contract)

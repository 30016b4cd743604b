"""Keel's own Parquet has page checksums and is read verified (issue 15): a flipped byte names the file.

Each writer Keel uses for its own files (request-log parts, outcomes, metrics history, score cache,
high-risk list, scores, quarantine) is checked for CRCs on every data page; a byte flipped inside a
data page of a request-log part, an outcomes part, a metrics-history day and a score-cache file then
makes Keel's own reader refuse the file by name instead of returning other numbers.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.atomic_files import DamagedParquet, read_table_verified, write_frame_atomic, write_table_atomic
from pipeline.monitoring.history import read_history, write_day
from pipeline.rollout.outcomes import append_outcomes, read_outcomes
from pipeline.scoring.batch import HighRiskList
from pipeline.scoring.command import write_scores
from pipeline.serving.cache import FileScoreCache
from pipeline.serving.request_log import Entry, RequestLog, read_request_log


def _flip_in_data_page(path: Path, column: str) -> None:
    """Flip a byte in the middle of `column`'s first column chunk: inside a page body (its values).

    Without checksums such a flip reads back without error as other numbers (measured on pyarrow
    26: 0.34 read as 0.0155, 0.62 as 0.61999999999999), which is what this guards against.
    """
    meta = pq.ParquetFile(path).metadata
    chunk = next(
        meta.row_group(0).column(i)
        for i in range(meta.num_columns)
        if meta.row_group(0).column(i).path_in_schema == column
    )
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    data[start + chunk.total_compressed_size // 2] ^= 0x5A
    path.write_bytes(bytes(data))


def _all_pages_have_crc(path: Path) -> bool:
    """Every column chunk's pages carry a CRC: verification passes, and a read with it is not a no-op."""
    with path.open("rb") as handle:
        raw = handle.read()
    meta = pq.ParquetFile(path).metadata
    for rg in range(meta.num_row_groups):
        for i in range(meta.num_columns):
            chunk = meta.row_group(rg).column(i)
            start = chunk.dictionary_page_offset or chunk.data_page_offset
            damaged = bytearray(raw)
            damaged[start + chunk.total_compressed_size - 1] ^= 0x5A
            try:
                pq.read_table(pa.BufferReader(bytes(damaged)), page_checksum_verification=True)
            except OSError as exc:
                if "CRC" not in str(exc) and "checksum" not in str(exc).lower():
                    return False
            else:
                return False  # a flipped byte went unnoticed: no CRC on that page
    return True


def test_every_keel_writer_puts_checksums_on_every_page(tmp_path: Path) -> None:
    frame = pd.DataFrame({"subscriber_id": ["a", "b", "c"], "probability": [0.91, 0.52, 0.73], "rank": [1, 3, 2]})
    written = [
        write_frame_atomic(frame, tmp_path / "frame.parquet"),
        write_table_atomic(pa.Table.from_pandas(frame), tmp_path / "table.parquet"),
        write_scores(frame, tmp_path / "scores.parquet"),
    ]
    listed = frame.assign(reasons=[["x"], ["y", "z"], []])
    written.append(Path(HighRiskList(listed, 3).write(tmp_path / "run")["high_risk_parquet"]))
    for path in written:
        assert _all_pages_have_crc(path), path


def _request_log(directory: Path) -> Path:
    log = RequestLog(directory)
    for i in range(50):
        log.log(Entry(f"r{i}", f"s{i}", "churn:v1", "champion", None, None, 1.0 + i, "ok", probability=i / 50))
    return log.flush()


@pytest.mark.parametrize("where", ["request_log", "outcomes", "history", "score_cache"])
def test_a_flipped_byte_in_a_data_page_is_an_error_naming_the_file(tmp_path: Path, where: str) -> None:
    if where == "request_log":
        path, column = _request_log(tmp_path / "requests"), "probability"
        assert len(read_request_log(tmp_path / "requests")) == 50
        read = lambda: read_request_log(tmp_path / "requests")  # noqa: E731
    elif where == "outcomes":
        path = append_outcomes(tmp_path / "outcomes", [(f"r{i}", "churned", i / 7) for i in range(50)])
        column = "value"
        read = lambda: read_outcomes(tmp_path / "outcomes")  # noqa: E731
    elif where == "history":
        rows = pd.DataFrame(
            {"date": [date(2026, 12, 1)] * 3, "kind": ["metric"] * 3, "name": ["auc", "brier", "psi"],
             "value": [0.81, 0.12, 0.03], "bundle": ["churn:v1"] * 3, "spec_sha256": ["x"] * 3}
        )  # fmt: skip
        path, column = write_day(tmp_path / "history", date(2026, 12, 1), rows), "value"
        read = lambda: read_history(tmp_path / "history")  # noqa: E731
    else:
        cache = FileScoreCache(tmp_path / "keel", "churn")
        rows = [{"entity_id": f"s{i}", "probability": i / 50, "reasons": ["r"]} for i in range(50)]
        cache.put("churn:v1", rows, keep=None)
        path, column = cache.path("churn:v1"), "probability"
        read = lambda: FileScoreCache(tmp_path / "keel", "churn").load("churn:v1")  # noqa: E731
    read()  # intact: reads
    _flip_in_data_page(path, column)
    with pytest.raises(DamagedParquet) as caught:
        read()
    message = str(caught.value)
    assert str(path) in message and "damaged Parquet" in message, message


def test_a_missing_file_is_still_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_table_verified(tmp_path / "absent.parquet")

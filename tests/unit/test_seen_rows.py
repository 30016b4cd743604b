"""The record of which rows a bundle's model saw: exact up to 1M rows, a Bloom filter above, one-sided errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.gates import champion, seen_rows
from pipeline.gates.seen_rows import bloom_record, bloom_size, is_bloom, load_record, seen_in, seen_record


def _hashes(n: int, seed: int, odd: bool) -> np.ndarray:
    """Distinct-looking 64-bit hashes; odd and even sets never share a value."""
    values = np.random.default_rng(seed).integers(0, 2**62, n, dtype=np.uint64) * np.uint64(2)
    return values + np.uint64(1) if odd else values


def test_small_records_are_exact_sorted_hashes() -> None:
    seen = _hashes(5000, 0, odd=True)
    record = seen_record(np.r_[seen, seen[:100]])  # repeats count once
    assert not is_bloom(record) and np.array_equal(record, np.unique(seen))
    assert seen_in(record, seen).all()
    assert not seen_in(record, _hashes(5000, 1, odd=False)).any()  # exact: no false positives


def test_past_the_exact_limit_a_bloom_filter_never_misses_a_seen_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seen_rows, "EXACT_MAX_ROWS", 1000)
    seen = _hashes(200_000, 2, odd=True)
    record = seen_record(seen)
    assert is_bloom(record)
    assert seen_in(record, seen).all()  # no false negatives: the champion is never scored on rows it learned from
    unseen = _hashes(200_000, 3, odd=False)
    rate = seen_in(record, unseen).mean()
    assert 0 < rate < 3 * seen_rows.FALSE_POSITIVE_RATE  # one-sided, near the designed rate
    assert record.nbytes < 2.0 * len(seen)  # ~1.8 bytes a row, against 8 for the exact form


def test_the_bloom_size_follows_the_rate() -> None:
    bits, probes = bloom_size(1_000_000, 0.001)
    assert bits % 64 == 0 and 14 <= bits / 1_000_000 <= 15 and probes == 10


def test_a_record_round_trips_through_npy_without_pickle() -> None:
    record = bloom_record(_hashes(10_000, 4, odd=True))
    buffer = io.BytesIO()
    np.save(buffer, record, allow_pickle=False)
    buffer.seek(0)
    assert np.array_equal(load_record(buffer), record)
    buffer = io.BytesIO()
    np.save(buffer, np.arange(3.0), allow_pickle=False)
    buffer.seek(0)
    with pytest.raises(ValueError, match="uint64"):
        load_record(buffer)


class _Manifest:
    files = frozenset({champion.TRAINING_ROWS_FILE})


class _Ref:
    """A bundle reference with only what _not_trained_on reads: the manifest's file list and one file."""

    manifest = _Manifest()

    def __init__(self, path: Path) -> None:
        self.path = path

    def open_file(self, name: str) -> Path:
        assert name == champion.TRAINING_ROWS_FILE
        return self.path


@pytest.mark.parametrize("exact_max", [10**6, 100])
def test_the_champion_leaves_out_the_rows_it_trained_on_in_either_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exact_max: int
) -> None:
    monkeypatch.setattr(seen_rows, "EXACT_MAX_ROWS", exact_max)
    rng = np.random.default_rng(5)
    trained = pd.DataFrame({"x": rng.normal(size=3000), "y": rng.integers(0, 2, 3000)})
    champion.write_training_rows(tmp_path, trained, ["x"], {}, "y")
    test = pd.concat([trained.iloc[:400], pd.DataFrame({"x": rng.normal(size=600), "y": rng.integers(0, 2, 600)})])
    keep, approximate = champion._not_trained_on(_Ref(tmp_path / champion.TRAINING_ROWS_FILE), test, ["x"], "y")
    assert keep is not None and approximate == (exact_max < 3000)
    assert not keep[:400].any()  # every training row left out, in both forms
    assert keep[400:].sum() >= 600 - 3  # the unseen ones kept (a Bloom filter may drop one or two)

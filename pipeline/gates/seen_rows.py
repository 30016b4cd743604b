"""Which rows a bundle's model saw, stored small enough for tables of tens of millions of rows.

A `vs: champion` gate leaves out of the comparison every test row the champion trained on
(pipeline/gates/champion.py, ADR 0025). The record is one 64-bit hash per distinct row:
exact (sorted hashes, 8 bytes a row) up to `EXACT_MAX_ROWS`, a Bloom filter above (1.8 bytes a
row at a 0.1% false-positive rate). A Bloom filter can only err one way: it may call an unseen
row "seen", which leaves that row out of the comparison (a slightly smaller, still honest
comparison set); it never calls a seen row unseen, so the champion is never flattered.

Both forms are plain `.npy` arrays (no pickle); the bundle's manifest checks their sha256.
"""

from __future__ import annotations

import math
from typing import BinaryIO

import numpy as np

EXACT_MAX_ROWS = 1_000_000
"""Up to this many distinct rows the record is exact (8 MB at most); above, a Bloom filter."""
FALSE_POSITIVE_RATE = 0.001
BLOOM_MAGIC = 0x4B45454C424C4F4D  # "KEELBLOM": the first word of a Bloom record. An exact record is sorted, so
# one that started with this value could not hold the version (1) in its second word: the forms never clash.
BLOOM_VERSION = 1
HEADER_WORDS = 5  # magic, version, bits, probes, rows


def bloom_size(rows: int, rate: float = FALSE_POSITIVE_RATE) -> tuple[int, int]:
    """(bits, probes) for `rows` keys at false-positive `rate` (bits rounded up to 64)."""
    bits = max(64, math.ceil(-rows * math.log(rate) / math.log(2) ** 2))
    bits = (bits + 63) // 64 * 64
    probes = max(1, round(bits / max(rows, 1) * math.log(2)))
    return bits, probes


def _positions(hashes: np.ndarray, bits: int, probes: int) -> np.ndarray:
    """(len(hashes), probes) bit positions by double hashing of the two 32-bit halves."""
    h = np.asarray(hashes, dtype=np.uint64)
    low = h & np.uint64(0xFFFFFFFF)
    high = (h >> np.uint64(32)) | np.uint64(1)  # odd: the probes never collapse onto one position
    steps = np.arange(probes, dtype=np.uint64)
    return (low[:, None] + steps[None, :] * high[:, None]) % np.uint64(bits)


def bloom_record(hashes: np.ndarray, rate: float = FALSE_POSITIVE_RATE, chunk: int = 262_144) -> np.ndarray:
    """A Bloom filter of `hashes` as one uint64 array: the header, then the bit words."""
    rows = len(hashes)
    bits, probes = bloom_size(rows, rate)
    on = np.zeros(bits, dtype=bool)  # one byte per bit while building (bits / 8 bytes): fancy assignment is fast
    for start in range(0, rows, chunk):  # bounded memory: `chunk` x probes positions at a time
        on[_positions(hashes[start : start + chunk], bits, probes).ravel()] = True
    words = np.packbits(on, bitorder="little").view("<u8").astype(np.uint64)  # bit p: word p // 64, bit p % 64
    header = np.array([BLOOM_MAGIC, BLOOM_VERSION, bits, probes, rows], dtype=np.uint64)
    return np.concatenate([header, words])


def seen_record(hashes: np.ndarray) -> np.ndarray:
    """What a bundle stores: the sorted distinct hashes, or a Bloom filter past EXACT_MAX_ROWS."""
    distinct = np.unique(np.asarray(hashes, dtype=np.uint64))
    return distinct if len(distinct) <= EXACT_MAX_ROWS else bloom_record(distinct)


def is_bloom(record: np.ndarray) -> bool:
    return (
        len(record) >= HEADER_WORDS
        and int(record[0]) == BLOOM_MAGIC
        and int(record[1]) == BLOOM_VERSION
        and len(record) == HEADER_WORDS + int(record[2]) // 64
    )


def seen_in(record: np.ndarray, hashes: np.ndarray, chunk: int = 262_144) -> np.ndarray:
    """True where a row hash is in the record (exact), or may be (Bloom: false positives at the stored rate)."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    if not is_bloom(record):
        return np.isin(hashes, record)
    bits, probes = int(record[2]), int(record[3])
    words = record[HEADER_WORDS:]
    out = np.empty(len(hashes), dtype=bool)
    for start in range(0, len(hashes), chunk):
        at = _positions(hashes[start : start + chunk], bits, probes)
        set_bits = (words[at >> np.uint64(6)] >> (at & np.uint64(63))) & np.uint64(1)
        out[start : start + chunk] = set_bits.all(axis=1)
    return out


def load_record(handle: BinaryIO | str) -> np.ndarray:
    record = np.load(handle, allow_pickle=False)
    if record.dtype != np.uint64 or record.ndim != 1:
        raise ValueError(f"a seen-rows record is a 1-D uint64 array, not {record.dtype} {record.shape}")
    return record

"""Re-ranking the ranker's list for diversity and minimum exposure, within a latency budget.

Greedy MMR over one declared item attribute (e.g. genre): slot by slot, pick the
candidate maximising (1 - w) * relevance - w * redundancy, where relevance is the score
min-max normalised over the candidates and redundancy is the share of already-picked
items with the candidate's attribute value. Within one attribute value every candidate
has the same redundancy, so each step only compares the best remaining candidate of each
value: a step costs O(number of values), not O(candidates).

Minimum exposure: ceil(min_exposure_share * k) slots are reserved for the most
under-exposed values (the less exposed half of the values present), one per value in
order of under-exposure, round robin when there are more slots than such values.
A reservation is a floor, not an extra: items a value wins on its own merits count
towards it, and only once the remaining slots are just enough for the unmet reservations
are those slots restricted to the values still owed, filled with their best-scored
candidates (so forced items sit at the bottom of the list). The top of the list therefore stays driven by
relevance and diversity, and the guarantee holds whatever the scores.

Latency: re-ranking is optional work. When the request has already used more than its
declared share of the SLA, `rerank` returns the plain top-k by score and says so in the
report (`skipped="latency_budget"`), so the caller can log and count degradations.

Ties are deterministic: candidates are ordered by score (descending) then by input
position, and among attribute values with the same objective the one whose candidate
comes first in that order wins.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SKIPPED_LATENCY = "latency_budget"
SMALL_GROUPS = 16  # up to this many attribute values the greedy loop runs in plain Python (faster than numpy calls)


@dataclass
class LatencyBudget:
    """A request's SLA and the share of it after which optional stages are skipped.

    `start` is the request's arrival on time.perf_counter(); by default, when the budget is made.
    """

    sla_ms: float
    share: float
    start: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        if not self.sla_ms > 0:
            raise ValueError(f"sla_ms must be positive, got {self.sla_ms}.")
        if not 0 < self.share <= 1:
            raise ValueError(f"share must be in (0, 1], got {self.share}.")

    @property
    def limit_ms(self) -> float:
        return self.sla_ms * self.share

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000.0

    def exceeded(self) -> bool:
        """True once more than share x SLA has elapsed since the request started."""
        return self.elapsed_ms() > self.limit_ms


@dataclass(frozen=True)
class RerankReport:
    """What the re-ranker did, small enough to return with the response.

    ran: False when re-ranking was skipped (then `skipped` says why and the list is top-k by score).
    reserved: attribute value -> slots reserved for it (the minimum-exposure floors).
    filled_by_guarantee: slots that went to a reserved value only because of its floor.
    """

    ran: bool
    skipped: str | None
    reserved: dict[str, int]
    filled_by_guarantee: int
    diversity_weight: float
    elapsed_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "ran": self.ran,
            "skipped": self.skipped,
            "reserved": dict(self.reserved),
            "filled_by_guarantee": self.filled_by_guarantee,
            "diversity_weight": self.diversity_weight,
            "elapsed_ms": round(self.elapsed_ms, 4),
        }


@dataclass(frozen=True, eq=False)  # holds arrays
class RerankResult:
    """The chosen items (best first), their positions in the input, and the report."""

    items: np.ndarray
    positions: np.ndarray
    report: RerankReport


def rerank(
    candidates: Sequence[Any] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    attribute_values: Sequence[Any] | np.ndarray | pd.Series,
    k: int,
    diversity_weight: float,
    min_exposure_share: float,
    exposure_counts: Mapping[Any, float] | None = None,
    deadline: LatencyBudget | None = None,
    *,
    catalog_counts: Mapping[Any, float] | None = None,
) -> RerankResult:
    """Pick k of `candidates` by greedy MMR over `attribute_values` with minimum-exposure floors.

    exposure_counts: how often each attribute value was shown (request log, training
    impressions); a value missing from it counts as never shown. With catalog_counts too,
    under-exposure is exposure per catalog item. When exposure_counts is None, values are
    ordered by catalog share (the smallest groups first): catalog_counts when given, else
    the candidates' own shares as the only catalog view at hand. Missing attribute values
    (None/NaN) form one group of their own.
    """
    t0 = time.perf_counter()
    candidates = np.asarray(candidates)
    s = np.asarray(scores, dtype=np.float64)
    n = len(candidates)
    _check(n, s, attribute_values, k, diversity_weight, min_exposure_share)
    order = np.argsort(-s, kind="stable")  # best first; ties keep input order
    width = min(k, n)
    if deadline is not None and deadline.exceeded():
        chosen = order[:width]
        report = RerankReport(False, SKIPPED_LATENCY, {}, 0, diversity_weight, _ms(t0))
        return RerankResult(candidates[chosen], chosen, report)

    if diversity_weight == 0 and min_exposure_share == 0:  # pure top-k: nothing to balance
        chosen = order[:width]
        return RerankResult(candidates[chosen], chosen, RerankReport(True, None, {}, 0, 0.0, _ms(t0)))

    codes, labels = _factorize(attribute_values)
    n_groups = len(labels)
    sorted_codes = codes[order]
    by_group = np.argsort(sorted_codes, kind="stable")  # score rank positions, grouped by value, best first
    group_size = np.bincount(sorted_codes, minlength=n_groups)
    group_start = np.cumsum(group_size) - group_size
    quota = _quotas(
        labels,
        group_size,
        reserved_slots(min_exposure_share, k),
        width,
        exposure_counts,
        catalog_counts,
    )
    reserved = {str(labels[g]): int(q) for g, q in enumerate(quota) if q > 0}

    if diversity_weight == 0 and not quota.any():
        chosen = order[:width]
        return RerankResult(candidates[chosen], chosen, RerankReport(True, None, {}, 0, 0.0, _ms(t0)))

    high, low = s[order[0]], s[order[-1]]
    relevance = (s[order] - low) / (high - low) if high > low else np.zeros(n)
    greedy = _greedy_small if n_groups <= SMALL_GROUPS else _greedy_vectorised
    out, forced = greedy(relevance, by_group, group_start, group_size, quota, float(diversity_weight), width)
    chosen = order[out]
    report = RerankReport(True, None, reserved, forced, float(diversity_weight), _ms(t0))
    return RerankResult(candidates[chosen], chosen, report)


def _greedy_small(
    relevance: np.ndarray,
    by_group: np.ndarray,
    group_start: np.ndarray,
    group_size: np.ndarray,
    quota: np.ndarray,
    w: float,
    width: int,
) -> tuple[np.ndarray, int]:
    """`_greedy_vectorised` on Python lists: the same picks, float for float, for a handful of groups."""
    a = 1.0 - w
    rel = relevance.tolist()
    members = [by_group[start : start + size].tolist() for start, size in zip(group_start, group_size, strict=True)]
    n_groups = len(members)
    cursor = [1] * n_groups
    head_rank = [m[0] for m in members]  # -1 once a group is exhausted
    head_val = [a * rel[r] for r in head_rank]
    picked = [0.0] * n_groups
    owed = quota.tolist()
    owed_total = sum(owed)
    out = []
    forced = 0
    for step in range(width):
        c = w / step if step else 0.0
        must = owed_total >= width - step
        best, best_v, best_r = -1, -math.inf, 0
        for g in range(n_groups):
            r = head_rank[g]
            if r < 0 or (must and not owed[g]):
                continue
            v = head_val[g] - c * picked[g]
            if best < 0 or v > best_v or (v == best_v and r < best_r):
                best, best_v, best_r = g, v, r
        out.append(best_r)
        picked[best] += 1.0
        m = members[best]
        if cursor[best] < len(m):
            nxt = m[cursor[best]]
            head_rank[best] = nxt
            head_val[best] = a * rel[nxt]
            cursor[best] += 1
        else:
            head_rank[best] = -1
        if owed[best] > 0:
            owed[best] -= 1
            owed_total -= 1
            forced += int(must)
    return np.asarray(out, dtype=np.int64), forced


def _greedy_vectorised(
    relevance: np.ndarray,
    by_group: np.ndarray,
    group_start: np.ndarray,
    group_size: np.ndarray,
    quota: np.ndarray,
    w: float,
    width: int,
) -> tuple[np.ndarray, int]:
    """Score-rank positions picked slot by slot; each step compares only the head (best remaining) of each group.

    Used for many groups (e.g. creators); `_greedy_small` is the same algorithm in plain Python
    for a few groups, where numpy's per-call overhead would dominate.

    `relevance` is in score order; `by_group` lists score-rank positions grouped by value, best first.
    Arrays of one entry per group are updated in place, so a step is a handful of numpy calls.
    """
    a = 1.0 - w
    head_rank = by_group[group_start].copy()  # every factorized group has >= 1 member
    head_val = a * relevance[head_rank]
    cursor = group_start + 1
    end = group_start + group_size
    picked = np.zeros(len(group_size))
    owed = quota.copy()
    owed_total = int(owed.sum())
    penalty = np.where(owed > 0, 0.0, -np.inf)  # added once the remaining slots are all owed
    buf = np.empty(len(group_size))
    out = np.empty(width, dtype=np.int64)
    forced = 0
    for step in range(width):
        if step:
            np.multiply(picked, -w / step, out=buf)
            buf += head_val
        else:
            buf[:] = head_val
        must = owed_total >= width - step
        if must:
            buf += penalty
        g = int(buf.argmax())
        ties = np.flatnonzero(buf == buf[g])
        if len(ties) > 1:
            g = int(ties[np.argmin(head_rank[ties])])
        out[step] = head_rank[g]
        picked[g] += 1
        c = cursor[g]
        if c < end[g]:
            head_rank[g] = by_group[c]
            head_val[g] = a * relevance[by_group[c]]
            cursor[g] = c + 1
        else:
            head_val[g] = -np.inf
        if owed[g] > 0:
            owed[g] -= 1
            owed_total -= 1
            forced += int(must)
            if owed[g] == 0:
                penalty[g] = -np.inf
    return out, forced


def reserved_slots(min_exposure_share: float, k: int) -> int:
    """ceil(share x k), robust to float noise: 0.07 x 100 is 7.000000000000001 in floats, and must reserve 7."""
    return math.ceil(round(min_exposure_share * k, 9)) if min_exposure_share > 0 else 0


def _quotas(
    labels: np.ndarray,
    available: np.ndarray,
    slots: int,
    width: int,
    exposure_counts: Mapping[Any, float] | None,
    catalog_counts: Mapping[Any, float] | None,
) -> np.ndarray:
    """Slots reserved per value: round robin over the less exposed half of the values, least exposed first.

    Capped by each value's candidates. Limiting the floors to that half keeps a large share
    (say 3 slots over 4 values) from reserving a slot for a value that is already over-exposed.
    """
    n_groups = len(labels)
    quota = np.zeros(n_groups, dtype=np.int64)
    slots = min(slots, width, int(available.sum()))
    if slots == 0:
        return quota
    keys = [_key(v) for v in labels]
    if exposure_counts is not None:
        exposure = np.array([float(exposure_counts.get(key, 0.0)) for key in keys])
        if catalog_counts is not None:
            supply = np.array([float(catalog_counts.get(key, 0.0)) for key in keys])
            exposure = np.divide(exposure, supply, out=np.zeros(n_groups), where=supply > 0)
    elif catalog_counts is not None:
        exposure = np.array([float(catalog_counts.get(key, 0.0)) for key in keys])
    else:
        exposure = available.astype(np.float64)
    ranking = sorted(range(n_groups), key=lambda g: (exposure[g], str(keys[g])))  # least exposed first
    ranking = ranking[: max(1, math.ceil(n_groups / 2))]  # the under-exposed half; the well-exposed need no floor
    while slots > 0:
        progressed = False
        for g in ranking:
            if slots == 0:
                break
            if quota[g] < available[g]:
                quota[g] += 1
                slots -= 1
                progressed = True
        if not progressed:
            break
    return quota


def _factorize(values: Sequence[Any] | np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..G-1 (in sorted value order) and the value of each code.

    np.unique is ~5x faster than pandas on a few hundred values (the serving hot path; integer
    codes are fastest); pandas handles what numpy cannot sort: missing values, mixed types.
    """
    array = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if array.dtype.kind in "iu" and len(array) and array.min() >= 0 and array.max() < 65_536:
        present = np.bincount(array) > 0  # small non-negative codes: a lookup table beats sorting
        return (np.cumsum(present) - 1)[array].astype(np.int64), np.flatnonzero(present)
    if array.dtype.kind in "iubU" or (array.dtype.kind == "O" and not pd.isna(array).any()):
        try:
            labels, codes = np.unique(array, return_inverse=True)
            return codes.astype(np.int64).ravel(), labels
        except TypeError:  # values of mixed, unorderable types
            pass
    codes, labels = pd.factorize(pd.Series(array, dtype=object), sort=False, use_na_sentinel=False)
    return np.asarray(codes, dtype=np.int64), np.asarray(labels, dtype=object)


def _key(value: Any) -> Any:
    """The mapping key of a factorized value: numpy scalars as Python ones, NaN as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _check(n: int, scores: np.ndarray, values: Any, k: int, weight: float, share: float) -> None:
    if scores.shape != (n,):
        raise ValueError(f"scores have shape {scores.shape}; expected ({n},), one per candidate.")
    if len(values) != n:
        raise ValueError(f"attribute_values has {len(values)} entries; expected {n}, one per candidate.")
    if n == 0:
        raise ValueError("there are no candidates to re-rank.")
    if not np.isfinite(scores).all():
        raise ValueError("scores hold NaN or infinity; every candidate needs a finite score.")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    if not 0 <= weight <= 1:
        raise ValueError(f"diversity_weight must be in [0, 1], got {weight}.")
    if not 0 <= share <= 1:
        raise ValueError(f"min_exposure_share must be in [0, 1], got {share}.")


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0

"""Which side answers a request: a stable hash of (rollout id, entity id) against the stage's share.

Why a hash and not a random draw: a subscriber must see one model for the whole stage (and,
because the point only moves when the share grows, stays on the challenger as the stage
widens); every worker must agree without talking to the others; and a new rollout id
reshuffles who is in the canary. blake2b is in the standard library, keyed by nothing secret,
and costs about a microsecond for an id.

Requests without an entity id are hashed on their request id instead: they are routed at
the right share but are NOT sticky (a client that sends no id gets a fresh draw each time).

A shadow stage may shadow only a share of entities (`shadow_share`): the same hash under a
separate salt (`<rollout id>:shadow`), so the shadowed entities are fixed for the stage yet
independent of who a later canary routes (a canary of the shadowed users alone would
compare the challenger on the population it was already checked on).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from pipeline.serving.scorer import Scorer

Side = Literal["champion", "challenger"]
_SCALE = float(1 << 64)


def bucket(rollout_id: str, key: str) -> float:
    """A point in [0, 1) fixed by the rollout and the key."""
    digest = hashlib.blake2b(f"{rollout_id}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def assign(rollout_id: str, key: str, traffic: float) -> Side:
    """challenger when the key's point falls below the stage's share; traffic 0 is nobody, 1 is everybody."""
    return "challenger" if bucket(rollout_id, key) < traffic else "champion"


@dataclass(frozen=True)
class Routing:
    """One consistent view of a live rollout, swapped in whole by the watcher (requests read it once)."""

    rollout_id: str
    stage: str
    traffic: float
    challenger: Scorer
    shadow_share: float = 1.0

    @property
    def shadow(self) -> bool:
        """Traffic 0 with a challenger: it scores copies of requests, off the response path."""
        return self.traffic <= 0.0

    def shadowed(self, entity_id: str | None, request_id: str) -> bool:
        """In a shadow stage, whether the challenger scores a copy of this request (sticky per entity)."""
        if not self.shadow:
            return False
        if self.shadow_share >= 1.0:
            return True
        key = entity_id if entity_id is not None else request_id
        return bucket(f"{self.rollout_id}:shadow", key) < self.shadow_share

    def side(self, entity_id: str | None, request_id: str) -> Side:
        if self.traffic <= 0.0:
            return "champion"
        if self.traffic >= 1.0:
            return "challenger"
        return assign(self.rollout_id, entity_id if entity_id is not None else request_id, self.traffic)

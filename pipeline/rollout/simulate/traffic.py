"""Synthetic traffic per task: what one simulated user sends to the service.

Why one adapter per task: the churn service is asked `/score` with a subscriber's record (drawn
from the spec's own synthetic generator, so the contract accepts it), the recommender
`/recommend` with a user id, k and a platform context (docs/briefs contract, ADR 0016). Each
simulated user has a fixed platform, which is what an event-format change on one platform hits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.data.synthetic import GENERATORS
from pipeline.registry import BundleStore
from pipeline.spec.schema import ScenarioSpec, Spec

PLATFORMS = ("web", "ios", "android", "tv")


@dataclass(frozen=True)
class SimRequest:
    entity: str
    platform: str
    path: str
    body: dict[str, Any]


class Traffic(Protocol):
    path: str

    def request(self, user: int) -> SimRequest: ...


def platform_of(entity: str) -> str:
    """A fixed platform per user, spread evenly (stable across runs and processes)."""
    return PLATFORMS[hashlib.blake2b(entity.encode(), digest_size=2).digest()[0] % len(PLATFORMS)]


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)


def _generator(spec: Spec):
    source = spec.data.source
    if not isinstance(source, str) or not source.startswith("synthetic:"):
        raise ValueError(f"keel simulate needs a synthetic data source (data.source: synthetic:...), got {source!r}")
    return GENERATORS[source.split(":", 1)[1]]


class ScoreTraffic:
    """`/score?explain=false` with a subscriber record from the spec's generator and the entity id field."""

    path = "/score?explain=false"

    def __init__(self, spec: Spec, store: BundleStore, champion: str, seed: int = 0, rows: int = 500) -> None:
        from pipeline.registry.tabular import load_tabular_bundle

        frame = _generator(spec)(rows, seed, ScenarioSpec())
        columns = load_tabular_bundle(store.get(champion)).input_columns
        clean = frame[columns].dropna()
        self.records = [{c: _plain(v) for c, v in row.items()} for row in clean.to_dict("records")]
        if not self.records:
            raise ValueError(f"the {spec.data.source} generator gave no complete record for {columns}")
        self.entity_field = spec.data.entity_id

    def request(self, user: int) -> SimRequest:
        entity = f"sim-{user:06d}"
        body = dict(self.records[user % len(self.records)])
        if self.entity_field:
            body[self.entity_field] = entity
        return SimRequest(entity, platform_of(entity), self.path, body)


class RecommendTraffic:
    """`/recommend` per the contract: {"user_id", "k", "context": {"platform"}}; users from the spec's generator."""

    path = "/recommend"

    def __init__(self, spec: Spec, k: int = 10) -> None:
        # the spec's own rows and seed: the same users the bundles were trained on
        tables = _generator(spec)(spec.data.rows or 2000, spec.data.seed, spec.data.scenario)
        users = tables["users"] if isinstance(tables, dict) else tables
        id_col = spec.data.user or "user_id"
        self.users = [str(_plain(u)) for u in users[id_col].tolist()]
        platforms = users["platform"].astype(str).tolist() if "platform" in users else None
        self.platforms = platforms
        self.k = k

    def request(self, user: int) -> SimRequest:
        i = user % len(self.users)
        entity = self.users[i]
        platform = self.platforms[i] if self.platforms else platform_of(entity)
        body = {"user_id": entity, "k": self.k, "context": {"platform": platform}}
        return SimRequest(entity, platform, self.path, body)


def traffic_for(spec: Spec, store: BundleStore, champion: str, seed: int = 0) -> Traffic:
    if spec.task == "recommendation":
        return RecommendTraffic(spec)
    return ScoreTraffic(spec, store, champion, seed)

"""Precomputed batch scores for `GET /cached_score/{entity_id}`: Redis, or an embedded Parquet file.

Why a cache at all: the weekly batch already scored every subscriber; a lookup should cost a
dict or a Redis GET (~0.1 ms), not tree SHAP (~4 ms). Both stores keep the same JSON document
per entity ({probability, reasons, bundle}) so the endpoint does not care which one it has.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

FIELDS = ("probability", "reasons", "bundle")


class ScoreCache(Protocol):
    def get(self, entity_id: str) -> dict[str, Any] | None: ...

    def put_many(self, rows: Iterable[Mapping[str, Any]]) -> int: ...


def _document(row: Mapping[str, Any]) -> dict[str, Any]:
    """The stored view of one batch row; `entity_id` is the key, not part of the value."""
    probability = float(row["probability"])
    if not math.isfinite(probability):
        raise ValueError(f"entity {row.get('entity_id')!r}: probability {probability} is not finite")
    reasons = row.get("reasons")
    reasons = [] if reasons is None else [str(r) for r in reasons]
    return {"probability": probability, "reasons": reasons, "bundle": str(row.get("bundle", ""))}


class RedisScoreCache:
    """Keys `keel:{spec}:score:{entity_id}` -> JSON; written in pipelined chunks, read with one GET."""

    def __init__(self, url: str, spec_name: str, ttl_s: int | None = None, timeout_s: float = 0.5) -> None:
        import redis  # optional dependency: only the Redis cache needs it

        # a short socket timeout: a stuck Redis must give a fast 503, not hold a worker
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.prefix = f"keel:{spec_name}:score:"
        self.ttl_s = ttl_s

    def get(self, entity_id: str) -> dict[str, Any] | None:
        raw = self.client.get(self.prefix + entity_id)
        return None if raw is None else json.loads(raw)

    def put_many(self, rows: Iterable[Mapping[str, Any]], chunk: int = 5000) -> int:
        count = 0
        pipe = self.client.pipeline(transaction=False)
        for row in rows:
            pipe.set(self.prefix + str(row["entity_id"]), json.dumps(_document(row)), ex=self.ttl_s)
            count += 1
            if count % chunk == 0:
                pipe.execute()
        pipe.execute()
        return count


class FileScoreCache:
    """The embedded default: a Parquet of batch scores (entity_id, probability, reasons, bundle) held in a dict."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.scores: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            frame = pd.read_parquet(self.path, columns=["entity_id", *FIELDS])
            self.scores = {str(r["entity_id"]): _document(r) for r in frame.to_dict("records")}

    def get(self, entity_id: str) -> dict[str, Any] | None:
        return self.scores.get(entity_id)

    def put_many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Merge rows in memory and rewrite the Parquet atomically (write a sibling, then rename)."""
        added = {str(r["entity_id"]): _document(r) for r in rows}
        self.scores.update(added)
        frame = pd.DataFrame([{"entity_id": k, **v} for k, v in self.scores.items()])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(self.path)
        return len(added)


def cache_from_env(url: str | None, spec_name: str, file_path: Path | None) -> ScoreCache | None:
    """Redis when a URL is configured, else the Parquet file when it exists, else no cache (404s)."""
    if url:
        return RedisScoreCache(url, spec_name)
    if file_path is not None:
        return FileScoreCache(file_path)
    return None

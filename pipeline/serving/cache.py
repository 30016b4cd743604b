"""Precomputed batch scores for `GET /cached_score/{entity_id}`, one namespace per bundle (ADR 0018).

Why a cache at all: the weekly batch already scored every listed subscriber; a lookup should cost a
dict or a Redis HGET (~0.1 ms), not tree SHAP (~4 ms). Why per bundle: a lookup must only ever
answer what the *current champion* produced. Scores live under the bundle that made them, the
service asks for the champion's tag on every lookup, so a promotion (or a rollback) switches the
namespace at once and a subscriber missing from the new list is a 404, never an old score.

Two stores with the same JSON document per entity ({probability, reasons, bundle}):
* Redis (`runtime.redis_url`): one hash per bundle, `keel:<name>:score:<version>` (field: entity id),
  written under a temporary key and renamed into place (readers never see half a list), with a TTL;
  the writer deletes the namespaces of bundles that are neither the champion nor the standby.
* File (the embedded default): `$BENTOML_HOME/keel/<name>/scores/<version>.parquet` in the store
  the service already reads, written atomically; the writer prunes the same way.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
from prometheus_client import Counter

from pipeline.atomic_files import read_table_verified, write_table_atomic

log = logging.getLogger("keel.serving")

FIELDS = ("probability", "reasons", "bundle")
TTL_S = 8 * 86400  # a weekly list outlives its week by a day, then expires if nobody replaced it
CACHE_ERRORS = Counter("keel_score_cache_errors", "Failed /cached_score lookups (the cache store was unreachable)")


class ScoreCache(Protocol):
    kind: str

    def warm(self, tag: str) -> None:
        """Called by the champion watcher when `tag` becomes champion."""
        ...

    def get(self, entity_id: str, tag: str) -> dict[str, Any] | None:
        """The document `tag` wrote for `entity_id`, or None."""
        ...

    def put(self, tag: str, rows: Iterable[Mapping[str, Any]], keep: Iterable[str] | None = ()) -> int:
        """Write `tag`'s namespace whole, then delete every other namespace not in `keep` (None: none)."""
        ...


def version_of(tag: str) -> str:
    """`name:version` -> `version` (the namespace key; names are checked by the registry)."""
    return tag.rsplit(":", 1)[-1]


def document(row: Mapping[str, Any], tag: str) -> dict[str, Any]:
    """The stored view of one batch row; `entity_id` is the key, not part of the value."""
    probability = float(row["probability"])
    if not math.isfinite(probability):
        raise ValueError(f"entity {row.get('entity_id')!r}: probability {probability} is not finite")
    reasons = row.get("reasons")
    reasons = [] if reasons is None else [str(r) for r in reasons]
    return {"probability": probability, "reasons": reasons, "bundle": tag}


class RedisScoreCache:
    """Hash `keel:{spec}:score:{version}` per bundle; one HGET per lookup; short timeouts (a fast 503)."""

    kind = "redis"

    def __init__(self, url: str, spec_name: str, ttl_s: int = TTL_S, timeout_s: float = 0.5) -> None:
        import redis  # optional dependency: only the Redis cache needs it

        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.base = f"keel:{spec_name}:score:"
        self.index = f"keel:{spec_name}:score-versions"  # the namespaces written, so pruning needs no SCAN
        self.ttl_s = ttl_s

    def namespace(self, tag: str) -> str:
        return self.base + version_of(tag)

    def warm(self, tag: str) -> None:
        """Nothing to preload: every lookup names the champion's namespace itself."""

    def get(self, entity_id: str, tag: str) -> dict[str, Any] | None:
        raw = self.client.hget(self.namespace(tag), entity_id)
        return None if raw is None else json.loads(raw)

    def put(
        self, tag: str, rows: Iterable[Mapping[str, Any]], keep: Iterable[str] | None = (), chunk: int = 10_000
    ) -> int:
        """Write `tag`'s hash whole (temp key, then RENAME); `keep=None` prunes nothing (benches, tests)."""
        final = self.namespace(tag)
        tmp = f"{final}:writing-{secrets.token_hex(4)}"
        count, batch = 0, {}
        for row in rows:
            batch[str(row["entity_id"])] = json.dumps(document(row, tag))
            count += 1
            if len(batch) >= chunk:
                self.client.hset(tmp, mapping=batch)
                batch = {}
        pipe = self.client.pipeline(transaction=True)
        if batch:
            pipe.hset(tmp, mapping=batch)
        if count:
            pipe.rename(tmp, final)  # the whole list appears at once
            pipe.expire(final, self.ttl_s)
        else:
            pipe.delete(final)  # an empty list: nothing is cached for this bundle
        pipe.sadd(self.index, version_of(tag))
        pipe.execute()
        if keep is not None:
            self.prune({version_of(t) for t in [tag, *keep]})
        return count

    def prune(self, keep_versions: set[str]) -> list[str]:
        """Delete every namespace of this spec whose version is not in `keep_versions` (UNLINK: non-blocking)."""
        stale = [v.decode() for v in self.client.smembers(self.index) if v.decode() not in keep_versions]
        if stale:
            pipe = self.client.pipeline(transaction=False)
            for version in stale:
                pipe.unlink(self.base + version)
                pipe.srem(self.index, version)
            pipe.execute()
        return stale


@dataclass
class _Loaded:
    scores: dict[str, dict[str, Any]]
    missing: bool  # `keel run` promotes first and writes the list after: looked for again on each lookup


class FileScoreCache:
    """`<keel_dir>/<name>/scores/<version>.parquet` per bundle; the champion's file held in a dict."""

    kind = "file"

    def __init__(self, keel_dir: Path | str, spec_name: str) -> None:
        self.directory = Path(keel_dir) / spec_name / "scores"
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()

    def path(self, tag: str) -> Path:
        return self.directory / f"{version_of(tag)}.parquet"

    def warm(self, tag: str) -> None:
        """Load the new champion's file on the watcher's thread, so no request pays for the read."""
        self.load(tag)

    def get(self, entity_id: str, tag: str) -> dict[str, Any] | None:
        entry = self._loaded.get(tag)
        if entry is None or (entry.missing and self.path(tag).exists()):  # a stat only while it has no list
            entry = self.load(tag)
        return entry.scores.get(entity_id)

    def load(self, tag: str) -> _Loaded:
        """Read `tag`'s file (or note that it is not there yet) and forget every other bundle's scores."""
        with self._lock:
            path = self.path(tag)
            if path.exists():
                frame = read_table_verified(path, columns=["entity_id", *FIELDS]).to_pandas()
                scores = {str(r["entity_id"]): document(r, tag) for r in frame.to_dict("records")}
                entry = _Loaded(scores, missing=False)
            else:
                entry = _Loaded({}, missing=True)
            self._loaded = {tag: entry}  # one bundle held: the champion's
            return entry

    def put(self, tag: str, rows: Iterable[Mapping[str, Any]], keep: Iterable[str] | None = ()) -> int:
        docs = [{"entity_id": str(r["entity_id"]), **document(r, tag)} for r in rows]
        schema = pa.schema(
            [
                ("entity_id", pa.string()),
                ("probability", pa.float64()),
                ("reasons", pa.list_(pa.string())),
                ("bundle", pa.string()),
            ]
        )
        table = pa.Table.from_pylist(docs, schema=schema)
        write_table_atomic(table, self.path(tag))
        if keep is None:
            return len(docs)
        kept = {f"{version_of(t)}.parquet" for t in [tag, *keep]}
        for old in self.directory.glob("*.parquet"):
            if old.name not in kept:
                old.unlink(missing_ok=True)
        return len(docs)


def open_score_cache(redis_url: str | None, keel_dir: Path, spec_name: str, timeout_s: float = 0.5) -> ScoreCache:
    """Redis when a URL is configured (KEEL_REDIS_URL or runtime.redis_url), else the file in the store.

    `timeout_s`: a lookup must fail fast (0.5 s); the batch writer, sending 10k fields a call, passes more.
    """
    if redis_url:
        return RedisScoreCache(redis_url, spec_name, timeout_s=timeout_s)
    return FileScoreCache(keel_dir, spec_name)


class CacheHealth:
    """Redis up/down as the lookups see it: one log line per change of state, not one per request.

    A Redis outage under load used to write one full traceback per request; now the first failure
    logs the traceback, the recovery logs one line, and `/status` and `/metrics` carry the counts.
    While down, one lookup per PROBE_S tries Redis and the others are refused at once (`skip()`):
    a Redis that hangs rather than refuses would otherwise hold the event loop for the socket
    timeout on every lookup.
    """

    PROBE_S = 1.0

    def __init__(self) -> None:
        self.up = True
        self._probe_at = 0.0
        self.errors = 0
        self.changes = 0
        self.since = time.time()
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        CACHE_ERRORS.inc()
        with self._lock:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            self._probe_at = time.monotonic() + self.PROBE_S
            if not self.up:
                return
            self.up, self.since, self.changes = False, time.time(), self.changes + 1
        log.error("keel score cache DOWN (logged once until it recovers): %s", self.last_error, exc_info=exc)

    def skip(self) -> bool:
        """True: refuse this lookup without trying (down, and the next probe is not due yet); counted."""
        if self.up or time.monotonic() >= self._probe_at:
            return False
        CACHE_ERRORS.inc()
        with self._lock:
            self.errors += 1
        return True

    def ok(self) -> None:
        if self.up:
            return
        with self._lock:
            if self.up:
                return
            down_s = time.time() - self.since
            self.up, self.since, self.changes = True, time.time(), self.changes + 1
        log.warning("keel score cache UP again after %.1f s (%d failed lookups so far)", down_s, self.errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "up": self.up,
            "errors": self.errors,
            "state_changes": self.changes,
            "since": self.since,
            "last_error": self.last_error,
            "pid": os.getpid(),
        }

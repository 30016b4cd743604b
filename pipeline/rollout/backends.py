"""The rollout record in Redis, for serving workers on several hosts (ADR 0010, "Redis backend").

Keys (the system name is checked against the registry's strict name pattern first, so a
name can never reach into another key): `keel:rollout:<name>` the JSON record,
`keel:rollout:<name>:rev` its revision (what serving polls: one GET of a few bytes),
`keel:rollout:<name>:history` the append-only event list, `keel:rollout:<name>:lock` the
writers' lock. A write is one Lua script: compare the stored revision with the one the
writer read, then set record and revision and append the history, all or nothing, so two
writers can never both commit on top of the same revision (the loser is refused, nothing
changes). The refusals (two rollouts, no standby, gates failed) stay in state.py, above this.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline.registry.tags import check_name
from pipeline.rollout.errors import RolloutError, RolloutRefused, RolloutStateError
from pipeline.rollout.record import RolloutState, parse_record, use_backend

PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}(:[A-Za-z0-9_.-]{1,64}){0,4}$")
LOCK_TIMEOUT_S = 30.0  # a writer that dies holding the lock frees it after this
LOCK_WAIT_S = 10.0
SOCKET_TIMEOUT_S = 0.5  # the watcher polls every 50 ms: a dead Redis must not stall it for long

# KEYS: record, revision, history. ARGV: expected revision, new revision, record JSON, history lines...
_CAS = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[1]) then
  return {0, current}
end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
for i = 4, #ARGV do
  redis.call('RPUSH', KEYS[3], ARGV[i])
end
return {1, tonumber(ARGV[2])}
"""


class RolloutBackendDown(RolloutError):
    """The rollout state store cannot be reached: writers refuse, serving keeps its last good state."""


class RolloutConflict(RolloutRefused):
    """Someone else committed a newer revision between our read and our write; nothing was written."""


class RedisBackend:
    """The rollout records of one store in Redis (redis-py, decode off: the bytes are checked here)."""

    kind = "redis"

    def __init__(self, url: str, prefix: str = "keel:rollout", client: Any = None) -> None:
        if not PREFIX_PATTERN.match(prefix):
            raise ValueError(f"rollout key prefix {prefix!r} must match {PREFIX_PATTERN.pattern}")
        import redis

        self.url, self.prefix = url, prefix
        self.where = _redacted(url)
        self.client = client or redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
        self._cas = self.client.register_script(_CAS)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    def key(self, name: str, part: str = "") -> str:
        return f"{self.prefix}:{check_name(name)}" + (f":{part}" if part else "")

    @contextlib.contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        """Every Redis failure becomes one readable RolloutBackendDown naming the server (no password)."""
        try:
            yield
        except self._errors as exc:
            raise RolloutBackendDown(f"rollout state in redis {self.where} unavailable ({what}): {exc}") from exc

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        with self._calls(f"lock {self.key(name, 'lock')}"):
            lock = self.client.lock(self.key(name, "lock"), timeout=LOCK_TIMEOUT_S, blocking_timeout=LOCK_WAIT_S)
            if not lock.acquire():
                held = self.key(name, "lock")
                raise RolloutRefused(
                    f"another writer holds {held} in redis {self.where} for over {LOCK_WAIT_S:.0f} s; "
                    "nothing changed, try again"
                )
        try:
            yield
        finally:
            with contextlib.suppress(*self._errors):
                lock.release()  # expired or Redis gone: the timeout frees it

    def stamp(self, name: str) -> Any:
        with self._calls("poll revision"):
            return ("redis", self.client.get(self.key(name, "rev")))

    def read(self, name: str) -> RolloutState | None:
        key = self.key(name)
        with self._calls(f"GET {key}"):
            raw = self.client.get(key)
        if raw is None:
            return None
        where = f"redis key {key} in {self.where}"
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise RolloutStateError(f"rollout record {where} is not valid JSON: {exc}") from exc
        return parse_record(where, name, data)

    def write(self, state: RolloutState, events: list[dict[str, Any]]) -> None:
        """Compare-and-set on the revision: commits only if the stored revision is the one before ours."""
        lines = [json.dumps({**e, "rollout_id": state.rollout_id, "revision": state.revision}) for e in events]
        record = json.dumps(state.to_dict(), sort_keys=True)
        keys = [self.key(state.name), self.key(state.name, "rev"), self.key(state.name, "history")]
        with self._calls(f"write {keys[0]}"):
            committed, current = self._cas(keys=keys, args=[state.revision - 1, state.revision, record, *lines])
        if not committed:
            raise RolloutConflict(
                f"rollout record {keys[0]} moved to revision {current} while this change was prepared on "
                f"revision {state.revision - 1}; nothing was written, read the status and try again"
            )

    def history(self, name: str) -> list[dict[str, Any]]:
        key = self.key(name, "history")
        with self._calls(f"LRANGE {key}"):
            raw = self.client.lrange(key, 0, -1)
        entries = []
        for line in raw:
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        return entries

    def last_revision(self, name: str) -> int:
        with self._calls(f"GET {self.key(name, 'rev')}"):
            raw = self.client.get(self.key(name, "rev"))
        try:
            return int(raw or 0)
        except ValueError as exc:
            raise RolloutStateError(f"revision key {self.key(name, 'rev')} holds {raw!r}, not a number") from exc

    def delete(self, name: str) -> None:
        """Remove every key of `name` (tests and teardown; never called by the operations)."""
        with self._calls("delete"):
            self.client.delete(*(self.key(name, p) for p in ("", "rev", "history", "lock")))


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


def configure_backend(spec: Any, store: Any) -> RedisBackend | None:
    """Register the spec's `runtime.rollout_state` for (store, spec.name) in this process; the backend or None."""
    keel_dir: Path = store.keel_dir
    if spec.runtime.rollout_state != "redis":
        use_backend(keel_dir, spec.name, None)
        return None
    from pipeline.spec.secrets import resolve

    backend = RedisBackend(resolve(spec.runtime.redis_url))
    use_backend(keel_dir, spec.name, backend)
    return backend

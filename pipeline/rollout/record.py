"""The rollout record (``$BENTOML_HOME/keel/<name>/rollout.json``), its lock and its history.

One JSON object per system name, replaced with the registry's atomic_write under a flock,
so a serving worker reading it without the lock sees the old record or the new one, never a
torn one. Kept apart from the operations so serving can read it without importing them.
A missing file means "no rollout"; a damaged one is an error (never silently "no rollout":
serving then drops the challenger and says why).

The file is the embedded default. A spec with `runtime.rollout_state: redis` registers a
RedisBackend (pipeline/rollout/backends.py) for its store and name with `use_backend`; the
public functions below then dispatch to it, so the operations (state.py) and the serving
watcher keep one code path whichever backend holds the record.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from pipeline.registry._fs import append_jsonl, atomic_write, file_lock
from pipeline.registry.errors import RegistryError
from pipeline.registry.tags import check_name, parse_tag
from pipeline.rollout.errors import RolloutStateError

STATE_FILE = "rollout.json"
HISTORY_FILE = "rollout_history.jsonl"
LOCK_FILE = "rollout.lock"
LIVE = ("active", "awaiting_approval")  # statuses in which the challenger takes traffic
STATUSES = (*LIVE, "rolled_back", "completed")


@dataclass
class RolloutState:
    """One rollout of `challenger` against the champion it started from, at one stage."""

    name: str
    rollout_id: str
    challenger: str
    champion: str | None  # the champion when the rollout started
    stages: list[dict[str, Any]]  # the spec's stages, frozen at start: {name, traffic, duration, approval, ...}
    stage_index: int
    stage: str
    traffic: float
    stage_started_at: str
    status: str
    started_at: str
    updated_at: str
    revision: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def shadow_share(self) -> float:
        """The current stage's shadow share; records written before the key existed shadow everyone (1.0)."""
        return float(self.stages[self.stage_index].get("shadow_share", 1.0))

    @property
    def live(self) -> bool:
        """The challenger is in the serving path (shadow at traffic 0, routed above it)."""
        return self.status in LIVE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RolloutBackend(Protocol):
    """Where one store's rollout records live when not in files (see backends.py)."""

    kind: str

    def lock(self, name: str) -> contextlib.AbstractContextManager[None]: ...
    def read(self, name: str) -> RolloutState | None: ...
    def write(self, state: RolloutState, events: list[dict[str, Any]]) -> None: ...
    def history(self, name: str) -> list[dict[str, Any]]: ...
    def last_revision(self, name: str) -> int: ...
    def stamp(self, name: str) -> Any: ...


_BACKENDS: dict[tuple[str, str], RolloutBackend] = {}


def use_backend(keel_dir: Path, name: str, backend: RolloutBackend | None) -> None:
    """Route this process's rollout reads/writes for (store, name) to `backend` (None: back to the file)."""
    key = (str(Path(keel_dir).resolve()), check_name(name))
    if backend is None:
        _BACKENDS.pop(key, None)
    else:
        _BACKENDS[key] = backend


def backend_for(keel_dir: Path, name: str) -> RolloutBackend | None:
    """The registered backend for (store, name); None means the file beside the store."""
    if not _BACKENDS:
        return None
    return _BACKENDS.get((str(Path(keel_dir).resolve()), name))


def rollout_path(keel_dir: Path, name: str) -> Path:
    return keel_dir / check_name(name) / STATE_FILE


@contextlib.contextmanager
def rollout_lock(keel_dir: Path, name: str) -> Iterator[None]:
    """Serialise every read-modify-write of one name's rollout (taken before the alias lock, never after).

    With a registered backend its own lock is taken first (it spans hosts); the file lock is still
    taken because the operations also change this store's alias record.
    """
    backend = backend_for(keel_dir, check_name(name))
    with contextlib.ExitStack() as stack:
        if backend is not None:
            stack.enter_context(backend.lock(name))
        stack.enter_context(file_lock(keel_dir / name / LOCK_FILE))
        yield


def rollout_stamp(keel_dir: Path, name: str) -> Any:
    """A cheap token that changes whenever the record does (a stat, or one Redis GET of the revision)."""
    backend = backend_for(keel_dir, check_name(name))
    if backend is not None:
        return backend.stamp(name)
    try:
        st = rollout_path(keel_dir, name).stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def read_rollout(keel_dir: Path, name: str) -> RolloutState | None:
    """The current record, None when there is none; RolloutStateError when it cannot be trusted."""
    backend = backend_for(keel_dir, check_name(name))
    if backend is not None:
        return backend.read(name)
    path = rollout_path(keel_dir, name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RolloutStateError(f"rollout record {path} is unreadable: {exc}") from exc
    return _parse(path, name, data)


def parse_record(path: Path | str, name: str, data: Any) -> RolloutState:
    """Check a decoded record field by field; RolloutStateError naming `path` (a file or a Redis key)."""
    return _parse(path, name, data)


def _parse(path: Path | str, name: str, data: Any) -> RolloutState:
    names = {f.name for f in fields(RolloutState)}
    if not isinstance(data, dict) or set(data) != names:
        got = set(data) if isinstance(data, dict) else type(data).__name__
        raise RolloutStateError(f"rollout record {path} is malformed: expected keys {sorted(names)}, got {got}")
    try:
        state = RolloutState(**data)
        parse_tag(state.challenger)
        if state.champion is not None:
            parse_tag(state.champion)
    except (TypeError, RegistryError) as exc:
        raise RolloutStateError(f"rollout record {path} is malformed: {exc}") from exc
    problems = []
    if state.name != name:
        problems.append(f"belongs to {state.name!r}, not {name!r}")
    if state.status not in STATUSES:
        problems.append(f"status {state.status!r} is not one of {STATUSES}")
    traffic = state.traffic
    if isinstance(traffic, bool) or not isinstance(traffic, int | float) or not 0 <= traffic <= 1:
        problems.append(f"traffic {traffic!r} is not a share in [0, 1]")
    if not isinstance(state.stages, list) or not isinstance(state.stage_index, int):
        problems.append("stages/stage_index are not a list and an index")
    elif not 0 <= state.stage_index < len(state.stages):
        problems.append(f"stage_index {state.stage_index} is outside the {len(state.stages)} stages")
    elif not isinstance(state.stages[state.stage_index], dict):
        problems.append(f"stage {state.stage_index} is not an object")
    else:
        share = state.stages[state.stage_index].get("shadow_share", 1.0)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            problems.append(f"shadow_share {share!r} is not a share in (0, 1]")
    if not isinstance(state.rollout_id, str) or not state.rollout_id:
        problems.append("rollout_id is empty")
    if problems:
        raise RolloutStateError(f"rollout record {path} is malformed: {'; '.join(problems)}")
    state.traffic = float(traffic)
    return state


def write_rollout(keel_dir: Path, state: RolloutState, events: list[dict[str, Any]]) -> None:
    """Caller holds rollout_lock. History first (fsynced), then the atomic replace, as the aliases do."""
    backend = backend_for(keel_dir, state.name)
    if backend is not None:
        backend.write(state, events)
        return
    op = secrets.token_hex(6)  # tells a retried revision's lines from the ones that never committed
    lines = [{**e, "rollout_id": state.rollout_id, "revision": state.revision, "op": op} for e in events]
    append_jsonl(keel_dir / state.name / HISTORY_FILE, lines)
    atomic_write(rollout_path(keel_dir, state.name), json.dumps(state.to_dict(), indent=2, sort_keys=True).encode())


def read_history(keel_dir: Path, name: str) -> list[dict[str, Any]]:
    """Committed events, oldest first; lines whose revision never committed (a crash in between) are dropped."""
    backend = backend_for(keel_dir, check_name(name))
    if backend is not None:
        return backend.history(name)
    with rollout_lock(keel_dir, name):
        try:
            state = read_rollout(keel_dir, name)
        except RolloutStateError:
            state = None
        committed = state.revision if state else 0
        try:
            raw = (keel_dir / name / HISTORY_FILE).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
    entries: list[dict[str, Any]] = []
    for line in raw:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn last line from a crash mid-append
        if isinstance(entry, dict) and isinstance(entry.get("revision"), int):
            entries.append(entry)
    last_op = {e["revision"]: e.get("op") for e in entries}
    return [e for e in entries if e["revision"] <= committed and e.get("op") == last_op[e["revision"]]]


def last_revision(keel_dir: Path, name: str) -> int:
    """Highest revision in the history file, so a new record (after a deleted one) never reuses a number."""
    backend = backend_for(keel_dir, check_name(name))
    if backend is not None:
        return backend.last_revision(name)
    try:
        raw = (keel_dir / name / HISTORY_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return 0
    best = 0
    for line in raw:
        with contextlib.suppress(ValueError, AttributeError):
            revision = json.loads(line).get("revision")
            if isinstance(revision, int):
                best = max(best, revision)
    return best

"""Serving aliases (champion, challenger, standby) per bundle name, with an audit trail.

Every change is: take the name's flock -> read aliases.json -> check -> append the
history lines (tagged with the next revision) -> atomically replace aliases.json.
History is written first so no committed change is ever missing from it; lines whose
revision was never committed (a crash between the two writes) are filtered on read.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pipeline.registry._fs import append_jsonl
from pipeline.registry.alias_state import (
    HISTORY_FILE,
    AliasState,
    alias_dir,
    alias_lock,
    read_state,
    write_state,
)
from pipeline.registry.errors import IntegrityError, PromotionRefused, RollbackUnavailable
from pipeline.registry.manifest import BundleRef
from pipeline.registry.store import BundleStore
from pipeline.registry.tags import check_name, parse_tag

Clock = Callable[[], datetime]
Change = tuple[str, str | None, str | None]  # alias, from, to


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _default_actor() -> str:
    return f"{os.environ.get('USER', 'unknown')}@{socket.gethostname()}:{os.getpid()}"


def _bundle_for(store: BundleStore, name: str, tag: str) -> BundleRef:
    """The committed, intact bundle behind ``tag``; aliases never point at anything else."""
    tag_name, _ = parse_tag(tag)
    if tag_name != name:
        raise PromotionRefused(f"tag {tag} belongs to {tag_name!r}, not {name!r}")
    ref = store.get(tag)
    try:
        ref.verify()
    except IntegrityError as exc:
        raise PromotionRefused(f"bundle {tag} failed verification: {exc}") from exc
    return ref


def _commit(
    store: BundleStore,
    state: AliasState,
    action: str,
    changes: list[Change],
    reason: str,
    actor: str | None,
    clock: Clock,
) -> dict[str, str | None]:
    """Caller holds the alias lock. History lines first (fsynced), then the state replace."""
    now = clock().isoformat()
    state.revision += 1
    state.updated_at = now
    op = secrets.token_hex(6)
    lines = [
        {
            "time": now,
            "action": action,
            "alias": alias,
            "from": old,
            "to": new,
            "actor": actor or _default_actor(),
            "reason": reason,
            "revision": state.revision,
            "op": op,
        }
        for alias, old, new in changes
    ]
    append_jsonl(alias_dir(store.keel_dir, state.name) / HISTORY_FILE, lines)
    write_state(store.keel_dir, state)
    return state.aliases()


def promote(
    name: str,
    tag: str,
    reason: str,
    *,
    actor: str | None = None,
    store: BundleStore | None = None,
    clock: Clock = _utcnow,
) -> dict[str, str | None]:
    """Make ``tag`` champion; the previous champion becomes standby in the same write.

    Only a verified bundle whose manifest says ``gate_passed`` may be promoted.
    Promoting the current champion again is a no-op (safe to retry).
    """
    store = store or BundleStore()
    check_name(name)
    with alias_lock(store.keel_dir, name):
        ref = _bundle_for(store, name, tag)
        if not ref.manifest.gate_passed:
            raise PromotionRefused(
                f"bundle {tag} did not pass its gate (gate_passed=false, metrics={ref.manifest.metrics}); "
                f"refusing to make it champion of {name!r}"
            )
        state = read_state(store.keel_dir, name)
        if state.champion == tag:
            return state.aliases()
        changes: list[Change] = [("champion", state.champion, tag)]
        if state.champion is not None:
            changes.append(("standby", state.standby, state.champion))
        if state.challenger == tag:
            changes.append(("challenger", tag, None))
        for alias, _old, new in changes:
            setattr(state, alias, new)
        return _commit(store, state, "promote", changes, reason, actor, clock)


def set_challenger(
    name: str,
    tag: str | None,
    reason: str = "",
    *,
    actor: str | None = None,
    store: BundleStore | None = None,
    clock: Clock = _utcnow,
) -> dict[str, str | None]:
    """Point (or with ``None``, clear) the challenger alias; no gate needed to be shadowed."""
    store = store or BundleStore()
    check_name(name)
    with alias_lock(store.keel_dir, name):
        if tag is not None:
            _bundle_for(store, name, tag)
        state = read_state(store.keel_dir, name)
        if state.challenger == tag:
            return state.aliases()
        changes: list[Change] = [("challenger", state.challenger, tag)]
        state.challenger = tag
        return _commit(store, state, "set_challenger", changes, reason, actor, clock)


def rollback(
    name: str,
    reason: str,
    *,
    actor: str | None = None,
    store: BundleStore | None = None,
    clock: Clock = _utcnow,
) -> dict[str, str | None]:
    """Standby becomes champion; the failed champion is dropped from the aliases and kept in ``failed``."""
    store = store or BundleStore()
    check_name(name)
    with alias_lock(store.keel_dir, name):
        state = read_state(store.keel_dir, name)
        if state.standby is None:
            raise RollbackUnavailable(f"cannot roll back {name!r}: no standby (champion is {state.champion})")
        store.get(state.standby)  # still committed? (deleting an aliased bundle is refused, so it should be)
        failed = state.champion
        changes: list[Change] = [("champion", failed, state.standby), ("standby", state.standby, None)]
        state.champion, state.standby = state.standby, None
        if failed is not None:
            state.failed.append(failed)
        return _commit(store, state, "rollback", changes, reason, actor, clock)


def aliases(name: str, *, store: BundleStore | None = None) -> dict[str, str | None]:
    """Current ``{"champion": tag|None, "challenger": ..., "standby": ...}`` (a consistent snapshot)."""
    store = store or BundleStore()
    return read_state(store.keel_dir, check_name(name)).aliases()


def history(name: str, *, store: BundleStore | None = None) -> list[dict[str, Any]]:
    """Committed alias changes, oldest first; torn or uncommitted lines from a crash are dropped."""
    store = store or BundleStore()
    check_name(name)
    with alias_lock(store.keel_dir, name):
        committed = read_state(store.keel_dir, name).revision
        path = alias_dir(store.keel_dir, name) / HISTORY_FILE
        try:
            raw = path.read_text(encoding="utf-8").splitlines()
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
    last_op = {e["revision"]: e.get("op") for e in entries}  # a retried revision: the later op committed
    return [e for e in entries if e["revision"] <= committed and e.get("op") == last_op[e["revision"]]]

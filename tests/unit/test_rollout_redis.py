"""Rollout record in real Redis: compare-and-set, history, the same refusals as files, damaged and unreachable state.

Each test writes under its own key prefix (keeltest:<random>) in db 0 and deletes it afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from pydantic import ValidationError

from pipeline.registry import BundleStore, promote, save_bundle
from pipeline.registry.errors import RegistryError
from pipeline.rollout import RolloutRefused, RolloutStateError, advance, rollback, start, status
from pipeline.rollout.backends import RedisBackend, RolloutBackendDown, RolloutConflict
from pipeline.rollout.record import rollout_path, use_backend
from pipeline.rollout.state import history
from pipeline.serving.state import ServingState
from pipeline.serving.watch import ChampionWatcher
from pipeline.spec.schema import RolloutSpec, RuntimeSpec, StageSpec
from tests.services import NEEDS_REDIS, redis_up

URL = "redis://127.0.0.1:6379/0"
DEAD_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused, like a Redis that went away
NAME = "churn"
SPEC = RolloutSpec(
    name="test",
    stages=[StageSpec(name="shadow", traffic=0.0), StageSpec(name="canary", traffic=0.1)],
)


@pytest.fixture
def store(tmp_path: Path) -> BundleStore:
    return BundleStore(tmp_path / "bentoml")


@pytest.fixture
def backend(store: BundleStore) -> Iterator[RedisBackend]:
    if not redis_up():
        pytest.skip(NEEDS_REDIS)
    prefix = f"keeltest:{secrets.token_hex(6)}"
    backend = RedisBackend(URL, prefix=prefix)
    use_backend(store.keel_dir, NAME, backend)
    yield backend
    use_backend(store.keel_dir, NAME, None)
    client = redis.Redis.from_url(URL)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def make(tmp_path: Path, store: BundleStore):
    def _make(payload: str, gate_passed: bool = True) -> str:
        src = tmp_path / f"src-{payload}"
        src.mkdir()
        (src / "model.txt").write_text(payload)
        gates = {"passed": gate_passed, "gates": [{"name": "auc_floor", "passed": gate_passed, "reason": "auc low"}]}
        (src / "metrics.json").write_text(json.dumps({"gates": gates}))
        ref = save_bundle(
            NAME, src, spec_sha256="0" * 64, data_fingerprint="fp", code_version="t", metrics={"auc": 0.6},
            gate_passed=gate_passed, store=store,
        )  # fmt: skip
        return ref.tag

    return _make


@pytest.fixture
def pair(store: BundleStore, make) -> tuple[str, str]:
    champion, challenger = make("champion"), make("challenger")
    promote(NAME, champion, "first", store=store)
    return champion, challenger


def test_operations_run_on_redis_with_the_file_backends_refusals(store, backend, pair, make) -> None:
    challenger = pair[1]
    state = start(NAME, challenger, SPEC, "try it", store=store)
    assert state.revision == 1
    assert not rollout_path(store.keel_dir, NAME).exists()  # the record is in Redis, not beside the store
    with pytest.raises(RolloutRefused, match="already active"):
        start(NAME, make("another"), SPEC, store=store)
    advance(NAME, "looks fine", store=store)
    rollback(NAME, "error burst", store=store)
    got = status(NAME, store=store)
    assert (got.status, got.traffic, got.revision) == ("rolled_back", 0.0, 3)
    assert [e["action"] for e in history(NAME, store=store)] == ["start", "advance", "rollback"]
    assert [e["revision"] for e in history(NAME, store=store)] == [1, 2, 3]
    assert backend.client.get(backend.key(NAME, "rev")) == b"3"
    with pytest.raises(RolloutRefused, match=r"failed its gates.*auc low"):
        start(NAME, make("bad", gate_passed=False), SPEC, store=store)
    assert status(NAME, store=store).revision == 3  # refused: nothing written


def test_a_write_on_a_stale_revision_is_refused_and_changes_nothing(store, backend, pair) -> None:
    first = start(NAME, pair[1], SPEC, store=store)
    stale = dataclasses.replace(first, stage="canary", traffic=0.1)  # prepared on revision 0, like `first`
    with pytest.raises(RolloutConflict, match="moved to revision 1"):
        backend.write(stale, [{"action": "advance"}])
    assert status(NAME, store=store).traffic == 0.0
    assert len(history(NAME, store=store)) == 1
    assert backend.last_revision(NAME) == 1


def test_corrupt_json_in_redis_is_a_clear_error_and_writers_refuse(store, backend, pair) -> None:
    start(NAME, pair[1], SPEC, store=store)
    backend.client.set(backend.key(NAME), b'{"name": "churn", "trunc')
    with pytest.raises(RolloutStateError, match=f"redis key {backend.key(NAME)} .* is not valid JSON"):
        status(NAME, store=store)
    with pytest.raises(RolloutStateError):
        start(NAME, pair[1], SPEC, store=store)  # never "no rollout" over a damaged record
    backend.client.set(backend.key(NAME), json.dumps({"name": "churn"}))
    with pytest.raises(RolloutStateError, match="malformed"):
        status(NAME, store=store)


def test_names_and_prefixes_cannot_reach_other_keys() -> None:
    backend = RedisBackend(URL)
    assert backend.key(NAME, "rev") == "keel:rollout:churn:rev"
    for bad in ("churn:rev", "a*", "../x", "a b", ""):
        with pytest.raises(RegistryError):
            backend.key(bad)
    with pytest.raises(ValueError, match="prefix"):
        RedisBackend(URL, prefix="keel rollout*")


def test_redis_needs_a_url_in_the_spec() -> None:
    with pytest.raises(ValidationError, match=r"rollout_state: redis needs runtime\.redis_url"):
        RuntimeSpec(rollout_state="redis")
    assert RuntimeSpec(redis_url=URL, rollout_state="redis").rollout_state == "redis"
    assert RuntimeSpec().rollout_state == "file"


def test_unreachable_redis_is_a_clear_error_for_writers(store, pair) -> None:
    use_backend(store.keel_dir, NAME, RedisBackend(DEAD_URL))
    try:
        with pytest.raises(RolloutBackendDown, match=re.escape("redis redis://127.0.0.1:1/0 unavailable")):
            start(NAME, pair[1], SPEC, store=store)
    finally:
        use_backend(store.keel_dir, NAME, None)


def test_watcher_keeps_the_last_good_state_while_redis_is_down_and_drops_a_corrupt_record(store, backend, pair) -> None:
    champion, challenger = pair
    state = ServingState()
    watcher = ChampionWatcher(NAME, store, state, build=lambda ref: SimpleNamespace(tag=ref.tag, threshold=0.5))
    start(NAME, challenger, SPEC, store=store)
    advance(NAME, store=store)
    watcher.check()
    assert (state.scorer.tag, state.routing.challenger.tag, state.routing.traffic) == (champion, challenger, 0.1)

    use_backend(store.keel_dir, NAME, RedisBackend(DEAD_URL))  # Redis goes away
    watcher.check()
    watcher.check()
    assert state.routing is not None and state.routing.traffic == 0.1  # still routing as last read
    assert "unavailable" in state.rollout_error and "keeping the last good rollout state (revision 2)" in (
        state.rollout_error
    )

    use_backend(store.keel_dir, NAME, backend)  # back, and a rollback happened meanwhile on another host
    rollback(NAME, "from elsewhere", store=store)
    watcher.check()
    assert state.routing is None and state.rollout_error is None
    assert state.rollout["status"] == "rolled_back"

    start(NAME, challenger, SPEC, store=store)
    watcher.check()
    assert state.routing is not None
    backend.client.set(backend.key(NAME), b"not json")
    backend.client.incr(backend.key(NAME, "rev"))  # the change token moves, as any write would
    watcher.check()
    assert state.routing is None and state.scorer.tag == champion  # champion only, and why
    assert f"redis key {backend.key(NAME)}" in state.rollout_error

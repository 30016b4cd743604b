"""Aliases: gated promotion, atomic champion->standby moves, rollback, audit history, concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.registry import (
    BundleInUse,
    BundleStore,
    PromotionRefused,
    RollbackUnavailable,
    history,
    promote,
    rollback,
    save_bundle,
    set_challenger,
)
from pipeline.registry.aliases import aliases

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)


def clock() -> datetime:
    return T0


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BundleStore:
    home = tmp_path / "bentoml"
    monkeypatch.setenv("BENTOML_HOME", str(home))
    return BundleStore(home)


@pytest.fixture
def make(tmp_path: Path, store: BundleStore):
    def _make(payload: str, gate_passed: bool = True, name: str = "ranker") -> str:
        src = tmp_path / f"src-{payload}"
        src.mkdir()
        (src / "model.txt").write_text(payload)
        ref = save_bundle(
            name,
            src,
            spec_sha256="0" * 64,
            data_fingerprint="fp",
            code_version="t",
            metrics={"auc": 0.5},
            gate_passed=gate_passed,
            store=store,
        )
        return ref.tag

    return _make


def test_promote_refuses_a_gate_failed_bundle(store: BundleStore, make) -> None:
    bad = make("bad", gate_passed=False)
    with pytest.raises(PromotionRefused, match="gate"):
        promote("ranker", bad, "try", store=store)
    assert aliases("ranker", store=store) == {"champion": None, "challenger": None, "standby": None}
    assert history("ranker", store=store) == []


def test_promote_refuses_foreign_or_tampered_bundles(store: BundleStore, make) -> None:
    other = make("o", name="other")
    with pytest.raises(PromotionRefused, match="belongs to"):
        promote("ranker", other, "wrong name", store=store)
    good = make("g")
    (store.get(good).path / "model.txt").write_text("poisoned")
    with pytest.raises(PromotionRefused, match="verification"):
        promote("ranker", good, "tampered", store=store)


def test_promote_moves_old_champion_to_standby_and_rollback_swaps_back(store: BundleStore, make) -> None:
    a, b = make("a"), make("b")
    promote("ranker", a, "first", actor="ci", store=store, clock=clock)
    set_challenger("ranker", b, "shadow it", actor="ci", store=store, clock=clock)
    state = promote("ranker", b, "won shadow", actor="ci", store=store, clock=clock)
    assert state == {"champion": b, "challenger": None, "standby": a}
    assert promote("ranker", b, "retry", store=store) == state  # idempotent, no history noise
    state = rollback("ranker", "p99 regression", actor="oncall", store=store, clock=clock)
    assert state == {"champion": a, "challenger": None, "standby": None}
    record = json.loads((store.keel_dir / "ranker" / "aliases.json").read_text())
    assert record["failed"] == [b] and record["revision"] == 4
    with pytest.raises(RollbackUnavailable, match="no standby"):
        rollback("ranker", "again", store=store)
    rows = [(h["action"], h["alias"], h["from"], h["to"]) for h in history("ranker", store=store)]
    assert rows == [
        ("promote", "champion", None, a),
        ("set_challenger", "challenger", None, b),
        ("promote", "champion", a, b),
        ("promote", "standby", None, a),
        ("promote", "challenger", b, None),
        ("rollback", "champion", b, a),
        ("rollback", "standby", a, None),
    ]
    last = history("ranker", store=store)[-1]
    assert last["actor"] == "oncall" and last["reason"] == "p99 regression" and last["time"] == T0.isoformat()


def test_history_drops_torn_and_uncommitted_lines(store: BundleStore, make) -> None:
    a = make("a")
    promote("ranker", a, "first", store=store)
    path = store.keel_dir / "ranker" / "history.jsonl"
    ghost = {"revision": 2, "op": "x", "action": "promote", "alias": "champion", "from": a, "to": "ranker:zz"}
    with path.open("a") as fh:  # as if killed between the history append and the state replace
        fh.write(json.dumps(ghost) + "\n" + '{"revision": 3, "act')
    assert [h["revision"] for h in history("ranker", store=store)] == [1]
    b = make("b")
    promote("ranker", b, "second", store=store)  # re-uses revision 2: only the committed op is kept
    assert [(h["revision"], h["to"]) for h in history("ranker", store=store)] == [(1, a), (2, b), (2, a)]


def test_delete_refuses_aliased_bundles(store: BundleStore, make) -> None:
    a, b, c = make("a"), make("b"), make("c")
    promote("ranker", a, "1", store=store)
    promote("ranker", b, "2", store=store)
    for tag in (a, b):
        with pytest.raises(BundleInUse):
            store.delete(tag)
    store.delete(c)
    assert sorted(r.tag for r in store.list()) == sorted([a, b])


WORKER = """
import sys
from pathlib import Path
from pipeline.registry import BundleStore, promote
store = BundleStore(Path(sys.argv[1]))
tags = sys.argv[2:]
for i in range(25):
    promote("ranker", tags[i % len(tags)], f"round {i}", store=store)
"""


def test_concurrent_promotes_never_corrupt_the_record(store: BundleStore, make) -> None:
    a, b, c = make("a"), make("b"), make("c")
    env = {**os.environ, "PYTHONPATH": str(REPO), "DO_NOT_TRACK": "1"}
    orders = [[a, b, c], [c, b, a], [b, a]]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(store.home), *o], env=env, stderr=subprocess.PIPE, text=True
        )
        for o in orders
    ]
    record_path = store.keel_dir / "ranker" / "aliases.json"
    while any(p.poll() is None for p in procs):  # readers never see a torn file
        if record_path.exists():
            snapshot = json.loads(record_path.read_text())
            assert snapshot["champion"] != snapshot["standby"]
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    record = json.loads(record_path.read_text())
    assert record["champion"] in {a, b, c} and record["standby"] in {a, b, c} - {record["champion"]}
    rows = history("ranker", store=store)
    assert sorted({h["revision"] for h in rows}) == list(range(1, record["revision"] + 1))
    champion = None
    for h in rows:  # no lost update: every champion change starts from the previous one
        if h["alias"] == "champion":
            assert h["from"] == champion
            champion = h["to"]
    assert champion == record["champion"]

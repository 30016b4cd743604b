"""Fault matrix (issue 15): SIGKILL at every write of every registry and rollout step, then check the invariants.

Each case copies a prepared store, runs one operation in a child process that kills itself (SIGKILL: no
finally, no atexit) at one write step (pipeline/registry/_fs.py crash points), and asserts what an operator
relies on: the champion alias resolves to a complete, sha256-verified bundle; no alias dangles; the rollout
record reads back; no partial bundle is visible; and the same operation then succeeds when retried.
Bundle saves are covered step by step in test_registry_crash.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.registry import BundleStore, load_bundle, promote, save_bundle
from pipeline.registry.aliases import aliases
from pipeline.rollout import start, status

REPO = Path(__file__).resolve().parents[2]
NAME = "streamflow-churn"
OPERATION = """
import sys
from pathlib import Path
from pipeline.registry import BundleStore, promote, rollback
from pipeline.rollout import rollback as rollout_rollback, start
from pipeline.spec.load import load_spec
store, op, tag = BundleStore(Path(sys.argv[1])), sys.argv[2], sys.argv[3]
if op == "promote":
    promote("streamflow-churn", tag, "fault matrix", store=store)
elif op == "rollback":
    rollback("streamflow-churn", "fault matrix", store=store)
elif op == "rollout_start":
    spec = load_spec(sys.argv[4]).spec
    start("streamflow-churn", tag, spec.rollout, "fault matrix", store=store)
elif op == "rollout_rollback":
    rollout_rollback("streamflow-churn", "fault matrix", store=store)
"""
SPEC = str(REPO / "specs" / "streamflow_churn.yaml")
WRITES = ["before_append", "after_append"]
REPLACES = ["before_replace", "after_replace"]
MATRIX = [
    *(("promote", f"history.jsonl:{s}") for s in WRITES),
    *(("promote", f"aliases.json:{s}") for s in REPLACES),
    *(("rollback", f"history.jsonl:{s}") for s in WRITES),
    *(("rollback", f"aliases.json:{s}") for s in REPLACES),
    *(("rollout_start", f"rollout_history.jsonl:{s}") for s in WRITES),
    *(("rollout_start", f"rollout.json:{s}") for s in REPLACES),
    *(("rollout_rollback", f"rollout_history.jsonl:{s}") for s in WRITES),
    *(("rollout_rollback", f"rollout.json:{s}") for s in REPLACES),
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Stores in the state each operation starts from; A is champion, B a passed challenger."""
    root = tmp_path_factory.mktemp("fault-matrix")
    src = root / "src"
    src.mkdir()
    (src / "model.txt").write_bytes(os.urandom(64 * 1024))
    base = BundleStore(root / "base")
    save = dict(spec_sha256="0" * 64, data_fingerprint="fp", code_version="t", gate_passed=True, store=base)
    a = save_bundle(NAME, src, **save).tag
    b = save_bundle(NAME, src, **save).tag
    promote(NAME, a, "first", store=base)
    promoted = BundleStore(root / "promoted")  # champion B, standby A: what rollback starts from
    shutil.copytree(base.home, promoted.home)
    promote(NAME, b, "second", store=promoted)
    rolling = BundleStore(root / "rolling")  # a live rollout of B: what rollout_rollback starts from
    shutil.copytree(base.home, rolling.home)
    from pipeline.spec.load import load_spec

    start(NAME, b, load_spec(SPEC).spec.rollout, "live", store=rolling)
    origin = {"promote": base, "rollback": promoted, "rollout_start": base, "rollout_rollback": rolling}
    return {"a": a, "b": b, "origin": origin, "root": root}


def _run(store: BundleStore, op: str, tag: str, crash_at: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "DO_NOT_TRACK": "1"}
    env.pop("KEEL_REGISTRY_CRASH_AT", None)
    if crash_at:
        env["KEEL_REGISTRY_CRASH_AT"] = crash_at
    args = [sys.executable, "-c", OPERATION, str(store.home), op, tag, SPEC]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("op", "step"), MATRIX, ids=[f"{op}-{step}" for op, step in MATRIX])
def test_sigkill_at_each_step_keeps_the_champion_whole(prepared, tmp_path: Path, op: str, step: str) -> None:
    store = BundleStore(tmp_path / "store")
    shutil.copytree(prepared["origin"][op].home, store.home)
    done = _run(store, op, prepared["b"], step)
    assert done.returncode == -signal.SIGKILL, f"{op} never reached {step}: rc {done.returncode} {done.stderr[-2000:]}"

    bundles = {r.tag for r in store.list(NAME)}
    assert bundles == {prepared["a"], prepared["b"]}  # nothing partial, nothing lost
    state = aliases(NAME, store=store)
    assert state["champion"] in bundles
    dangling = {role: tag for role, tag in state.items() if tag and tag not in bundles}
    assert not dangling, dangling
    for tag in {t for t in state.values() if t}:
        load_bundle(tag, store=store).verify()  # the champion (and standby) load, sha256-checked
    status(NAME, store=store)  # the rollout record reads back (absent, old or new; never torn)

    # retried: it succeeds, or it refuses because the killed attempt had already taken effect (after the write)
    retried = _run(store, op, prepared["b"], None)
    took_effect = ("already", "no rollout", "no standby", "is rolled_back")
    recovered = retried.returncode == 0 or (
        step.endswith(("after_replace",)) and any(w in retried.stderr for w in took_effect)
    )
    assert recovered, f"{op} after a crash at {step}: {retried.stderr[-2000:]}"

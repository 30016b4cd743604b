"""Crash safety: SIGKILL a real registration at each step; concurrent registrations never merge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.registry import BundleStore, load_bundle, promote, save_bundle
from pipeline.registry.aliases import aliases
from pipeline.registry.bundle import CRASH_STEPS

REPO = Path(__file__).resolve().parents[2]
SAVE = """
import sys
from pathlib import Path
from pipeline.registry import BundleStore, save_bundle
ref = save_bundle(sys.argv[2], Path(sys.argv[3]), spec_sha256="0" * 64, data_fingerprint="fp", code_version="t",
                  gate_passed=True, store=BundleStore(Path(sys.argv[1])))
print(ref.tag)
"""


def spawn(home: Path, source: Path, crash_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "BENTOML_HOME": str(home), "DO_NOT_TRACK": "1"}
    env.pop("KEEL_REGISTRY_CRASH_AT", None)
    if crash_at:
        env["KEEL_REGISTRY_CRASH_AT"] = crash_at
    args = [sys.executable, "-c", SAVE, str(home), "ranker", str(source)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BundleStore:
    home = tmp_path / "bentoml"
    monkeypatch.setenv("BENTOML_HOME", str(home))
    return BundleStore(home)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "index").mkdir(parents=True)
    (src / "model.txt").write_bytes(os.urandom(256 * 1024))
    (src / "index" / "items.faiss").write_bytes(os.urandom(64 * 1024))
    return src


def test_sigkill_at_every_step_leaves_no_visible_version(store: BundleStore, source: Path) -> None:
    from bentoml._internal.models.model import ModelStore

    champion = save_bundle(
        "ranker", source, spec_sha256="1" * 64, data_fingerprint="fp", code_version="t", gate_passed=True, store=store
    )
    promote("ranker", champion.tag, "baseline", store=store)
    procs = {step: spawn(store.home, source, crash_at=step) for step in CRASH_STEPS}
    for step, proc in procs.items():
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, f"{step}: {err}"
    assert [r.tag for r in store.list()] == [champion.tag]
    assert len(list(ModelStore(store.models_dir).list())) == 1  # BentoML's own listing does not choke
    assert aliases("ranker", store=store)["champion"] == champion.tag
    load_bundle(champion.tag, store=store).open_file("model.txt")
    leftovers = [p for p in store.staging_dir.iterdir() if p.is_dir()]
    # a save that started after another was killed already swept that one's staging dir (save_bundle gc's first)
    assert 1 <= len(leftovers) <= len(CRASH_STEPS)
    removed = store.gc()
    assert sorted(removed) == sorted(leftovers)
    assert [p.name for p in store.staging_dir.iterdir()] == [".gc.lock"]
    assert [r.tag for r in store.list()] == [champion.tag]


def test_the_next_register_removes_what_a_killed_save_left(store: BundleStore, source: Path) -> None:
    proc = spawn(store.home, source, crash_at="after_fsync")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert [p for p in store.staging_dir.iterdir() if p.is_dir()]  # the killed save's half-written copy
    ref = save_bundle("ranker", source, spec_sha256="2" * 64, data_fingerprint="fp", code_version="t", store=store)
    assert [p.name for p in store.staging_dir.iterdir()] == [".gc.lock"]
    assert [r.tag for r in store.list()] == [ref.tag]


def test_gc_spares_a_live_staging_dir(store: BundleStore) -> None:
    with store.staging("save-ranker") as live:
        (live / "half.bin").write_bytes(b"x")
        assert store.gc() == []
        assert live.is_dir()
    assert not live.exists()


def test_concurrent_saves_give_distinct_complete_versions(store: BundleStore, source: Path) -> None:
    procs = [spawn(store.home, source) for _ in range(4)]
    tags = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        tags.append(out.strip())
    assert len(set(tags)) == 4
    listed = store.list("ranker")
    assert sorted(r.tag for r in listed) == sorted(tags)
    for ref in listed:
        ref.verify()
        assert sorted(p.name for p in ref.path.iterdir()) == ["index", "keel_manifest.json", "model.txt", "model.yaml"]
    assert (store.models_dir / "ranker" / "latest").read_text() == listed[0].manifest.version

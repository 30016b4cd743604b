"""BundleStore: ordering, isolation from foreign BentoML models, delete and gc housekeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.registry import BundleNotFound, BundleStore, save_bundle

T0 = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BundleStore:
    home = tmp_path / "bentoml"
    monkeypatch.setenv("BENTOML_HOME", str(home))
    return BundleStore(home)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.txt").write_text("m")
    return src


def save(store: BundleStore, source: Path, name: str, at: datetime) -> str:
    fields = {"spec_sha256": "0" * 64, "data_fingerprint": "fp", "code_version": "t"}
    return save_bundle(name, source, store=store, clock=lambda: at, **fields).tag


def test_home_defaults_to_bentoml_home(store: BundleStore) -> None:
    assert BundleStore().home == store.home


def test_list_is_newest_first_and_filters_by_name(store: BundleStore, source: Path) -> None:
    tags = [save(store, source, "ranker", T0 + timedelta(seconds=s)) for s in (5, 0, 10)]
    other = save(store, source, "retriever", T0 + timedelta(seconds=7))
    assert [r.tag for r in store.list("ranker")] == [tags[2], tags[0], tags[1]]
    assert [r.tag for r in store.list()] == [tags[2], other, tags[0], tags[1]]
    assert tags[2].startswith("ranker:20261123t101510-")


def test_foreign_bentoml_models_are_not_bundles(store: BundleStore, source: Path) -> None:
    import bentoml
    from bentoml._internal.models.model import ModelStore

    with bentoml.models.create("plain", _model_store=ModelStore(store.models_dir)) as ref:
        Path(ref.path_of("w.bin")).write_bytes(b"w")
    mine = save(store, source, "ranker", T0)
    assert [r.tag for r in store.list()] == [mine]
    with pytest.raises(BundleNotFound):
        store.get(f"plain:{ref.tag.version}")


def test_delete_moves_latest_and_keeps_bentoml_listing_sane(store: BundleStore, source: Path) -> None:
    from bentoml._internal.models.model import ModelStore

    old, new = save(store, source, "ranker", T0), save(store, source, "ranker", T0 + timedelta(hours=1))
    latest = store.models_dir / "ranker" / "latest"
    assert latest.read_text() == new.split(":")[1]
    store.delete(new)
    assert latest.read_text() == old.split(":")[1]
    assert [str(m.tag) for m in ModelStore(store.models_dir).list()] == [old]
    with pytest.raises(BundleNotFound):
        store.delete(new)
    store.delete(old)
    assert store.list() == [] and not latest.exists()
    assert [p.name for p in store.staging_dir.iterdir()] == [".gc.lock"]


def test_gc_removes_orphaned_temp_files_only(store: BundleStore, source: Path) -> None:
    tag = save(store, source, "ranker", T0)
    orphans = [store.models_dir / "ranker" / ".latest.tmp-dead", store.keel_dir / "ranker" / ".aliases.json.tmp-dead"]
    for orphan in orphans:
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_text("x")
    assert sorted(store.gc()) == sorted(orphans)
    assert store.gc() == []
    store.get(tag).verify()

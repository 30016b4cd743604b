"""Bundles: save/get round trip, BentoML visibility, and every way content can lie about itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.registry import (
    BundleNotFound,
    BundleRef,
    BundleStore,
    IntegrityError,
    InvalidName,
    RegistryError,
    VersionConflict,
    load_bundle,
    save_bundle,
)

FIELDS = {"spec_sha256": "ab" * 32, "data_fingerprint": "fp-1", "code_version": "git-abc"}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BundleStore:
    home = tmp_path / "bentoml"
    monkeypatch.setenv("BENTOML_HOME", str(home))
    return BundleStore(home)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "profiles").mkdir(parents=True)
    (src / "model.txt").write_text("tree 0\n")
    (src / "contract.json").write_text('{"columns": ["x"]}')
    (src / "profiles" / "reference_profile.json").write_text("{}")
    return src


def save(store: BundleStore, source: Path, name: str = "ranker", **kw) -> BundleRef:
    return save_bundle(
        name, source, features=["x", "y"], metrics={"auc": 0.91}, gate_passed=True, store=store, **FIELDS, **kw
    )


def test_round_trip_keeps_files_hashes_and_manifest(store: BundleStore, source: Path) -> None:
    ref = save(store, source, extra={"faiss": {"dim": 8}})
    assert ref.tag.startswith("ranker:") and ref.path == store.models_dir / "ranker" / ref.manifest.version
    assert sorted(ref.manifest.files) == ["contract.json", "model.txt", "profiles/reference_profile.json"]
    got = load_bundle(ref.tag, store=store)
    assert got.manifest == ref.manifest
    assert got.manifest.features == ["x", "y"] and got.manifest.metrics == {"auc": 0.91}
    assert got.manifest.extra == {"faiss": {"dim": 8}} and got.manifest.gate_passed is True
    assert got.open_file("profiles/reference_profile.json").read_text() == "{}"
    assert [r.tag for r in store.list()] == [ref.tag] == [r.tag for r in store.list("ranker")]
    assert store.list("other") == []


def test_bentoml_sees_the_bundle_with_labels_and_metadata(store: BundleStore, source: Path) -> None:
    import bentoml
    from bentoml._internal.models.model import ModelStore

    ref = save(store, source)
    model = bentoml.models.get(ref.tag, _model_store=ModelStore(store.models_dir))
    assert model.info.labels == {"keel": "bundle", "spec": "ranker"}
    assert model.info.metadata["keel_manifest"]["files"] == ref.manifest.files
    assert Path(model.path) == ref.path
    env = {**os.environ, "BENTOML_HOME": str(store.home), "DO_NOT_TRACK": "1"}
    cli = Path(sys.executable).with_name("bentoml")
    out = subprocess.run([cli, "models", "list", "-o", "json"], env=env, capture_output=True, text=True, check=True)
    assert ref.tag in {m["tag"] for m in json.loads(out.stdout)}
    assert (store.models_dir / "ranker" / "latest").read_text() == ref.manifest.version


def test_tampered_file_is_refused_naming_file_and_hashes(store: BundleStore, source: Path) -> None:
    ref = save(store, source)
    expected = ref.manifest.files["model.txt"]
    (ref.path / "model.txt").write_text("tree 0 (poisoned)\n")
    with pytest.raises(IntegrityError) as err:
        ref.open_file("model.txt")
    assert err.value.file == "model.txt" and err.value.expected == expected
    assert err.value.actual != expected and err.value.actual in str(err.value) and expected in str(err.value)
    with pytest.raises(IntegrityError, match=r"model\.txt"):
        load_bundle(ref.tag, store=store)
    assert ref.open_file("contract.json").is_file()  # untouched files still load


@pytest.mark.parametrize("damage", ["extra", "missing", "symlink"])
def test_verify_catches_planted_missing_and_swapped_files(store: BundleStore, source: Path, damage: str) -> None:
    ref = save(store, source)
    if damage == "extra":
        (ref.path / "evil.pkl").write_bytes(b"cos\nsystem\n")
        culprit = "evil.pkl"
    elif damage == "missing":
        (ref.path / "profiles" / "reference_profile.json").unlink()
        culprit = "profiles/reference_profile.json"
    else:
        target = ref.path / "contract.json"
        copy = ref.path.parent / "elsewhere.json"
        copy.write_bytes(target.read_bytes())
        target.unlink()
        target.symlink_to(copy)
        culprit = "contract.json"
    with pytest.raises(IntegrityError) as err:
        ref.verify()
    assert err.value.file == culprit
    if damage != "extra":
        with pytest.raises(IntegrityError):
            ref.open_file(culprit)


@pytest.mark.parametrize("name", ["../x", "a" * 64, "Ranker", "x/y", "", ".hidden", "x:y"])
def test_unsafe_names_are_refused(store: BundleStore, source: Path, name: str) -> None:
    with pytest.raises(InvalidName):
        save(store, source, name=name)
    assert not store.home.exists() or store.list() == []


@pytest.mark.parametrize("tag", ["ranker", "ranker:latest", "../x:1", "ranker:../../etc", "a:b:c"])
def test_only_exact_safe_tags_load(store: BundleStore, source: Path, tag: str) -> None:
    save(store, source)
    with pytest.raises(InvalidName):
        load_bundle(tag, store=store)


def test_source_with_reserved_or_linked_files_is_refused(store: BundleStore, source: Path) -> None:
    (source / "keel_manifest.json").write_text("{}")
    with pytest.raises(InvalidName, match=r"keel_manifest\.json"):
        save(store, source)
    (source / "keel_manifest.json").unlink()
    (source / "link.txt").symlink_to(source / "model.txt")
    with pytest.raises(InvalidName, match="symlink"):
        save(store, source)
    (source / "link.txt").unlink()
    with pytest.raises(RegistryError, match="not a directory"):
        save(store, source / "nope")


def test_damaged_manifest_hides_the_bundle(store: BundleStore, source: Path) -> None:
    ref = save(store, source)
    (ref.path / "keel_manifest.json").write_text('{"name": "ranker"')
    assert store.list() == []
    with pytest.raises(BundleNotFound):
        load_bundle(ref.tag, store=store)


def test_version_collision_is_a_clean_conflict(store: BundleStore, source: Path, monkeypatch) -> None:
    import pipeline.registry.bundle as bundle_mod

    monkeypatch.setattr(bundle_mod, "new_version", lambda now: "20260101t000000-deadbeef")
    first = save(store, source)
    (source / "model.txt").write_text("tree 1\n")
    with pytest.raises(VersionConflict):
        save(store, source)
    first.verify()  # nothing merged into the existing version
    assert list(store.staging_dir.iterdir()) == [store.staging_dir / ".gc.lock"]


def test_non_json_metrics_are_refused_before_anything_is_visible(store: BundleStore, source: Path) -> None:
    with pytest.raises(RegistryError, match="JSON"):
        save(store, source, extra={"nan": float("nan")})
    assert store.list() == [] and [p.name for p in store.staging_dir.iterdir()] == [".gc.lock"]

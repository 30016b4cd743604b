"""Register a directory of artifacts as ONE co-versioned bundle, atomically.

A save goes: stage in ``$BENTOML_HOME/keel/.staging/<random>`` (same filesystem as
the store) -> copy + sha256 -> fsync -> ``model.yaml`` -> manifest LAST -> fsync the
directory -> under the per-name register lock, ``os.rename`` into
``models/<name>/<version>``. Killed before the rename, nothing is visible (and
``BundleStore.gc`` removes the staging dir); after it, the bundle is complete. A
version collision is a clean ``VersionConflict``: rename never merges because the
target is checked under the lock and a rename onto a non-empty dir fails anyway.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.registry._fs import copy_hashed, crash_point, fsync_path, fsync_tree
from pipeline.registry.bentoml_layout import write_model_yaml
from pipeline.registry.errors import InvalidName, RegistryError, VersionConflict
from pipeline.registry.manifest import MANIFEST_FILE, BundleManifest, BundleRef, check_relpath
from pipeline.registry.store import BundleStore
from pipeline.registry.tags import check_name, new_version

Clock = Callable[[], datetime]
CRASH_STEPS = ("after_copy", "after_fsync", "before_manifest", "before_rename")

__all__ = ["CRASH_STEPS", "BundleManifest", "BundleRef", "load_bundle", "save_bundle"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _source_files(source_dir: Path) -> list[str]:
    """Relative paths of every regular file; symlinks and odd names are refused, not followed."""
    if not source_dir.is_dir():
        raise RegistryError(f"bundle source {source_dir} is not a directory")
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(source_dir):
        base = Path(dirpath)
        for entry in [*filenames, *dirnames]:
            path = base / entry
            rel = path.relative_to(source_dir).as_posix()
            if path.is_symlink():
                raise InvalidName(f"bundle source contains a symlink {rel!r}; copy the real file in")
            check_relpath(rel)
            if entry in filenames:
                if not path.is_file():
                    raise InvalidName(f"bundle source entry {rel!r} is not a regular file")
                found.append(rel)
    if not found:
        raise RegistryError(f"bundle source {source_dir} has no files")
    return sorted(found)


def save_bundle(
    name: str,
    source_dir: Path,
    *,
    spec_sha256: str,
    data_fingerprint: str,
    code_version: str,
    features: Sequence[str] = (),
    metrics: Mapping[str, Any] | None = None,
    gate_passed: bool = False,
    extra: Mapping[str, Any] | None = None,
    store: BundleStore | None = None,
    clock: Clock = _utcnow,
) -> BundleRef:
    """Copy every file of ``source_dir`` into the store as one new version; return its exact ref."""
    check_name(name)
    store = store or BundleStore()
    with contextlib.suppress(RegistryError, OSError):  # staging dirs a killed save left behind go first
        store.gc()
    source_dir = Path(source_dir)
    rels = _source_files(source_dir)
    created = clock()
    created = (created if created.tzinfo else created.replace(tzinfo=UTC)).astimezone(UTC)  # sortable created_at
    version = new_version(created)
    with store.staging(f"save-{name}") as stage:
        files: dict[str, str] = {}
        for rel in rels:
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            files[rel] = copy_hashed(source_dir / rel, stage / rel)
        crash_point("after_copy")
        fsync_tree(stage)
        crash_point("after_fsync")
        manifest = BundleManifest(
            name=name,
            version=version,
            created_at=created.isoformat(),
            spec_sha256=spec_sha256,
            data_fingerprint=data_fingerprint,
            code_version=code_version,
            features=list(features),
            files=files,
            metrics=dict(metrics or {}),
            gate_passed=bool(gate_passed),
            extra=dict(extra or {}),
        )
        try:
            manifest = BundleManifest.from_json(manifest.to_json())  # same validation as every reader
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"bundle {name}: manifest fields are not plain finite JSON: {exc}") from exc
        write_model_yaml(stage, manifest, created)
        crash_point("before_manifest")
        with open(stage / MANIFEST_FILE, "x", encoding="utf-8") as fh:
            fh.write(manifest.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        fsync_path(stage)
        crash_point("before_rename")
        final = store.bundle_dir(name, version)
        with store.register_lock(name):
            if final.exists():
                raise VersionConflict(f"bundle {manifest.tag} already exists; not merging into it")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(stage, final)
            fsync_path(final.parent)
            store.refresh_latest(name)
    return BundleRef(tag=manifest.tag, path=final, manifest=manifest)


def load_bundle(tag: str, *, store: BundleStore | None = None, verify: bool = True) -> BundleRef:
    """Exact tag only (``name:version``; never ``:latest``); by default every file is checked first."""
    ref = (store or BundleStore()).get(tag)
    if verify:
        ref.verify()
    return ref

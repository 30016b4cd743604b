"""BundleStore: list, get, delete and garbage-collect Keel bundles in a BentoML home.

Layout (all on one filesystem, so every commit is a ``rename``)::

    $BENTOML_HOME/models/<name>/<version>/   committed bundle = BentoML model dir
        model.yaml                           BentoML's descriptor (labels keel=bundle)
        keel_manifest.json                   commit marker + sha256 of every file
        <files...>
    $BENTOML_HOME/models/<name>/latest       BentoML convenience; Keel never reads it
    $BENTOML_HOME/keel/.staging/<random>/    in-flight saves and deletes (flock-held)
    $BENTOML_HOME/keel/<name>/               aliases.json, history.jsonl, lock files

Staging lives outside ``models/`` on purpose: BentoML's own ``list`` raises on any
directory under ``models/<name>/`` without ``model.yaml``, so a crashed save must
never leave one there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipeline.registry._fs import TMP_MARK, file_lock, fsync_path, try_lock_dir
from pipeline.registry.alias_state import alias_lock, read_state
from pipeline.registry.bentoml_layout import write_latest
from pipeline.registry.errors import BundleInUse, BundleNotFound, RegistryError
from pipeline.registry.manifest import BundleRef, read_manifest
from pipeline.registry.tags import check_name, make_tag, parse_tag
from pipeline.spec.types import NAME_PATTERN

GC_LOCK = ".gc.lock"
REGISTER_LOCK = "register.lock"


class BundleStore:
    """Keel's view of one BentoML home; only bundles with a valid manifest exist for it."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = Path(home or os.environ.get("BENTOML_HOME") or Path.home() / "bentoml").expanduser()
        self.models_dir = self.home / "models"
        self.keel_dir = self.home / "keel"
        self.staging_dir = self.keel_dir / ".staging"  # the dot keeps it out of the bundle-name space

    def __repr__(self) -> str:
        return f"BundleStore({str(self.home)!r})"

    def bundle_dir(self, name: str, version: str) -> Path:
        return self.models_dir / check_name(name) / check_name(version, "version")

    @contextlib.contextmanager
    def register_lock(self, name: str) -> Iterator[None]:
        """Serialises renames into (and out of) ``models/<name>/`` and the ``latest`` pointer."""
        with file_lock(self.keel_dir / check_name(name) / REGISTER_LOCK):
            yield

    @contextlib.contextmanager
    def staging(self, prefix: str) -> Iterator[Path]:
        """A fresh staging dir, flock-held for its lifetime so ``gc`` can tell live from dead."""
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.staging_dir / GC_LOCK, shared=True):  # gc cannot run between mkdtemp and flock
            path = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.staging_dir))
            fd = try_lock_dir(path)
        if fd is None:
            raise RegistryError(f"could not lock staging directory {path}")
        ours = os.fstat(fd)
        try:
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):  # gone once renamed into the store
                if os.path.samestat(os.stat(path), ours):  # never remove a namesake made after our rename
                    shutil.rmtree(path, ignore_errors=True)
            os.close(fd)

    def _read(self, name: str, version: str) -> BundleRef | None:
        path = self.models_dir / name / version
        try:
            manifest = read_manifest(path)
        except (OSError, ValueError, RegistryError):
            return None
        if (manifest.name, manifest.version) != (name, version):
            return None  # a copied or renamed directory is not the bundle its manifest describes
        return BundleRef(tag=make_tag(name, version), path=path, manifest=manifest)

    def list(self, name: str | None = None) -> list[BundleRef]:
        """Committed bundles, newest first; foreign BentoML models and half-written dirs are skipped."""
        if name is not None:
            names = [check_name(name)]
        elif self.models_dir.is_dir():
            names = sorted(p.name for p in self.models_dir.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name))
        else:
            names = []
        refs: list[BundleRef] = []
        for n in names:
            base = self.models_dir / n
            if not base.is_dir():
                continue
            for entry in base.iterdir():
                if entry.is_dir() and NAME_PATTERN.match(entry.name) and (ref := self._read(n, entry.name)):
                    refs.append(ref)
        refs.sort(key=lambda r: (r.manifest.created_at, r.manifest.version), reverse=True)
        return refs

    def get(self, tag: str) -> BundleRef:
        """Exact ``name:version`` only; a version without a valid manifest does not exist."""
        name, version = parse_tag(tag)
        ref = self._read(name, version)
        if ref is None:
            raise BundleNotFound(f"bundle {tag} not found (or not committed) in {self.models_dir}")
        return ref

    def refresh_latest(self, name: str) -> None:
        """Caller holds register_lock."""
        refs = self.list(name)
        if (self.models_dir / name).is_dir():
            write_latest(self.models_dir / name, refs[0].manifest.version if refs else None)

    def delete(self, tag: str) -> None:
        """Remove a bundle unless an alias points to it; the removal itself is one rename out of the store."""
        name, _ = parse_tag(tag)
        with alias_lock(self.keel_dir, name):
            ref = self.get(tag)  # under the lock, so a concurrent delete yields BundleNotFound, not a crash
            state = read_state(self.keel_dir, name)
            users = [alias for alias, target in state.aliases().items() if target == ref.tag]
            if users:
                raise BundleInUse(f"bundle {tag} is {', '.join(users)} of {name!r}; move the alias first")
            with self.register_lock(name), self.staging(f"delete-{name}") as trash:
                os.rename(ref.path, trash / "bundle")
                fsync_path(ref.path.parent)
                self.refresh_latest(name)

    def gc(self) -> list[Path]:
        """Remove staging dirs whose owner died (their flock is free) and orphaned temp files."""
        removed: list[Path] = []
        if self.staging_dir.is_dir():
            with file_lock(self.staging_dir / GC_LOCK):
                for entry in self.staging_dir.iterdir():
                    if entry.name == GC_LOCK:
                        continue
                    fd = try_lock_dir(entry) if entry.is_dir() else None
                    if entry.is_dir() and fd is None:
                        continue  # a live save or delete holds it
                    try:
                        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                        removed.append(entry)
                    finally:
                        if fd is not None:
                            os.close(fd)
        removed += self._gc_temp_files()
        return removed

    def _gc_temp_files(self) -> list[Path]:
        removed: list[Path] = []
        for parent, lock in [(self.models_dir, self.register_lock), (self.keel_dir, None)]:
            if not parent.is_dir():
                continue
            for name_dir in parent.iterdir():
                if not (name_dir.is_dir() and NAME_PATTERN.match(name_dir.name)):
                    continue
                ctx = lock(name_dir.name) if lock else alias_lock(self.keel_dir, name_dir.name)
                with ctx:
                    for tmp in name_dir.glob(f".*{TMP_MARK}*"):
                        if tmp.is_file():
                            tmp.unlink()
                            removed.append(tmp)
        return removed

"""The bundle manifest (what was registered) and BundleRef (a verified handle on it).

The manifest is the trust anchor: it lists every file with its sha256, and it is
written last, so its presence marks a complete bundle. BentoML's ``model.yaml`` is
not trusted for anything; it only makes the directory visible to BentoML tooling.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pipeline.registry._fs import sha256_file
from pipeline.registry.errors import IntegrityError, InvalidName, RegistryError
from pipeline.registry.tags import check_name, make_tag

MANIFEST_FILE = "keel_manifest.json"
BENTOML_FILE = "model.yaml"
RESERVED = frozenset({MANIFEST_FILE, BENTOML_FILE})
SCHEMA = 1
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")


def check_relpath(rel: str) -> str:
    """A bundle-relative POSIX path: no absolute, no '..', no hidden parts, no reserved names."""
    parts = rel.split("/") if isinstance(rel, str) else []
    if not parts or not all(_PART.match(p) for p in parts) or rel in RESERVED:
        raise InvalidName(f"invalid bundle file path {rel!r}: use 'dir/file.ext' of [A-Za-z0-9._-], no '..'")
    return rel


@dataclass(frozen=True)
class BundleManifest:
    """Everything needed to reproduce and trust a bundle; JSON round-trips exactly."""

    name: str
    version: str
    created_at: str
    spec_sha256: str
    data_fingerprint: str
    code_version: str
    features: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    gate_passed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA

    @property
    def tag(self) -> str:
        return make_tag(self.name, self.version)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> BundleManifest:
        """Parse and validate; any deviation raises, so a damaged manifest is never half-trusted."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise RegistryError("manifest is not a JSON object")
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise RegistryError(f"manifest keys differ: missing {names - set(data)}, unknown {set(data) - names}")
        if data["schema"] != SCHEMA:
            raise RegistryError(f"manifest schema {data['schema']!r} is not supported (expected {SCHEMA})")
        check_name(data["name"])
        check_name(data["version"], "version")
        for key in ("created_at", "spec_sha256", "data_fingerprint", "code_version"):
            if not isinstance(data[key], str):
                raise RegistryError(f"manifest field {key!r} must be a string")
        if not isinstance(data["features"], list) or not all(isinstance(f, str) for f in data["features"]):
            raise RegistryError("manifest field 'features' must be a list of strings")
        if not isinstance(data["files"], dict) or not data["files"]:
            raise RegistryError("manifest field 'files' must be a non-empty object")
        for rel, digest in data["files"].items():
            check_relpath(rel)
            if not isinstance(digest, str) or not _SHA.match(digest):
                raise RegistryError(f"manifest sha256 for {rel!r} is malformed")
        for key in ("metrics", "extra"):
            if not isinstance(data[key], dict):
                raise RegistryError(f"manifest field {key!r} must be an object")
        if not isinstance(data["gate_passed"], bool):
            raise RegistryError("manifest field 'gate_passed' must be a boolean")
        return cls(**data)


def read_manifest(bundle_dir: Path) -> BundleManifest:
    return BundleManifest.from_json((bundle_dir / MANIFEST_FILE).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class BundleRef:
    """A committed bundle. Files are handed out only after their sha256 matches the manifest."""

    tag: str
    path: Path
    manifest: BundleManifest

    def open_file(self, relative: str) -> Path:
        """Path to a bundle file, verified now (call it right before loading, not once at startup)."""
        if relative not in self.manifest.files:
            raise RegistryError(f"bundle {self.tag} has no file {relative!r}; files: {sorted(self.manifest.files)}")
        expected = self.manifest.files[relative]
        target = self.path / relative
        if target.is_symlink() or not target.is_file():
            actual = "symlink" if target.is_symlink() else "missing"
            raise IntegrityError(self.tag, relative, expected, actual)
        actual = sha256_file(target)
        if actual != expected:
            raise IntegrityError(self.tag, relative, expected, actual)
        return target

    def verify(self) -> None:
        """Check every file, and that no file was added, removed or swapped for a symlink."""
        on_disk: dict[str, Path] = {}
        for dirpath, dirnames, filenames in os.walk(self.path):
            base = Path(dirpath)
            for entry in [*filenames, *(d for d in dirnames if (base / d).is_symlink())]:
                rel = (base / entry).relative_to(self.path).as_posix()
                if rel not in RESERVED:
                    on_disk[rel] = base / entry
        problems: list[tuple[str, str, str]] = []
        for rel, expected in sorted(self.manifest.files.items()):
            path = on_disk.pop(rel, None)
            if path is None:
                problems.append((rel, expected, "missing"))
            elif path.is_symlink() or not path.is_file():
                problems.append((rel, expected, "not a regular file"))
            elif (actual := sha256_file(path)) != expected:
                problems.append((rel, expected, actual))
        problems += [(rel, "absent (not in manifest)", "present") for rel in sorted(on_disk)]
        if problems:
            first = problems[0]
            raise IntegrityError(self.tag, *first, problems=[f"{f}: expected {e}, actual {a}" for f, e, a in problems])

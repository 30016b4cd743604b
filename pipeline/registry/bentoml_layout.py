"""Make a staged bundle directory a valid BentoML model without using ``ModelStore.register``.

Why not ``bentoml.models.create``: it writes into a ``tempfile.mkdtemp`` under the
system temp dir (often another filesystem), then ``copytree``s into the final store
directory in place and rewrites ``latest`` in place (see reliability notes). A kill
mid-copy leaves a half model that makes ``bentoml models list`` raise. Instead we
build ``model.yaml`` with BentoML's own ``ModelInfo`` (so the format is BentoML's,
validated by its attrs validators) inside our staging dir, and the store renames the
whole directory into ``$BENTOML_HOME/models/<name>/<version>`` in one step.

``ModelInfo``/``ModelContext`` are internal to BentoML (pinned 1.4.x); a test runs
``bentoml.models.get`` on every saved bundle so a format change fails loudly.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.registry._fs import atomic_write, fsync_path
from pipeline.registry.manifest import BENTOML_FILE, BundleManifest

LABELS = {"keel": "bundle"}


def bentoml_metadata(manifest: BundleManifest) -> dict[str, Any]:
    """The manifest as BentoML metadata (for ``bentoml models get``); informative only, never trusted."""
    from bentoml._internal.utils import validate_metadata

    meta: dict[str, Any] = {"keel_manifest": manifest.to_dict()}
    try:
        validate_metadata(meta)  # BentoML rejects None and odd types; fall back to the scalar summary
    except ValueError:
        meta = {
            "keel_manifest": {
                k: getattr(manifest, k)
                for k in ("name", "version", "created_at", "spec_sha256", "data_fingerprint", "code_version")
            }
            | {"gate_passed": manifest.gate_passed, "files": dict(manifest.files)}
        }
    return meta


def write_model_yaml(bundle_dir: Path, manifest: BundleManifest, created: datetime) -> Path:
    """Write and fsync ``model.yaml`` for ``manifest`` into ``bundle_dir``."""
    from bentoml._internal.models.model import ModelContext, ModelInfo
    from bentoml._internal.tag import Tag

    info = ModelInfo(
        tag=Tag(manifest.name, manifest.version),
        module="",
        labels={**LABELS, "spec": manifest.name},
        options={},
        metadata=bentoml_metadata(manifest),
        context=ModelContext(framework_name="keel", framework_versions={}),
        signatures={},
        api_version="v1",
        creation_time=created,
    )
    path = bundle_dir / BENTOML_FILE
    with open(path, "x", encoding="utf-8") as fh:
        info.dump(fh)
        fh.flush()
    fsync_path(path)
    return path


def write_latest(name_dir: Path, version: str | None) -> None:
    """Point BentoML's ``latest`` at ``version`` atomically (Keel itself never reads it)."""
    latest = name_dir / "latest"
    if version is None:
        latest.unlink(missing_ok=True)
        return
    atomic_write(latest, version.encode())

"""Which BentoML store a spec's bundles live in: one answer for every verb (docs/adr/0017-one-store-one-server.md).

Order: the spec's `runtime.bentoml_home` (or its override) when set; else BENTOML_HOME when the
environment sets it (an operator's deliberate choice, like PREFECT_API_URL); else the project-local
`.keel/bentoml` under the working directory, as `runtime.runs_dir` is. A relative path is made
absolute at once, so the serving processes (started in another directory) use the same store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PROJECT_STORE = Path(".keel") / "bentoml"


def store_home(runtime: Any) -> tuple[Path, str]:
    """The store's absolute path for a spec's `runtime` section, and where that choice came from."""
    if getattr(runtime, "bentoml_home", None):
        return Path(runtime.bentoml_home).expanduser().resolve(), "runtime.bentoml_home"
    if os.environ.get("BENTOML_HOME"):
        return Path(os.environ["BENTOML_HOME"]).expanduser().resolve(), "BENTOML_HOME"
    return PROJECT_STORE.resolve(), "project default .keel/bentoml"


def spec_store(spec: Any):
    """The BundleStore every verb uses for `spec` (a Spec)."""
    from pipeline.registry.store import BundleStore

    return BundleStore(store_home(spec.runtime)[0])

"""Find and load the champion bundle for a spec, turning every failure into one readable line.

Serving must never come up "ready" on a model it could not prove intact (KServe #1791): the
champion tag comes from the alias file, every file is sha256-checked by load_tabular_bundle
before it is parsed, and the caller gets either a Scorer or the reason it has none.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.registry import BundleStore
from pipeline.registry.aliases import aliases
from pipeline.registry.home import spec_store
from pipeline.registry.tabular import load_tabular_bundle
from pipeline.serving.scorer import Scorer
from pipeline.spec.load import load_spec
from pipeline.spec.schema import Spec


class NotServable(RuntimeError):
    """There is no intact champion to serve; the message says what to do about it."""


@dataclass
class Loaded:
    spec: Spec
    store: BundleStore
    scorer: Scorer


def load_serving_spec(spec_path: str | Path, home: str | Path | None = None) -> tuple[Spec, BundleStore]:
    """The spec (with `keel serve`'s overrides) and the store it serves from.

    `keel serve` resolves the store once (pipeline/registry/home.py) and hands it over as BENTOML_HOME,
    with the command line's overrides and config dirs as KEEL_OVERRIDES / KEEL_CONF_DIRS (JSON lists),
    so the service runs the spec the command checked, not the file alone.
    """
    try:
        overrides = json.loads(os.environ.get("KEEL_OVERRIDES") or "[]")
        conf_dirs = [Path(d) for d in json.loads(os.environ.get("KEEL_CONF_DIRS") or "[]")]
        spec = load_spec(spec_path, overrides, conf_dirs).spec
    except Exception as exc:  # SpecError and friends: report, do not crash the worker
        raise NotServable(f"cannot load spec {spec_path}: {exc}") from exc
    # KEEL_STORE: a Keel store that is not BentoML's home (a built Bento's own, pipeline/packaging/bento_service.py)
    home = home or os.environ.get("KEEL_STORE") or os.environ.get("BENTOML_HOME")
    return spec, (BundleStore(Path(home)) if home else spec_store(spec))


def load_champion(spec_path: str | Path, home: str | Path | None = None, max_batch: int = 1000) -> Loaded:
    """The spec's champion as a Scorer; NotServable (never a half-loaded model) otherwise."""
    spec, store = load_serving_spec(spec_path, home)
    try:
        tag = aliases(spec.name, store=store).get("champion")
    except Exception as exc:
        raise NotServable(f"cannot read aliases for {spec.name!r} in {store.home}: {exc}") from exc
    if not tag:
        raise NotServable(
            f"no champion for {spec.name!r} in {store.home}: train and promote a bundle first (keel promote)"
        )
    try:
        bundle = load_tabular_bundle(store.get(tag))
        scorer = Scorer(bundle, max_batch=max_batch, id_field=spec.data.entity_id)
    except Exception as exc:  # IntegrityError (tampered file), missing files, wrong model family
        raise NotServable(f"champion {tag} refused at load: {type(exc).__name__}: {exc}") from exc
    return Loaded(spec, store, scorer)

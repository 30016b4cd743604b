"""Inside a Bento `keel build` made: serve the bundle it was built with, from the Bento alone.

The Bento holds Keel's code (`pipeline/`), the resolved spec (`keel_bento/spec.yaml`), `keel_bento/bento.json`
(spec name, bundle tag, host) and the bundle as a BentoML model. At import, `prepare` points the service at
that spec and builds a small Keel store of its own (KEEL_STORE; default under the temp dir): a link to the
bundle BentoML resolves with `bentoml.models.get` (the Bento's own model store once it is served) and a
champion alias naming it. The service then serves exactly that bundle; no checkout, no `conf/`, no alias
record of the machine that built it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

BUILDING = "KEEL_BENTO_BUILDING"  # set while `bentoml build` imports the service: nothing to prepare


def bento_info(here: Path) -> dict[str, Any]:
    return json.loads((here / "bento.json").read_text())


def prepare(here: Path) -> dict[str, Any]:
    """Set KEEL_SPEC / KEEL_STORE for the service and make the store serve the Bento's bundle."""
    info = bento_info(here)
    os.environ.setdefault("KEEL_SPEC", str(here / "spec.yaml"))
    os.environ.setdefault("KEEL_OVERRIDES", "[]")
    os.environ.setdefault("KEEL_CONF_DIRS", "[]")
    if os.environ.get(BUILDING) == "1":
        return info
    name, version = info["bundle"].split(":", 1)
    default = Path(tempfile.gettempdir()) / f"keel-bento-{os.getuid()}" / f"{name}-{version}"
    store = Path(os.environ.setdefault("KEEL_STORE", str(default)))
    ensure_store(store, info["bundle"])
    return info


def ensure_store(home: Path, tag: str) -> None:
    """`home` serves `tag`: models/<name>/<version> links to BentoML's copy of the bundle; champion is `tag`."""
    import bentoml

    from pipeline.registry import BundleStore, promote

    name, version = tag.split(":", 1)
    model_path = Path(bentoml.models.get(tag).path)
    link = home / "models" / name / version
    link.parent.mkdir(parents=True, exist_ok=True)
    if not (link.is_symlink() and Path(os.readlink(link)) == model_path):
        temporary = link.with_name(f".{version}.{os.getpid()}.link")  # workers race here: last rename wins
        temporary.unlink(missing_ok=True)
        os.symlink(model_path, temporary)
        os.replace(temporary, link)
    promote(name, tag, "the bundle this Bento was built with", store=BundleStore(home))  # a no-op when it is


def bind_host(service: Any, info: dict[str, Any]) -> None:
    """The address the Bento binds: KEEL_HOST, else `keel build --host` (`bentoml serve --host` still wins)."""
    host = os.environ.get("KEEL_HOST") or info.get("host")
    if host:
        service.config.setdefault("http", {})["host"] = host

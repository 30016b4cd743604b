"""`keel build SPEC`: a Bento that serves one bundle anywhere, through BentoML's public build API.

What goes in (docs/adr/0026-keel-travels.md):
- the bundle, as a BentoML model (`models=[tag]`: Keel's store already is BentoML's model-store layout);
- Keel's code (`pipeline/`, copied from wherever it is installed) and the spec resolved by this command
  (`keel_bento/spec.yaml`, overrides and config groups applied): the Bento never reads a checkout or conf/;
- `keel_bento/service.py`, which points the service at both (pipeline/packaging/bento_service.py) and binds
  the host given with `--host` (default 0.0.0.0: a Bento runs in a container);
- requirements pinned from constraints.txt (a checkout) or the versions installed here (an installed Keel):
  Keel's dependencies plus keel[serve]; torch and faiss only for a recommendation bundle.

BentoML builds into the store the bundle lives in (BENTOML_HOME = the Keel store), in a child process so
this process's BentoML configuration never matters. `bentoml export`/`import`/`serve`/`containerize` take
it from there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from pipeline.spec.package_conf import keel_conf_dir

# Keel's dependencies and the serve/recsys extras (pyproject.toml; a unit test keeps them equal)
CORE = [
    "hydra-core", "omegaconf", "pydantic", "pyyaml", "croniter", "numpy", "pandas", "pyarrow", "pandera",
    "great-expectations", "prefect", "fastapi", "bentoml", "lightgbm", "scipy", "scikit-learn", "threadpoolctl",
    "tqdm", "click", "matplotlib", "redis", "psycopg[binary]",
]  # fmt: skip
SERVE = ["uvloop", "httptools", "redis"]
RECSYS = ["torch", "faiss-cpu", "implicit"]  # keel[recsys] (implicit: the `als` retrieval source)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # torch==X+cpu lives there, not on PyPI
ENTRY = '''"""This Bento's service: Keel's, on the spec and bundle `keel build` put here.

See pipeline/packaging/bento_service.py.
"""

from pathlib import Path

from pipeline.packaging.bento_service import bind_host, prepare

HERE = Path(__file__).resolve().parent
INFO = prepare(HERE)

from pipeline.serving.service import ChurnService  # noqa: E402  (after prepare: it reads KEEL_SPEC/KEEL_STORE)

bind_host(ChurnService, INFO)
'''


class BuildError(Exception):
    """The Bento cannot be built; the message says why (exit 2, or 1 for a bundle that failed its gates)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class BuiltBento:
    tag: str
    bundle: str
    store: Path
    host: str
    requirements: list[str] = field(default_factory=list)
    path: str = ""

    def text(self) -> str:
        env = f"BENTOML_HOME={self.store}"
        return "\n".join(
            [
                f"built Bento {self.tag} with bundle {self.bundle} (binds {self.host}), in {self.store}",
                f"  requirements: {', '.join(self.requirements)}",
                f"  {env} bentoml export {self.tag} {self.tag.split(':')[0]}.bento   # a file to ship",
                f"  bentoml import {self.tag.split(':')[0]}.bento && bentoml serve {self.tag}   # anywhere",
                f"  {env} bentoml containerize {self.tag}   # an OCI image (docker or podman)",
            ]
        )

    def payload(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "bento": self.tag,
            "bundle": self.bundle,
            "store": str(self.store),
            "host": self.host,
            "requirements": self.requirements,
            "path": self.path,
        }


def resolve_tag(spec: Any, store: Any, which: str) -> str:
    from pipeline.registry.aliases import aliases

    if which in ("champion", "challenger", "standby"):
        tag = aliases(spec.name, store=store).get(which)
        if not tag:
            raise BuildError(f"{spec.name} has no {which} bundle in {store.models_dir}: train one with `keel run`")
        return tag
    if ":" not in which or which.split(":", 1)[0] != spec.name:
        raise BuildError(f"--bundle must be champion, challenger or {spec.name}:VERSION, got {which!r}")
    return which


def requirements(task: str, constraints: Path | None = None) -> list[str]:
    """Keel's and keel[serve]'s packages (keel[recsys]'s for recommendations), each pinned to one version."""
    names = list(dict.fromkeys(CORE + SERVE + (RECSYS if task == "recommendation" else [])))
    pins = _constraints(constraints)
    out = []
    for name in names:
        base = name.split("[")[0]
        version = pins.get(_canonical(base)) or _installed(base)
        out.append(f"{name}=={version}" if version else name)
    return out


def build_bento(loaded: Any, which: str = "champion", host: str = "0.0.0.0", name: str | None = None) -> BuiltBento:
    from pipeline.registry import RegistryError
    from pipeline.registry.home import spec_store

    spec = loaded.spec
    store = spec_store(spec)
    tag = resolve_tag(spec, store, which)
    try:
        ref = store.get(tag)
        ref.verify()
    except RegistryError as exc:
        raise BuildError(f"keel build: {exc}") from None
    if not ref.manifest.gate_passed:
        raise BuildError(f"bundle {tag} did not pass its gates: a Bento ships only a bundle that did", code=1)
    checkout_constraints = keel_conf_dir().parent / "constraints.txt"
    reqs = requirements(spec.task, checkout_constraints if checkout_constraints.is_file() else None)
    with tempfile.TemporaryDirectory(prefix="keel-bento-") as tmp:
        ctx = Path(tmp)
        _copy_keel(ctx / "pipeline")
        here = ctx / "keel_bento"
        here.mkdir()
        (here / "__init__.py").write_text("")
        (here / "service.py").write_text(ENTRY)
        (here / "spec.yaml").write_text(
            f"# {loaded.path} resolved by keel build; sha256 {loaded.sha256}\n" + loaded.to_yaml()
        )
        info = {"name": spec.name, "bundle": tag, "host": host, "task": spec.task, "spec_sha256": loaded.sha256}
        (here / "bento.json").write_text(json.dumps(info, indent=2))
        options = {
            "service": "keel_bento.service:ChurnService",
            "name": name or spec.name,
            "labels": {"framework": "keel", "spec": spec.name, "bundle_version": tag.split(":", 1)[1]},
            "description": f"Keel: {spec.name} serving bundle {tag}",
            "include": ["pipeline/**/*.py", "keel_bento/**"],
            "exclude": ["**/__pycache__/"],
            "python": {"packages": reqs, "lock_packages": False}
            | ({"extra_index_url": [TORCH_CPU_INDEX]} if spec.task == "recommendation" else {}),
            "docker": {"python_version": "3.11", "system_packages": ["libgomp1"]},
            "envs": [{"name": "OMP_NUM_THREADS", "value": "1"}],
            "models": [tag],
        }
        (ctx / "bentofile.yaml").write_text(yaml.safe_dump(options, sort_keys=False))  # the Bento keeps it
        env = {**os.environ, "BENTOML_HOME": str(store.home), "BENTOML_DO_NOT_TRACK": "True"}
        env["KEEL_BENTO_BUILDING"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ctx), env.get("PYTHONPATH", "")) if p)
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.packaging.bento", str(ctx)],
            cwd=ctx,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    if proc.returncode != 0:
        raise BuildError(f"bentoml build failed: {(proc.stderr or proc.stdout).strip()[-2000:]}", code=1)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return BuiltBento(result["tag"], tag, store.home, host, reqs, result["path"])


def _copy_keel(target: Path) -> None:
    """Keel's Python code, from wherever this Keel is installed (a checkout or site-packages)."""
    source = Path(__file__).resolve().parents[1]
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "conf"))


def _constraints(path: Path | None) -> dict[str, str]:
    pins: dict[str, str] = {}
    if path is None:
        return pins
    for line in path.read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if match:
            pins[_canonical(match.group(1))] = match.group(2)
    return pins


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _build_here(ctx: Path) -> None:
    """The child: BentoML's public build API on the prepared bentofile; prints the Bento's tag as JSON."""
    import bentoml

    bento = bentoml.bentos.build_bentofile(str(ctx / "bentofile.yaml"), build_ctx=str(ctx))
    print(json.dumps({"tag": str(bento.tag), "path": str(bento.path)}))


if __name__ == "__main__":
    _build_here(Path(sys.argv[1]))

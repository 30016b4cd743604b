"""load_spec: the one entry point from a spec file and overrides to a checked Spec.

Compose (Hydra) -> forbid unsafe constructs -> type-check (pydantic) -> semantic
checks. Any problem at any step ends in one SpecError listing all problems of that
step; the CLI prints it and exits 2 without a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.spec.bounds import check_bounds
from pipeline.spec.compose import ComposeFailed, Provenance, compose_spec
from pipeline.spec.errors import Problem, SpecError
from pipeline.spec.model_groups import apply_model_groups
from pipeline.spec.package_conf import keel_conf_dir
from pipeline.spec.schema import Spec
from pipeline.spec.selectors import resolve_feature_selectors
from pipeline.spec.semantic import check_semantics
from pipeline.spec.typecheck import typecheck

PACKAGE_CONF = keel_conf_dir()  # the installed package's pipeline/conf/, else the checkout's conf/


@dataclass
class LoadedSpec:
    """A checked spec with what a run records beside it."""

    spec: Spec
    path: Path
    overrides: list[str]
    choices: dict[str, str]
    provenance: Provenance
    conf_dirs: list[Path]
    # what every YAML file composition may read looked like just before composing (see handing_over)
    stamp: str | None = field(default=None, repr=False, compare=False)

    @property
    def resolved(self) -> dict[str, Any]:
        """The fully resolved spec, defaults filled in, in schema order."""
        return self.spec.model_dump(mode="json")

    @property
    def sha256(self) -> str:
        return spec_hash(self.resolved)

    @property
    def base_dir(self) -> Path:
        """Relative data paths in a spec are relative to the spec's own folder."""
        return self.path.parent

    def to_yaml(self) -> str:
        return dump_yaml(self.resolved)

    def data_sources(self) -> dict[str, str]:
        """Key path -> the absolute file each data source reads (synthetic sources as written).

        Data paths may point anywhere the spec author says; `keel check` shows where, so a
        reviewer sees `../../elsewhere/d.csv` as the file it really is.
        """
        spec = self.spec
        sources = {
            "data": spec.data,
            "data.reference": spec.data.reference,
            "data.items": spec.data.items,
            "data.users": spec.data.users,
            "causal.data": spec.causal.data if spec.causal else None,
            "masked_churners.previous": spec.masked_churners.previous if spec.masked_churners else None,
            "monitoring.current": spec.monitoring.current,
        }
        shown: dict[str, str] = {}
        for key, source in sources.items():
            text = getattr(source, "source", None)
            if text:
                synthetic = text.startswith("synthetic:")
                shown[key] = text if synthetic else str((self.base_dir / Path(text).expanduser()).resolve())
        return shown


def spec_hash(resolved: dict[str, Any]) -> str:
    canonical = json.dumps(resolved, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)


def conf_dirs_for(spec_path: Path, extra: list[Path] | None = None) -> list[Path]:
    """Search path for config groups: explicit dirs, KEEL_CONF_PATH, ../conf of the spec, Keel's own.

    Earlier directories win, so a project's conf/ can shadow Keel's shipped groups: `--config-dir`
    (alias `--conf`, in the order given), then KEEL_CONF_PATH (os.pathsep-separated), then the
    `conf/` beside the spec's folder (specs/x.yaml -> conf/), then Keel's own groups, always last.
    """
    dirs = list(extra or [])
    dirs += [Path(p) for p in os.environ.get("KEEL_CONF_PATH", "").split(os.pathsep) if p]
    dirs += [spec_path.resolve().parent.parent / "conf", PACKAGE_CONF]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in unique:
            unique.append(d.resolve())
    return unique


def load_spec(path: str | Path, overrides: list[str] | None = None, conf_dirs: list[Path] | None = None) -> LoadedSpec:
    """Compose and check a spec; raise SpecError with every problem found."""
    spec_path = Path(path)
    overrides = list(overrides or [])
    shown = str(path)
    if not spec_path.is_file():
        reason = "is a directory, not a spec file" if spec_path.is_dir() else "file not found"
        raise SpecError([Problem(shown, None, "", reason)], spec_file=shown)
    if spec_path.suffix not in (".yaml", ".yml"):
        raise SpecError([Problem(shown, None, "", "a spec is a .yaml file")], spec_file=shown)
    search = conf_dirs_for(spec_path, conf_dirs)
    stamp = _stamp(spec_path, search)
    handed = _handed_over(spec_path, overrides, search, stamp)
    if handed is not None:
        return handed
    try:
        composed = compose_spec(spec_path, overrides, search)
    except ComposeFailed as exc:
        raise SpecError(exc.problems, spec_file=shown) from None
    primary = composed.provenance.sources[-1] if composed.provenance.sources else None
    # candidates inherit conf/model/<family>.yaml params; model=<other family> takes that group's (model_groups.py)
    apply_model_groups(composed.data, composed.choices, primary, composed.provenance.overrides, search)
    problems = resolve_feature_selectors(composed.data, composed.provenance)  # `all`, {include, ...} -> a list
    if problems:
        raise SpecError(problems, spec_file=composed.provenance.spec_file)
    spec, problems = typecheck(composed.data, composed.provenance)
    if spec is None:
        raise SpecError(problems, spec_file=composed.provenance.spec_file)
    problems = check_semantics(spec, composed.provenance) + check_bounds(spec, composed.provenance)
    if problems:
        raise SpecError(problems, spec_file=composed.provenance.spec_file)
    return LoadedSpec(spec, spec_path, overrides, composed.choices, composed.provenance, search, stamp)


# Hand-over of a spec already composed in this process (the CLI's, to the flow it starts): see handing_over.
_HANDED: list[LoadedSpec] = []
STAMP_MAX_ENTRIES = 2000  # files and folders walked; past that, no hand-over (compose again, as before)
STAMP_MAX_BYTES = 8 << 20


@contextmanager
def handing_over(loaded: LoadedSpec) -> Iterator[LoadedSpec]:
    """Inside, load_spec of the same file, overrides and conf dirs returns `loaded` itself instead of composing again.

    Only while no YAML file composition may read has changed since `loaded` was composed: the spec's
    folder and every conf dir are hashed (contents) before each composition and at each hand-over, so an
    edited spec, group file or a new file that would shadow one composes afresh. A flow started by path
    (a deployment, the UI) outside this block always composes.
    """
    _HANDED.append(loaded)
    try:
        yield loaded
    finally:
        _HANDED.remove(loaded)


def _handed_over(spec_path: Path, overrides: list[str], search: list[Path], stamp: str | None) -> LoadedSpec | None:
    """The spec handed over for exactly this request, composed from files that have not changed since."""
    for loaded in reversed(_HANDED):
        same = loaded.overrides == overrides and loaded.conf_dirs == search
        if same and stamp is not None and loaded.stamp == stamp and loaded.path.resolve() == spec_path.resolve():
            return loaded
    return None


def _stamp(spec_path: Path, search: list[Path]) -> str | None:
    """sha256 of the path and contents of every YAML file under the spec's folder and the conf dirs.

    None (never handed over) when the folders are too large to hash cheaply or a file cannot be read.
    """
    digest, entries, size = hashlib.sha256(), 0, 0
    try:
        for root in [spec_path.resolve().parent, *search]:
            for folder, dirs, files in os.walk(root, onerror=_unreadable, followlinks=True):
                dirs.sort()
                entries += len(dirs) + len(files)
                if entries > STAMP_MAX_ENTRIES:
                    return None
                for name in sorted(files):
                    if name.endswith((".yaml", ".yml")):
                        data = Path(folder, name).read_bytes()
                        size += len(data)
                        if size > STAMP_MAX_BYTES:
                            return None
                        digest.update(f"{folder}/{name}\0{len(data)}\0".encode() + data)
    except OSError:
        return None
    return digest.hexdigest()


def _unreadable(error: OSError) -> None:
    raise error  # a folder that cannot be listed may hide a group file: no hand-over

"""The per-name alias record (``$BENTOML_HOME/keel/<name>/aliases.json``) and its lock.

One JSON object holds all three aliases so a promotion that moves champion to
standby is one ``os.replace``: readers never see two champions or none in between.
Kept apart from the operations so ``BundleStore.delete`` can check aliases without
importing them (and without an import cycle).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.registry._fs import atomic_write, file_lock
from pipeline.registry.errors import RegistryError
from pipeline.registry.tags import check_name, parse_tag

ALIASES = ("champion", "challenger", "standby")
STATE_FILE = "aliases.json"
HISTORY_FILE = "history.jsonl"
LOCK_FILE = "aliases.lock"


@dataclass
class AliasState:
    name: str
    champion: str | None = None
    challenger: str | None = None
    standby: str | None = None
    failed: list[str] = field(default_factory=list)
    revision: int = 0
    updated_at: str | None = None

    def aliases(self) -> dict[str, str | None]:
        return {alias: getattr(self, alias) for alias in ALIASES}

    def pointed_to(self) -> set[str]:
        return {tag for tag in self.aliases().values() if tag}


def alias_dir(keel_dir: Path, name: str) -> Path:
    return keel_dir / check_name(name)


@contextlib.contextmanager
def alias_lock(keel_dir: Path, name: str) -> Iterator[None]:
    """Serialise every read-modify-write of one name's aliases (and deletes that depend on them)."""
    with file_lock(alias_dir(keel_dir, name) / LOCK_FILE):
        yield


def read_state(keel_dir: Path, name: str) -> AliasState:
    """Load the record; a missing file is 'no aliases', a damaged one is an error (never silently reset)."""
    path = alias_dir(keel_dir, name) / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return AliasState(name=name)
    except (OSError, ValueError) as exc:
        raise RegistryError(f"alias record {path} is unreadable: {exc}") from exc
    try:
        state = AliasState(**data)
        for alias in ALIASES:
            if getattr(state, alias) is not None:
                parse_tag(getattr(state, alias))
    except (TypeError, RegistryError) as exc:
        raise RegistryError(f"alias record {path} is malformed: {exc}") from exc
    if state.name != name:
        raise RegistryError(f"alias record {path} belongs to {state.name!r}, not {name!r}")
    return state


def write_state(keel_dir: Path, state: AliasState) -> None:
    """Caller holds alias_lock."""
    path = alias_dir(keel_dir, state.name) / STATE_FILE
    atomic_write(path, json.dumps(asdict(state), indent=2, sort_keys=True).encode())

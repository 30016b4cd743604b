"""Hydra reads config files through this guarded source, never through its plain `file://` one.

Hydra loads the primary spec and every config-group file itself (`OmegaConf.load`), so
the limits we apply to our own reading (pipeline/spec/limits.py) must also sit on its
path: a group file with an alias bomb would otherwise hang `keel check`, and a choice
like `contract: ../../../outside/c` would load a file outside the search path. The
`keel://` scheme is FileConfigSource with both checks; compose_spec puts every search
directory, the spec's own folder included, on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.file_config_source import FileConfigSource
from hydra.plugins.config_source import ConfigLoadError, ConfigResult

from pipeline.spec.errors import Problem
from pipeline.spec.limits import MAX_FILE_BYTES, LimitExceeded, check_yaml_text

SCHEME = "keel"


class RefusedConfig(ConfigLoadError):
    """A config file Keel will not let Hydra load; carries the Problem to report."""

    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(problem.render())


class KeelConfigSource(FileConfigSource):
    """FileConfigSource that stays inside its directory and checks size, depth and aliases first."""

    @staticmethod
    def scheme() -> str:
        return SCHEME

    def _inside(self, relative: str) -> str | None:
        """The joined path if it stays inside this source's directory (lexically), else None."""
        root = os.path.normpath(self.path)
        full = os.path.normpath(os.path.join(root, relative))
        return full if full == root or full.startswith(root + os.sep) else None

    def load_config(self, config_path: str) -> ConfigResult:
        normalized = self._normalize_file_name(config_path)
        full = self._inside(normalized)
        if full is None:
            reason = f"'{config_path}' points outside the config directory {self.path}; name an option inside it"
            raise RefusedConfig(Problem(str(config_path), None, "", reason))
        path = Path(full)
        if path.is_file():
            shown = _display(path)
            size = path.stat().st_size
            try:
                if size > MAX_FILE_BYTES:
                    raise LimitExceeded(f"file is {size} bytes; a config file may have at most {MAX_FILE_BYTES}")
                check_yaml_text(path.read_text(encoding="utf-8"))
            except LimitExceeded as exc:
                raise RefusedConfig(Problem(shown, exc.line, "", f"refused: {exc.reason}")) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise RefusedConfig(Problem(shown, None, "", f"cannot read file: {exc}")) from None
        result = super().load_config(config_path)
        self._check_defaults(result, path)
        return result

    @staticmethod
    def _check_defaults(result: ConfigResult, path: Path) -> None:
        """A group file's own defaults list obeys the spec's rules: names, no resolvers, no Hydra groups.

        Hydra resolves interpolations in defaults lists while composing, before Keel sees the tree,
        so `- contract: ${oc.env:X}` would pick an option from the environment (and record it).
        """
        from omegaconf import DictConfig, OmegaConf

        from pipeline.spec.security import check_defaults

        if not isinstance(result.config, DictConfig) or "defaults" not in result.config:
            return
        defaults = OmegaConf.to_container(result.config, resolve=False).get("defaults")
        problems = check_defaults(defaults, _display(path), {})
        if problems:
            raise RefusedConfig(problems[0])

    def is_group(self, config_path: str) -> bool:
        return self._inside(config_path) is not None and super().is_group(config_path)

    def list(self, config_path: str, results_filter: Any) -> list[str]:
        return super().list(config_path, results_filter) if self._inside(config_path) is not None else []

    def is_config(self, config_path: str) -> bool:
        return self._inside(self._normalize_file_name(config_path)) is not None and super().is_config(config_path)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def search_path_entry(directory: Path) -> str:
    return f"{SCHEME}://{directory.resolve()}"


@contextmanager
def hydra_for(config_dir: Path) -> Iterator[None]:
    """Like hydra.initialize_config_dir, with the primary directory on the guarded scheme."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins

    Plugins.instance().register(KeelConfigSource)
    version.setbase("1.3")
    GlobalHydra.instance().clear()
    try:
        search_path = create_config_search_path(search_path_entry(config_dir))
        Hydra.create_main_hydra2(task_name="keel", config_search_path=search_path)
        yield
    finally:
        GlobalHydra.instance().clear()

"""Compose a spec with Hydra and remember which file set each key.

The spec file is Hydra's primary config; `conf/` directories are on the search
path, so `defaults: [{model: lightgbm}]` pulls `conf/model/lightgbm.yaml` in and
command-line overrides use Hydra's grammar. The result is a plain dict plus a
`Provenance` that maps key paths back to file:line for error messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.spec.at_keys import apply_at_overrides, split_at_overrides
from pipeline.spec.errors import Problem, suggest
from pipeline.spec.expansion import ExpansionExceeded, check_expansion
from pipeline.spec.hydra_source import RefusedConfig, hydra_for, search_path_entry
from pipeline.spec.limits import check_numbers
from pipeline.spec.security import HYDRA_BLOCK, check_defaults, check_overrides, check_tree
from pipeline.spec.source_map import YamlProblem, YamlSource, read_yaml

_MISSING_OPTION = re.compile(r"Could not find '([^']+)/([^']+)'")


@dataclass
class Provenance:
    """Where each key of the composed spec came from (later sources win)."""

    spec_file: str
    sources: list[YamlSource] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)

    def locate(self, key: str) -> tuple[str, int | None]:
        """(file, line) of the nearest key at or above `key` that a source defines."""
        parts = key.split(".") if key else []
        while True:
            path = ".".join(parts)
            for override_key, text in self.overrides.items():
                if path and (override_key == path or override_key.startswith(path + ".")):
                    return f"command line override '{text}'", None
            for source in reversed(self.sources):
                relative = _strip_package(path, source.package)
                if relative is not None and relative in source.lines:
                    return _display(source.path), source.lines[relative]
            if not parts:
                return self.spec_file, None
            parts.pop()

    def problem(self, key: str, reason: str) -> Problem:
        file, line = self.locate(key)
        return Problem(file, line, key, reason)


def _strip_package(path: str, package: str) -> str | None:
    if not package:
        return path
    if path == package:
        return ""
    if path.startswith(package + "."):
        return path[len(package) + 1 :]
    return None


def _display(path: Path) -> str:
    """Paths relative to the working directory when possible: shorter errors."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass
class Composed:
    data: dict[str, Any]
    provenance: Provenance
    choices: dict[str, str]


def compose_spec(spec_path: Path, overrides: list[str], conf_dirs: list[Path]) -> Composed:
    """Compose `spec_path` with Hydra; raise SpecError-ready Problems as a list on failure."""
    from hydra import compose
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    display = _display(spec_path)
    try:
        primary = read_yaml(spec_path, display)
    except YamlProblem as exc:
        raise ComposeFailed([exc.problem]) from None
    if not isinstance(primary.data, dict):
        raise ComposeFailed([Problem(display, 1, "", "a spec must be a YAML mapping of keys to values")])

    groups = {p.name for d in [spec_path.parent, *conf_dirs] if d.is_dir() for p in d.iterdir() if p.is_dir()}
    problems = check_overrides(overrides, groups) + check_defaults(primary.data.get("defaults"), display, primary.lines)
    if "hydra" in primary.data:
        problems.append(Problem(display, primary.lines.get("hydra"), "hydra", HYDRA_BLOCK))
    if problems:
        raise ComposeFailed(problems)

    search = ",".join(search_path_entry(d) for d in conf_dirs)
    plain, at_keys = split_at_overrides(overrides)  # `gates.ndcg@10.min=0.1`: Hydra would read `@` as a package
    hydra_overrides = [f"hydra.searchpath=[{search}]", *(_add_or_override(o, conf_dirs) for o in plain)]
    try:
        with hydra_for(spec_path.parent):
            cfg = compose(config_name=spec_path.stem, overrides=hydra_overrides, return_hydra_config=True)
    except MissingConfigException as exc:
        raise ComposeFailed([_missing_option_problem(exc, primary, display, conf_dirs)]) from None
    except OverrideParseException as exc:
        reason = str(exc).splitlines()[0]
        raise ComposeFailed([Problem("command line", None, "", f"cannot parse override: {reason}")]) from None
    except (HydraException, OmegaConfBaseException, yaml.YAMLError) as exc:
        refused = _refusal(exc)
        if refused is not None:
            raise ComposeFailed([refused.problem]) from None
        raise ComposeFailed([_composition_problem(exc, display, conf_dirs, primary)]) from None
    except RecursionError:
        raise ComposeFailed([Problem(display, None, "", "the spec or an override nests too deeply")]) from None
    except (AssertionError, TypeError) as exc:  # Hydra asserts/fails on a few malformed defaults or overrides
        reason = f"Hydra cannot compose this spec with these overrides ({exc or 'malformed defaults or override'})"
        raise ComposeFailed([Problem(display, None, "", reason)]) from None

    choices = {
        group: option
        for group, option in OmegaConf.to_container(cfg.hydra.runtime.choices).items()
        if not group.startswith("hydra/") and option is not None
    }
    with _unlocked(cfg):
        del cfg["hydra"]
        refused = apply_at_overrides(cfg, at_keys)
    if refused:
        raise ComposeFailed([Problem("command line", None, key, reason) for key, reason in refused])

    provenance = Provenance(spec_file=display)
    for group, option in choices.items():
        source = _group_source(group, option, conf_dirs)
        if source is not None:
            provenance.sources.append(source)
    provenance.sources.append(primary)
    provenance.overrides = _override_keys(overrides)

    unresolved = OmegaConf.to_container(cfg, resolve=False)
    problems = _hydra_blocks(provenance) + check_tree(unresolved, provenance)
    if problems:
        raise ComposeFailed(problems)
    try:
        check_expansion(unresolved)
    except ExpansionExceeded as exc:
        raise ComposeFailed([provenance.problem(exc.key, str(exc))]) from None
    except RecursionError:
        raise ComposeFailed([Problem(display, None, "", "interpolations refer to each other too deeply")]) from None
    try:
        data = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or ""
        raise ComposeFailed([provenance.problem(key, f"cannot resolve interpolation: {exc.msg}")]) from None
    except RecursionError:
        raise ComposeFailed([Problem(display, None, "", "interpolations nest too deeply to resolve")]) from None
    data.pop("defaults", None)
    problems = check_numbers(data, provenance)
    if problems:
        raise ComposeFailed(problems)
    return Composed(data=data, provenance=provenance, choices=choices)


def _refusal(exc: BaseException) -> RefusedConfig | None:
    """The guarded config source's refusal, wherever Hydra wrapped it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, RefusedConfig):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _hydra_blocks(provenance: Provenance) -> list[Problem]:
    """A 'hydra' key that a group file puts at the top level (package _global_) is refused like the spec's."""
    problems = []
    for source in provenance.sources[:-1]:
        sets_hydra = source.package == "" and isinstance(source.data, dict) and "hydra" in source.data
        if sets_hydra or source.package.split(".")[0] == "hydra":
            problems.append(Problem(_display(source.path), source.lines.get("hydra"), "hydra", HYDRA_BLOCK))
    return problems


class ComposeFailed(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(p.render() for p in problems))


class _unlocked:
    """Temporarily lift Hydra's struct flag so the hydra node can be dropped."""

    def __init__(self, cfg: Any):
        self.cfg = cfg

    def __enter__(self) -> None:
        from omegaconf import OmegaConf

        OmegaConf.set_struct(self.cfg, False)

    def __exit__(self, *exc: object) -> None:
        from omegaconf import OmegaConf

        OmegaConf.set_struct(self.cfg, True)


def _group_source(group: str, option: str, conf_dirs: list[Path]) -> YamlSource | None:
    for conf in conf_dirs:
        path = conf / group / f"{option}.yaml"
        if path.is_file():
            source = read_yaml(path, _display(path))
            if not source.package:
                source.package = group.replace("/", ".")
            elif source.package == "_global_":
                source.package = ""
            return source
    return None


def _add_or_override(override: str, conf_dirs: list[Path]) -> str:
    """`a.b=1` -> `++a.b=1`, so keys that only have a schema default can be set without '+'.

    Hydra's struct mode would refuse them; the schema check that follows still rejects a key
    the schema does not know, with a suggestion. Group choices (`model=logistic`) and
    explicit `+`/`++`/`~` overrides are left as written.
    """
    key, sep, _ = override.partition("=")
    if not sep or key.startswith(("+", "~")):
        return override
    is_group = "." not in key and any((d / key.split("@")[0]).is_dir() for d in conf_dirs)
    return override if is_group else f"++{override}"


def _override_keys(overrides: list[str]) -> dict[str, str]:
    keys = {}
    for text in overrides:
        key = text.split("=", 1)[0].lstrip("+~")
        keys[key] = text
    return keys


def _defaults_line(primary: YamlSource, group: str) -> int | None:
    defaults = primary.data.get("defaults") if isinstance(primary.data, dict) else None
    for index, entry in enumerate(defaults or []):
        if isinstance(entry, dict) and any(
            str(k).lstrip("/").removeprefix("override ").lstrip("/") == group for k in entry
        ):
            return primary.lines.get(f"defaults.{index}")
    return primary.lines.get("defaults")


def _available(group: str, conf_dirs: list[Path]) -> list[str]:
    return sorted({p.stem for d in conf_dirs for p in (d / group).glob("*.yaml")})


def _missing_option_problem(exc: Exception, primary: YamlSource, display: str, conf_dirs: list[Path]) -> Problem:
    match = _MISSING_OPTION.search(str(exc))
    if not match and ".." in str(exc):
        reason = f"{str(exc).splitlines()[0]} (a config outside the search path: choices are names, never paths)"
        return Problem(display, None, "defaults", reason)
    if not match:
        return Problem(display, None, "defaults", str(exc).splitlines()[0])
    group, option = match.groups()
    options = _available(group, conf_dirs)
    if not options:
        groups = sorted(p.name for d in conf_dirs if d.is_dir() for p in d.iterdir() if p.is_dir())
        reason = f"no config group '{group}' in {', '.join(map(str, conf_dirs))}{suggest(group, groups)}"
    else:
        reason = (
            f"no option '{option}' in config group '{group}'{suggest(option, options)}; available: {', '.join(options)}"
        )
    return Problem(display, _defaults_line(primary, group), f"defaults.{group}", reason)


def _composition_problem(exc: Exception, display: str, conf_dirs: list[Path], primary: YamlSource) -> Problem:
    """Hydra wraps YAML errors of group files and bad overrides; find the real cause."""
    for entry in primary.data.get("defaults") or []:
        if isinstance(entry, dict):
            for group, option in entry.items():
                group = str(group).removeprefix("override ").lstrip("/")
                for conf in conf_dirs:
                    path = conf / group / f"{option}.yaml"
                    if path.is_file():
                        try:
                            read_yaml(path, _display(path))
                        except YamlProblem as problem:
                            return problem.problem
    message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    cause = exc.__cause__
    key = getattr(cause, "full_key", "") or ""
    if "override" in message.lower():
        return Problem("command line", None, key, message)
    return Problem(display, None, key, message)

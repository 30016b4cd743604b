"""What a spec may not do: call resolvers that read the environment, name classes, or reach out.

Specs are reviewed and persisted with every run. `${oc.env:...}` would copy a secret
into the resolved spec on disk, and a `_target_` would invite `instantiate` of
arbitrary code; both are refused with the file and line (docs/adr/0003). Interpolations
are read with OmegaConf's own grammar, so a resolver name assembled from another
interpolation (`${oc.${k}:HOME}`) is seen exactly as OmegaConf would resolve it.
Config-group choices are names inside the search path, never paths out of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pipeline.spec.errors import Problem
from pipeline.spec.limits import override_problem

if TYPE_CHECKING:
    from pipeline.spec.compose import Provenance

ALLOWED_RESOLVERS = frozenset({"oc.select"})
"""Plain interpolations (${a.b}) are always allowed; resolvers only from this list."""

_RESOLVER = re.compile(r"\$\{\s*([^\s:{}$]*)\s*:")
_FORBIDDEN_KEYS = {"_target_": "'_target_' is not allowed: specs name model families, never Python classes"}
HYDRA_BLOCK = (
    "a 'hydra' block is not allowed in a spec: Keel composes the spec itself and ignores Hydra's own "
    "settings (run dirs, logging, launchers); remove it"
)
_CHOICE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def _refused(name: str) -> str:
    return (
        f"resolver '{name}' is not allowed in specs (allowed: plain ${{a.b}} references, "
        f"{', '.join(sorted(ALLOWED_RESOLVERS))}); secrets belong in the runtime environment, "
        "not in a resolved spec"
    )


def resolver_problem(text: str) -> str | None:
    """The reason a string is refused, or None if its interpolations are allowed."""
    if "${" not in text:
        return None
    from omegaconf import grammar_parser
    from omegaconf.errors import GrammarParseError
    from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser as Parser

    try:
        tree = grammar_parser.parse(text, parser_rule="configValue")
    except GrammarParseError:
        # OmegaConf cannot resolve it either; still refuse anything that looks like a resolver call
        for name in _RESOLVER.findall(text):
            if name not in ALLOWED_RESOLVERS:
                return _refused(name)
        return None
    except RecursionError:
        return "interpolation nests too deeply"
    pending: list[Any] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, Parser.ResolverNameContext):
            name = node.getText()
            if any(isinstance(child, Parser.InterpolationContext) for child in node.getChildren()):
                return (
                    f"resolver name '{name}' is built by an interpolation: a resolver must be named literally "
                    f"(allowed: {', '.join(sorted(ALLOWED_RESOLVERS))})"
                )
            if name not in ALLOWED_RESOLVERS:
                return _refused(name)
        pending += list(node.getChildren()) if hasattr(node, "getChildren") else []
    return None


def check_tree(tree: Any, provenance: Provenance, prefix: str = "") -> list[Problem]:
    """Every forbidden key or resolver in the composed (unresolved) tree (iterative: no recursion limit)."""
    problems: list[Problem] = []
    pending: list[tuple[str, Any]] = [(prefix, tree)]
    while pending:
        path, node = pending.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                child = f"{path}.{key}" if path else str(key)
                if key in _FORBIDDEN_KEYS:
                    problems.append(provenance.problem(child, _FORBIDDEN_KEYS[key]))
                pending.append((child, value))
        elif isinstance(node, list):
            pending += [(f"{path}.{index}", value) for index, value in enumerate(node)]
        elif isinstance(node, str):
            reason = resolver_problem(node)
            if reason:
                problems.append(provenance.problem(path, reason))
    return problems


def choice_problem(group: str, option: Any) -> str | None:
    """Why a config-group choice is refused: a path (../x, a/b, /abs) instead of a name in the group."""
    if group.lstrip("/").split("/")[0] == "hydra":
        return "choosing Hydra's own config groups is not supported; keel manages them"
    if any(part in ("", ".", "..") for part in group.lstrip("/").split("/")) or "\\" in group:
        return f"config group '{group}' is a path; name a group folder of the config search path"
    options = option if isinstance(option, list) else [option]
    for value in options:
        if value is None:
            continue
        if not isinstance(value, str) or not _CHOICE.match(value) or ".." in value:
            return (
                f"config group choice {value!r} is not a plain option name: a choice names a file inside "
                f"'{group.lstrip('/')}/' of the config search path, never a path (no '/', '\\' or '..')"
            )
    return None


def _config_name_problem(name: str) -> str | None:
    """A string defaults entry names a config, optionally in a group (`group/option`): no '..', no resolvers."""
    parts = name.lstrip("/").split("/")
    if parts[0] == "hydra":
        return "choosing Hydra's own configs is not supported; keel manages them"
    if "\\" in name or any(not _CHOICE.match(part) or ".." in part for part in parts):
        return f"defaults entry {name!r} is not a config name: no '..', '\\', interpolations or empty parts"
    return None


def check_defaults(defaults: Any, shown: str, lines: dict[str, int]) -> list[Problem]:
    """Path components, Hydra groups and resolvers in a defaults list, with file:line."""
    problems: list[Problem] = []
    for index, entry in enumerate(defaults if isinstance(defaults, list) else []):
        line = lines.get(f"defaults.{index}")
        if isinstance(entry, str):
            name = entry.removeprefix("optional ").removeprefix("override ").strip().split("@")[0]
            reason = None if name == "_self_" else _config_name_problem(name)
            if reason:
                problems.append(Problem(shown, line, f"defaults.{index}", reason))
        elif isinstance(entry, dict):
            for group, option in entry.items():
                name = str(group).removeprefix("optional ").removeprefix("override ").strip().split("@")[0]
                reason = (resolver_problem(option) if isinstance(option, str) else None) or choice_problem(name, option)
                if reason:
                    problems.append(Problem(shown, line, f"defaults.{name.lstrip('/')}", reason))
    return problems


def check_overrides(overrides: list[str], groups: Iterable[str] = ()) -> list[Problem]:
    """Refuse forbidden resolvers, keys, Hydra settings and path-like group choices on the command line."""
    problems = []
    known_groups = set(groups)
    for text in overrides:
        key, sep, value = text.partition("=")
        bare = key.lstrip("+~")
        reason = override_problem(text) or resolver_problem(value)
        if reason is None and not bare.split("@")[0].strip():
            reason = "an override needs a key: key=value, +key=value, ~key or group=option"
        if reason is None and bare.split(".")[-1] in _FORBIDDEN_KEYS:
            reason = _FORBIDDEN_KEYS["_target_"]
        if reason is None and re.split(r"[./@]", bare)[0] == "hydra":
            reason = "overriding Hydra's own settings is not supported; keel manages them"
        group = bare.split("@")[0]
        if reason is None and sep and "." not in group and (group in known_groups or "/" in group):
            reason = choice_problem(group, _choice_values(value))
        if reason:
            problems.append(Problem(f"command line override '{text}'", None, bare, reason))
    return problems


def _choice_values(value: str) -> list[str]:
    """The option names of `group=a`, a list `group=[a,b]` or a sweep `group=a,b` (quotes stripped)."""
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    return [part.strip().strip("'\"") for part in value.split(",") if part.strip()]

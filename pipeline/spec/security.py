"""What a spec may not do: call resolvers that read the environment, or name classes.

Specs are reviewed and persisted with every run. `${oc.env:...}` would copy a secret
into the resolved spec on disk, and a `_target_` would invite `instantiate` of
arbitrary code; both are refused with the file and line (docs/adr/0003).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pipeline.spec.errors import Problem

if TYPE_CHECKING:
    from pipeline.spec.compose import Provenance

ALLOWED_RESOLVERS = frozenset({"oc.select"})
"""Plain interpolations (${a.b}) are always allowed; resolvers only from this list."""

_RESOLVER = re.compile(r"\$\{\s*([A-Za-z_][\w.\-]*)\s*:")
_FORBIDDEN_KEYS = {"_target_": "'_target_' is not allowed: specs name model families, never Python classes"}


def resolver_problem(text: str) -> str | None:
    """The reason a string is refused, or None if its interpolations are allowed."""
    for name in _RESOLVER.findall(text):
        if name not in ALLOWED_RESOLVERS:
            return (
                f"resolver '{name}' is not allowed in specs (allowed: plain ${{a.b}} references, "
                f"{', '.join(sorted(ALLOWED_RESOLVERS))}); secrets belong in the runtime environment, "
                "not in a resolved spec"
            )
    return None


def check_tree(tree: Any, provenance: Provenance, prefix: str = "") -> list[Problem]:
    """Every forbidden key or resolver in the composed (unresolved) tree."""
    problems: list[Problem] = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key in _FORBIDDEN_KEYS:
                problems.append(provenance.problem(path, _FORBIDDEN_KEYS[key]))
            problems += check_tree(value, provenance, path)
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            problems += check_tree(value, provenance, f"{prefix}.{index}")
    elif isinstance(tree, str):
        reason = resolver_problem(tree)
        if reason:
            problems.append(provenance.problem(prefix, reason))
    return problems


def check_overrides(overrides: list[str]) -> list[Problem]:
    """Refuse forbidden resolvers and keys already on the command line."""
    problems = []
    for text in overrides:
        key, _, value = text.partition("=")
        reason = resolver_problem(value)
        if reason is None and key.lstrip("+~").split(".")[-1] in _FORBIDDEN_KEYS:
            reason = _FORBIDDEN_KEYS["_target_"]
        if reason is None and key.lstrip("+~").split(".")[0] == "hydra":
            reason = "overriding Hydra's own settings is not supported; keel manages them"
        if reason:
            problems.append(Problem(f"command line override '{text}'", None, key.lstrip("+~"), reason))
    return problems

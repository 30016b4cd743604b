"""How large a spec becomes once its interpolations are resolved, estimated before resolving.

YAML aliases are capped on the event stream (pipeline/spec/limits.py), but `${...}` can
multiply too: `b: ${a}${a}${a}...`, `c: ${b}${b}${b}...` grows tenfold per level, and
`${subtree}` copies a whole subtree. OmegaConf resolves all of it without a limit, so a
small spec could take gigabytes. This walk adds up what each value would resolve to
(characters of text, one per node), following references with memoisation, and refuses
the spec before OmegaConf starts when the total passes MAX_RESOLVED.
"""

from __future__ import annotations

import re
from typing import Any

MAX_RESOLVED = 2_000_000
"""Characters plus nodes of the resolved spec; the reference specs resolve to about 40,000."""

_INDEX = re.compile(r"\[(\d+)\]")


class ExpansionExceeded(ValueError):
    """The resolved spec would be too large; `key` is the first value found over the budget."""

    def __init__(self, key: str, size: int):
        self.key, self.size = key, size
        super().__init__(
            f"resolving its interpolations would make this value about {size:,} characters/values "
            f"(limit {MAX_RESOLVED:,}): interpolations multiply what they repeat"
        )


def check_expansion(tree: Any) -> None:
    """Raise ExpansionExceeded if resolving `tree` (an unresolved plain container) would pass the budget."""
    _Estimator(tree).size((), tree)


class _Estimator:
    def __init__(self, tree: Any):
        self.tree = tree
        self.memo: dict[tuple, int] = {}
        self.active: set[tuple] = set()

    def size(self, path: tuple, node: Any) -> int:
        if path in self.memo:
            return self.memo[path]
        if path in self.active:  # a cycle: OmegaConf reports it when resolving
            return 0
        self.active.add(path)
        try:
            if isinstance(node, dict):
                total = 1 + sum(self.size((*path, str(k)), v) for k, v in node.items())
            elif isinstance(node, list):
                total = 1 + sum(self.size((*path, str(i)), v) for i, v in enumerate(node))
            elif isinstance(node, str) and "${" in node:
                total = len(node) + sum(self._reference(path, ref) for ref in _references(node))
            else:
                total = 1 + (len(node) if isinstance(node, str) else 0)
        finally:
            self.active.discard(path)
        if total > MAX_RESOLVED:
            raise ExpansionExceeded(".".join(path), total)
        self.memo[path] = total
        return total

    def _reference(self, path: tuple, ref: str) -> int:
        if "${" in ref:  # a key built at resolve time: assume the whole spec
            return self.size((), self.tree)
        target = _target(path, ref)
        node = _lookup(self.tree, target)
        return 0 if node is _MISSING else self.size(target, node)


def _references(text: str) -> list[str]:
    """Config keys `text` refers to: ${a.b}, ${.x}, and the key arguments of resolvers (oc.select)."""
    from omegaconf import grammar_parser
    from omegaconf.errors import GrammarParseError
    from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser as Parser

    try:
        tree = grammar_parser.parse(text, parser_rule="configValue")
    except GrammarParseError:
        return []
    refs: list[str] = []
    pending: list[Any] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, Parser.InterpolationNodeContext):
            refs.append(node.getText()[2:-1])
        elif isinstance(node, Parser.InterpolationResolverContext):
            refs += [part.strip() for part in node.getText()[2:-1].partition(":")[2].split(",") if part.strip()]
        pending += list(node.getChildren()) if hasattr(node, "getChildren") else []
    return refs


def _target(path: tuple, ref: str) -> tuple:
    """Absolute key path of `ref` as seen from the value at `path` (leading dots are relative)."""
    dots = len(ref) - len(ref.lstrip("."))
    parts = tuple(p for p in _INDEX.sub(r".\1", ref.lstrip(".")).split(".") if p)
    return (*path[: len(path) - dots], *parts) if dots else parts


_MISSING = object()


def _lookup(tree: Any, path: tuple) -> Any:
    node = tree
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node

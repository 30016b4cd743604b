"""Size limits on what a spec may make Keel do before it is even type-checked.

A spec file, a config group file and a command-line override are small, reviewed texts;
nothing legitimate needs megabytes, thousands of nesting levels or aliases that expand
exponentially ("billion laughs"). These limits refuse such input with a Problem (exit 2)
instead of letting PyYAML, OmegaConf or Python's stack run out of memory or recursion.
Numbers get the same treatment: a NaN bound disables a gate (`value < nan` is False) and
an int past 64 bits crashes numpy later, so both stop at `keel check` (docs/adr/0003).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from pipeline.spec.compose import Provenance
    from pipeline.spec.errors import Problem

MAX_FILE_BYTES = 1 << 20
"""A spec or group file larger than 1 MiB is refused unread."""

MAX_DEPTH = 32
"""Nesting levels of mappings and sequences (a real spec uses fewer than 10)."""

MAX_NODES = 50_000
"""Values after expanding YAML aliases (the reference specs and their groups have about 1,000)."""

MAX_OVERRIDE_CHARS = 10_000
"""One command-line override; longer ones are refused before Hydra's parser sees them."""

INT64 = (-(2**63), 2**63 - 1)


class LimitExceeded(ValueError):
    """A YAML text over a limit; `line` is 1-based where known."""

    def __init__(self, reason: str, line: int | None = None):
        self.reason, self.line = reason, line
        super().__init__(reason)


def check_yaml_text(text: str) -> None:
    """Raise LimitExceeded if `text` is too large, too deep or expands too far through aliases.

    Walks PyYAML's event stream (iterative, no objects built), counting every node as it
    would be after alias expansion: each anchor's expanded size is known when it closes.
    YAML syntax errors are left to the real loader, which reports them with a line.
    """
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise LimitExceeded(f"file is {size} bytes; a spec or config file may have at most {MAX_FILE_BYTES}")
    anchors: dict[str, int] = {}
    stack: list[tuple[str | None, int]] = []  # (anchor, total when the collection opened)
    total = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1 if event.start_mark else None
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in anchors:
                    raise LimitExceeded(f"alias *{event.anchor} refers to an anchor that is not closed yet", line)
                total += anchors[event.anchor]
            elif isinstance(event, yaml.ScalarEvent):
                total += 1
                if event.anchor:
                    anchors[event.anchor] = 1
            elif isinstance(event, yaml.CollectionStartEvent):
                total += 1
                stack.append((event.anchor, total))
                if len(stack) > MAX_DEPTH:
                    raise LimitExceeded(f"nested more than {MAX_DEPTH} levels deep", line)
            elif isinstance(event, yaml.CollectionEndEvent) and stack:
                anchor, opened = stack.pop()
                if anchor:
                    anchors[anchor] = total - opened + 1
            if total > MAX_NODES:
                raise LimitExceeded(
                    f"expands to more than {MAX_NODES} values (YAML aliases multiply what they repeat); "
                    "write the values out or split the file",
                    line,
                )
    except yaml.YAMLError:
        return
    except RecursionError:  # PyYAML's parser is iterative, but be safe
        raise LimitExceeded(f"nested more than {MAX_DEPTH} levels deep") from None


def override_problem(text: str) -> str | None:
    """Why a command-line override is refused for its size or nesting, or None."""
    if len(text) > MAX_OVERRIDE_CHARS:
        return f"override is {len(text)} characters long; at most {MAX_OVERRIDE_CHARS} are accepted"
    depth = deepest = 0
    for char in text:
        if char in "[{(":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]})":
            depth = max(depth - 1, 0)
    if deepest > MAX_DEPTH:
        return f"override value is nested {deepest} levels deep; at most {MAX_DEPTH} are accepted"
    return None


def number_problem(value: Any) -> str | None:
    """Why a resolved number is refused: NaN/infinity, or an integer past 64 bits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return (
            f"{value} is not a finite number: bounds, thresholds, rates and fractions must be finite "
            "(a NaN bound never fails a comparison and would disable the rule)"
        )
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        return f"integer {value:.3g} does not fit in 64 bits"
    return None


def check_numbers(tree: Any, provenance: Provenance) -> list[Problem]:
    """Every non-finite or oversized number in the resolved tree, with file:line (iterative walk)."""
    problems: list[Problem] = []
    pending: list[tuple[str, Any]] = [("", tree)]
    while pending:
        path, node = pending.pop()
        if isinstance(node, dict):
            pending += [(f"{path}.{k}" if path else str(k), v) for k, v in node.items()]
        elif isinstance(node, list):
            pending += [(f"{path}.{i}" if path else str(i), v) for i, v in enumerate(node)]
        else:
            reason = number_problem(node)
            if reason:
                problems.append(provenance.problem(path, reason))
    return problems

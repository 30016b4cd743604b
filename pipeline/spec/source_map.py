"""Safe YAML loading that remembers where each key came from.

Hydra's composed config forgets files and lines; we re-read the same files with
PyYAML's SafeLoader (never a loader that builds Python objects) and keep a map of
key path -> line, so every later error can point at the line to edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.spec.errors import Problem
from pipeline.spec.limits import LimitExceeded, check_yaml_text


@dataclass
class YamlSource:
    """A YAML file's data and the line of every key path ('a.b.0.c')."""

    path: Path
    data: Any
    lines: dict[str, int] = field(default_factory=dict)
    package: str = ""

    def line_of(self, key: str) -> int | None:
        """Line of `key` (already stripped of this source's package), or None."""
        return self.lines.get(key)


def _walk(node: yaml.Node, prefix: str, lines: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                raise _Duplicate(key, line, seen[key_node.value])
            seen[key_node.value] = line
            lines[key] = line
            _walk(value_node, key, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            key = f"{prefix}.{index}" if prefix else str(index)
            lines[key] = item.start_mark.line + 1
            _walk(item, key, lines)


def _package_header(text: str) -> str | None:
    """Hydra's '# @package X' header, if the file has one."""
    for raw in text.splitlines()[:5]:
        line = raw.strip()
        if line.startswith("# @package"):
            return line.split("@package", 1)[1].strip()
    return None


def read_yaml(path: Path, display: str | None = None) -> YamlSource:
    """Read one YAML file safely; raise a Problem-carrying ValueError on bad YAML."""
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlProblem(Problem(shown, None, "", "file not found")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlProblem(Problem(shown, None, "", f"cannot read file: {exc}")) from None
    try:
        check_yaml_text(text)  # before building anything: size, nesting depth, alias expansion
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)
    except LimitExceeded as exc:
        raise YamlProblem(Problem(shown, exc.line, "", f"refused: {exc.reason}")) from None
    except RecursionError:
        raise YamlProblem(Problem(shown, None, "", "refused: nested too deeply")) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = f"invalid YAML: {exc.problem or exc.context}"
        if isinstance(exc, yaml.constructor.ConstructorError):
            reason = f"YAML tag not allowed (safe loading only): {exc.problem}"
        raise YamlProblem(Problem(shown, line, "", reason)) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(Problem(shown, None, "", f"invalid YAML: {exc}")) from None
    lines: dict[str, int] = {}
    if node is not None:
        try:
            _walk(node, "", lines)
        except _Duplicate as dup:
            reason = f"duplicate key (first set on line {dup.first_line}); YAML keeps only one: merge them"
            raise YamlProblem(Problem(shown, dup.line, dup.key, reason)) from None
    header = _package_header(text)
    return YamlSource(path=path, data=data, lines=lines, package=header or "")


class _Duplicate(Exception):
    def __init__(self, key: str, line: int, first_line: int):
        self.key, self.line, self.first_line = key, line, first_line
        super().__init__(key)


class YamlProblem(Exception):
    """A file that cannot be read as safe YAML, as a Problem."""

    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(problem.render())

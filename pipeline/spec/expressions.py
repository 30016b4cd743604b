"""The grammar of derived-feature expressions: parse, check and evaluate without eval.

A spec is data a reviewer approves, so its expressions must not be able to run code:
the AST is walked against a whitelist (numbers, column names, arithmetic, comparisons
and a fixed table of vectorised functions) and evaluated with numpy on float64 arrays.
The spec layer owns the grammar so `keel check` can vet a spec without touching data;
`pipeline.data.derived` applies parsed expressions to frames.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class ExpressionError(ValueError):
    """A derived-feature expression is not in the safe whitelist or refers to an unknown column."""


MAX_LENGTH = 2000
"""Longer expressions are rejected before parsing: deep nesting can exhaust the parser's stack."""

MAX_DEPTH = 100
"""Deeper syntax trees are rejected before the recursive check and evaluation walk them."""


def _safe_div(a: np.ndarray, b: np.ndarray, fill: np.ndarray) -> np.ndarray:
    a, b, fill = np.broadcast_arrays(a, b, fill)
    return np.divide(a, b, out=np.array(fill, dtype=np.float64), where=b != 0)


def _where(cond: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Like np.where on cond != 0, but a missing condition gives a missing result."""
    return np.where(np.isnan(cond), np.nan, np.where(cond != 0, a, b))


FUNCTIONS: dict[str, tuple[int, Callable[..., np.ndarray]]] = {
    "log": (1, np.log),
    "log1p": (1, np.log1p),
    "exp": (1, np.exp),
    "sqrt": (1, np.sqrt),
    "abs": (1, np.abs),
    "clip": (3, np.clip),
    "minimum": (2, np.minimum),
    "maximum": (2, np.maximum),
    "where": (3, _where),
    "safe_div": (3, _safe_div),
}
"""Allowed functions: name -> (number of arguments, vectorised implementation)."""

_BINARY: dict[type[ast.operator], Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
    ast.Pow: np.power,
}
_COMPARE: dict[type[ast.cmpop], Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}


@dataclass(frozen=True)
class Expression:
    """A validated expression: its text, the columns it reads, and a vectorised evaluator."""

    expr: str
    inputs: frozenset[str]
    _tree: ast.Expression = field(repr=False, compare=False)

    def evaluate(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Evaluate on float64 arrays; numpy semantics (x/0 is inf or nan) except in safe_div."""
        missing = sorted(self.inputs - set(columns))
        if missing:
            raise ExpressionError(f"expression {self.expr!r} needs column(s) {', '.join(missing)} that were not given.")
        arrays = {name: np.asarray(columns[name], dtype=np.float64) for name in self.inputs}
        with np.errstate(all="ignore"):
            result = _eval(self._tree.body, arrays)
        size = _row_count(columns)
        result = np.asarray(result, dtype=np.float64)
        return np.broadcast_to(result, (size,)).copy() if result.ndim == 0 and size is not None else result


def _row_count(columns: Mapping[str, np.ndarray]) -> int | None:
    for values in columns.values():
        return len(values)
    return None


def parse_expression(expr: str) -> Expression:
    """Parse and whitelist-check `expr`; raise ExpressionError naming the first offending piece."""
    if len(expr) > MAX_LENGTH:
        raise ExpressionError(f"expression is {len(expr)} characters long; the limit is {MAX_LENGTH}.")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse expression {expr!r}: {exc.msg} at column {exc.offset}.") from None
    except (RecursionError, MemoryError):
        raise ExpressionError(f"expression nests too deeply to parse; the limit is {MAX_DEPTH} levels.") from None
    depth = _depth(tree.body)
    if depth > MAX_DEPTH:
        raise ExpressionError(f"expression nests {depth} levels deep; the limit is {MAX_DEPTH}.")
    inputs: set[str] = set()
    _check(tree.body, expr.strip(), inputs)
    return Expression(expr, frozenset(inputs), tree)


def _depth(root: ast.AST) -> int:
    """Depth of the syntax tree, walked without recursion (a chain a+a+...+a is as deep as it is long)."""
    deepest = 0
    pending = [(root, 1)]
    while pending:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        pending += [(child, depth + 1) for child in ast.iter_child_nodes(node)]
    return deepest


def _piece(node: ast.AST, source: str) -> str:
    return ast.get_source_segment(source, node) or type(node).__name__


def _check(node: ast.AST, source: str, inputs: set[str]) -> None:
    """Accept only whitelisted nodes, collecting the column names read."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExpressionError(f"constant {_piece(node, source)} is not allowed: only numbers are.")
    elif isinstance(node, ast.Name):
        if node.id.startswith("_"):
            raise ExpressionError(f"name {node.id!r} is not allowed: names starting with '_' are reserved.")
        inputs.add(node.id)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise ExpressionError(f"operator in {_piece(node, source)!r} is not allowed: use + - * / **.")
        _check(node.left, source, inputs)
        _check(node.right, source, inputs)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.USub | ast.UAdd):
            raise ExpressionError(f"operator in {_piece(node, source)!r} is not allowed: only unary - is.")
        _check(node.operand, source, inputs)
    elif isinstance(node, ast.Compare):
        if any(type(op) not in _COMPARE for op in node.ops):
            raise ExpressionError(f"comparison in {_piece(node, source)!r} is not allowed: use < <= > >= == !=.")
        for child in (node.left, *node.comparators):
            _check(child, source, inputs)
    elif isinstance(node, ast.Call):
        _check_call(node, source, inputs)
    else:
        piece = _piece(node, source)
        raise ExpressionError(f"{_describe(node)} {piece!r} is not allowed in a derived-feature expression.")


def _check_call(node: ast.Call, source: str, inputs: set[str]) -> None:
    allowed = ", ".join(sorted(FUNCTIONS))
    if not isinstance(node.func, ast.Name):
        raise ExpressionError(f"call {_piece(node, source)!r} is not allowed: only the functions {allowed} are.")
    name = node.func.id
    if name not in FUNCTIONS:
        raise ExpressionError(f"unknown function {name!r}: allowed functions are {allowed}.")
    if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
        raise ExpressionError(f"call {_piece(node, source)!r} is not allowed: pass positional arguments only.")
    arity = FUNCTIONS[name][0]
    if len(node.args) != arity:
        raise ExpressionError(f"function {name!r} takes {arity} argument(s), got {len(node.args)}.")
    for arg in node.args:
        _check(arg, source, inputs)


def _describe(node: ast.AST) -> str:
    names = {
        ast.Attribute: "attribute access",
        ast.Subscript: "subscript",
        ast.Lambda: "lambda",
        ast.BoolOp: "boolean operator (use where/minimum/maximum)",
        ast.IfExp: "conditional expression (use where)",
    }
    return names.get(type(node), f"syntax {type(node).__name__}")


def _eval(node: ast.AST, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluate a node that _check accepted."""
    if isinstance(node, ast.Constant):
        return np.float64(node.value)
    if isinstance(node, ast.Name):
        return arrays[node.id]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, arrays), _eval(node.right, arrays))
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, arrays)
        return np.negative(value) if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Compare):
        return _compare(node, arrays)
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        args = [_eval(arg, arrays) for arg in node.args]
        return FUNCTIONS[node.func.id][1](*args)
    raise ExpressionError(f"cannot evaluate node {type(node).__name__}.")  # unreachable after _check


def _compare(node: ast.Compare, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """0/1 floats; a chain a < b < c means both; a missing operand gives a missing result."""
    left = _eval(node.left, arrays)
    result: np.ndarray = np.float64(1.0)
    missing: np.ndarray = np.isnan(left)
    for op, comparator in zip(node.ops, node.comparators, strict=True):
        right = _eval(comparator, arrays)
        result = result * _COMPARE[type(op)](left, right)
        missing = missing | np.isnan(right)
        left = right
    return np.where(missing, np.nan, result)


def unknown_column(column: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(column, [str(k) for k in known], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return f"unknown column {column!r}{hint}"


def check_expressions(derived: Mapping[str, Any], known_columns: Iterable[str]) -> list[tuple[str, str]]:
    """Every problem as (feature, reason), without raising, so a spec's errors are reported at once."""
    known = set(known_columns)
    names = list(derived)
    direct: dict[str, frozenset[str]] = {}
    problems: list[tuple[str, str]] = []
    for name, feature in derived.items():
        try:
            direct[name] = parse_expression(feature.expr).inputs
        except ExpressionError as exc:
            problems.append((name, str(exc)))
        if name in known:
            problems.append((name, f"derived feature {name!r} has the name of an existing column; rename it."))
    for index, name in enumerate(names):
        declared_before = set(names[:index])
        for column in sorted(direct.get(name, ())):
            if column in known or column in declared_before:
                continue
            if column in derived:
                problems.append((name, _ordering_problem(name, column, direct)))
            else:
                problems.append((name, unknown_column(column, known | set(names))))
    return sorted(problems, key=lambda problem: names.index(problem[0]))  # stable: declaration order


def _ordering_problem(name: str, column: str, direct: Mapping[str, frozenset[str]]) -> str:
    """Distinguish a cycle (no order works) from a mere forward reference (declare it earlier)."""
    path = _path(column, name, direct, [name, column])
    if path:
        return f"cycle {' -> '.join(path)}: a derived feature cannot depend on itself."
    return f"forward reference to {column!r}: declare it before {name!r}."


def _path(start: str, target: str, direct: Mapping[str, frozenset[str]], path: list[str]) -> list[str] | None:
    if start == target:
        return path
    for column in sorted(direct.get(start, ())):
        if column == target:
            return [*path, column]
        if column in direct and column not in path:
            found = _path(column, target, direct, [*path, column])
            if found:
                return found
    return None

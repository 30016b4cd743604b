"""Type-check a composed spec against the schema and turn pydantic's errors into Problems.

Pydantic reports every error at once; this module only rewrites them in Keel's
words: the key path as the user wrote it, the closest valid key for a typo.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from pipeline.spec.compose import Provenance
from pipeline.spec.errors import Problem, unknown
from pipeline.spec.schema import Spec

_TAGGED = {"model", "candidates"}


def typecheck(data: dict[str, Any], provenance: Provenance) -> tuple[Spec | None, list[Problem]]:
    try:
        return Spec.model_validate(data), []
    except ValidationError as exc:
        return None, [_to_problem(error, data, provenance) for error in exc.errors()]


def _clean_loc(loc: tuple, data: dict[str, Any]) -> list[str]:
    """Drop the discriminator tag pydantic inserts for model families."""
    parts: list[str] = []
    for item in loc:
        item = str(item)
        if parts and _is_tag_position(parts) and item == _family_at(parts, data):
            continue
        parts.append(item)
    return parts


def _is_tag_position(parts: list[str]) -> bool:
    return parts == ["model"] or (len(parts) == 2 and parts[0] == "candidates")


def _family_at(parts: list[str], data: dict[str, Any]) -> str | None:
    node: Any = data
    for part in parts:
        node = node[int(part)] if isinstance(node, list) else node.get(part) if isinstance(node, dict) else None
    return node.get("family") if isinstance(node, dict) else None


def _to_problem(error: dict, data: dict[str, Any], provenance: Provenance) -> Problem:
    parts = _clean_loc(error["loc"], data)
    key = ".".join(parts)
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _fields_at(parts[:-1], data)
        reason = unknown("key", parts[-1], allowed)
    elif kind == "missing":
        reason = "required key is missing"
    elif kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        reason = unknown("model family", str(ctx.get("tag")), tags)
        key = f"{key}.family" if key else "family"
    elif kind == "union_tag_not_found":
        reason = "a model needs a 'family' (e.g. lightgbm, logistic, two_tower)"
    else:
        value = error.get("input")
        message = error["msg"].removeprefix("Value error, ")
        shown = "" if isinstance(value, dict | list) or repr(value) in message else f" (got {value!r})"
        reason = f"{message}{shown}"
    return provenance.problem(key, reason)


def _fields_at(parts: list[str], data: dict[str, Any]) -> list[str]:
    """Field names the schema allows at a key path, for typo suggestions."""
    annotation: Any = Spec
    node: Any = data
    for part in parts:
        annotation = _strip(annotation)
        if get_origin(annotation) in (dict, list):
            annotation = get_args(annotation)[-1]
        else:
            model = _model_of(annotation, node)
            if model is None or part not in model.model_fields:
                return []
            annotation = model.model_fields[part].annotation
        node = _child(node, part)
    model = _model_of(_strip(annotation), node)
    return list(model.model_fields) if model else []


def _strip(annotation: Any) -> Any:
    """Annotated[X, ...] -> X and X | None -> X, so containers and models show through."""
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _child(node: Any, part: str) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    return None


def _model_of(annotation: Any, node: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _model_of(get_args(annotation)[0], node)
    if origin in (Union, types.UnionType):
        models = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        family = node.get("family") if isinstance(node, dict) else None
        for model in models:
            tag = model.model_fields.get("family")
            if tag is not None and family in get_args(tag.annotation):
                return model
        return models[0] if len(models) == 1 else None
    return None

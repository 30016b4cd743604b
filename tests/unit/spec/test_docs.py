"""The user guide stays in step with the schema: every spec key is documented."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from pipeline.spec import schema

DOC = (Path(__file__).resolve().parents[3] / "docs" / "spec-reference.md").read_text()
MODELS = [
    obj
    for _, obj in inspect.getmembers(schema, inspect.isclass)
    if issubclass(obj, BaseModel) and obj.__module__ == schema.__name__ and obj is not schema.Strict
]
FIELDS = sorted({(model.__name__, name) for model in MODELS for name in model.model_fields})


@pytest.mark.parametrize(("model", "field"), FIELDS, ids=[f"{m}.{f}" for m, f in FIELDS])
def test_every_schema_key_is_in_the_spec_reference(model: str, field: str) -> None:
    assert re.search(rf"`[^`\n]*\b{re.escape(field)}\b[^`\n]*`", DOC), (
        f"{model}.{field} is not documented in docs/spec-reference.md"
    )

"""GET /openapi.json (and /docs.json): the service's OpenAPI 3.0 document, bodies from the bundle's contract.

Why not FastAPI's own document: the routes take a raw `Request` (the schema is the bundle's contract,
known only once the champion is loaded, ADR 0007), so FastAPI would describe every body as empty, and
a client or a fuzzer (the standing schemathesis suite, tests/integration/test_serving_schemathesis.py)
would learn nothing. This document is rebuilt from the champion the worker serves at the moment of
the request: one property per model input with its contract type, range (`min`/`max`), allowed
values and nullability, the spec's entity id and fairness group fields as optional properties, the
batch cap, and for a recommendation spec `user_id`, `k` (1..serving.max_k) and `context`. It is a
description, not the validator: RecordChecker stays the one place that decides (and names every
problem in a 422). Each service lists only its own routes (a churn spec's /score, /score_batch and
/cached_score/{id}, a recommendation spec's /recommend; /status, /metrics and BentoML's health
endpoints for both): the churn and recommendation services share one FastAPI app, so BentoML's
generic /docs.json would list all of them, and Keel answers /docs.json itself (direct.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.serving.records import ENTITY_ID_MAX
from pipeline.serving.state import ServingState
from pipeline.spec.schema import ColumnContract

OPENAPI_VERSION = "3.0.3"
NO_CONTROL_CHARACTERS = "^[^\\u0000-\\u001f\\u007f]+$"  # refused by limits.PathGuard before any route
ERROR = {"$ref": "#/components/schemas/Error"}


def openapi_document(state: ServingState) -> dict[str, Any]:
    """The document for what `state` serves now (generic bodies while nothing is loaded)."""
    if state.task == "recommendation":
        paths = {"/recommend": _recommend_path(state)}
        components = {"RecommendRequest": _recommend_request(state)}
    else:
        paths = _score_paths(state)
        components = {"Record": _record_schema(state), "ScoreResult": SCORE_RESULT}
    paths["/status"] = {
        "get": {
            "summary": "what this worker serves (paths redacted without the admin token)",
            "responses": _responses({"200": "serving", "503": "nothing to serve yet"}, _object()),
        }
    }
    paths.update(INFRA_PATHS)
    bundle = state.scorer.tag if state.scorer is not None else None
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Keel scoring",
            "version": bundle or "not loaded",
            "description": "Request bodies follow the contract of the champion bundle named in `version`.",
        },
        "paths": paths,
        "components": {"schemas": {**components, "Error": ERROR_SCHEMA}},
    }


def _infra(summary: str, codes: Mapping[str, str], media: str = "text/plain") -> dict[str, Any]:
    responses = {
        code: {"description": text, "content": {media: {"schema": {"type": "string"}}}} for code, text in codes.items()
    }
    return {"get": {"summary": summary, "responses": responses}}


# BentoML's health endpoints and Keel's /metrics: listed because this document replaces BentoML's
# generic /docs.json (direct.py)
INFRA_PATHS = {
    "/livez": _infra("the worker process is up", {"200": "alive"}),
    "/readyz": _infra("a verified champion is loaded", {"200": "ready", "503": "not ready"}),
    "/metrics": _infra(
        "Prometheus metrics of every worker: requests by route template and status, scoring, cache, request log",
        {"200": "text exposition format"},
    ),
}

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "problems": {"type": "array", "items": {"type": "string"}}},
    "required": ["error"],
}
SCORE_RESULT = {
    "type": "object",
    "properties": {
        "probability": {"type": "number", "minimum": 0, "maximum": 1},
        "flagged": {"type": "boolean"},
        "bundle": {"type": "string"},
        "reasons": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["probability", "flagged", "bundle"],
}
CLIENT_ERRORS = {
    "400": "malformed JSON, nesting too deep, a bad query value",
    "404": "not this spec's route",
    "413": "body or batch over the cap",
    "415": "not application/json",
    "422": "breaks the contract: every problem is named",
    "503": "no champion loaded",
}


def _object() -> dict[str, Any]:
    return {"type": "object"}


def _responses(codes: Mapping[str, str], ok_schema: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code, text in codes.items():
        schema = ok_schema if code.startswith("2") else ERROR
        if code == "503" and ok_schema.get("type") == "object" and "properties" not in ok_schema:
            schema = ok_schema  # /status answers its own body with 503 while nothing is served
        out[code] = {"description": text, "content": {"application/json": {"schema": schema}}}
    return out


def _json_body(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": dict(schema)}}}


SCORE_RESULT_REF = {"$ref": "#/components/schemas/ScoreResult"}
CACHED_CODES = {
    "200": "the cached score",
    "400": "a control character in the id",
    "404": "no score for this id",
    "422": "id too long",
    "503": "no champion, or the cache store is down",
}
EXPLAIN = {
    "name": "explain",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]},
    "description": "false skips the reasons (tree SHAP)",
}


def _score_paths(state: ServingState) -> dict[str, Any]:
    record = {"$ref": "#/components/schemas/Record"}
    max_batch = state.scorer.max_batch if state.scorer is not None else None
    records: dict[str, Any] = {"type": "array", "items": record}
    if max_batch:
        records["maxItems"] = int(max_batch)
    batch = {"type": "object", "properties": {"records": records}, "required": ["records"]}
    batch_result = {"type": "object", "properties": {"results": {"type": "array", "items": SCORE_RESULT}}}
    cached = {
        "type": "object",
        "properties": {"entity_id": {"type": "string"}, **SCORE_RESULT["properties"]},  # type: ignore[dict-item]
    }
    return {
        "/score": {
            "post": {
                "summary": "score one record with the champion (or the rollout's challenger)",
                "parameters": [EXPLAIN],
                "requestBody": _json_body(record),
                "responses": _responses(
                    {"200": "scored", **CLIENT_ERRORS}, {"$ref": "#/components/schemas/ScoreResult"}
                ),
            }
        },
        "/score_batch": {
            "post": {
                "summary": "score a batch of records",
                "parameters": [EXPLAIN],
                "requestBody": _json_body(batch),
                "responses": _responses({"200": "scored", **CLIENT_ERRORS}, batch_result),
            }
        },
        "/cached_score/{entity_id}": {
            "get": {
                "summary": "the weekly batch score the current champion wrote for this id (ADR 0018)",
                "parameters": [
                    {
                        "name": "entity_id",
                        "in": "path",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": ENTITY_ID_MAX,
                            "pattern": NO_CONTROL_CHARACTERS,
                        },
                    }
                ],
                "responses": _responses(CACHED_CODES, cached),
            }
        },
    }


def _record_schema(state: ServingState) -> dict[str, Any]:
    """One record: each model input as its contract says; the entity id and group fields optional."""
    scorer = state.scorer
    checker = getattr(scorer, "checker", None)
    if checker is None:
        return _object()
    properties = {name: column_schema(spec) for name, spec in checker.columns.items()}
    for name, spec in checker.extras.items():
        properties[name] = column_schema(spec)
    if checker.id_field:
        properties[checker.id_field] = {
            "oneOf": [{"type": "string", "minLength": 1, "maxLength": ENTITY_ID_MAX}, {"type": "integer"}]
        }
    return {
        "type": "object",
        "properties": properties,
        "required": list(checker.columns),
        "additionalProperties": False,
    }


def column_schema(spec: ColumnContract) -> dict[str, Any]:
    """JSON Schema (OpenAPI 3.0 dialect) of one contract column as a request field."""
    schema: dict[str, Any]
    if spec.dtype in ("int", "float"):
        schema = {"type": "integer" if spec.dtype == "int" else "number"}
        if spec.min is not None:
            schema["minimum"] = spec.min
        if spec.max is not None:
            schema["maximum"] = spec.max
    elif spec.dtype == "bool":
        schema = {"type": "boolean"}
    else:
        schema = {"type": "string"}
        if spec.allowed is not None and spec.dtype in ("str", "category"):
            schema["enum"] = [str(v) for v in spec.allowed]
    if spec.nullable:
        schema["nullable"] = True
    if spec.description:
        schema["description"] = spec.description
    return schema


def _recommend_request(state: ServingState) -> dict[str, Any]:
    from pipeline.serving.recommend import CONTEXT_MAX, USER_ID_MAX

    serving = getattr(state.scorer, "serving", None)
    k: dict[str, Any] = {"type": "integer", "minimum": 1, "default": 10}
    if serving is not None:
        k["maximum"] = int(serving.max_k)
    scalar = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}], "nullable": True}
    return {
        "type": "object",
        "properties": {
            "user_id": {"oneOf": [{"type": "string", "minLength": 1, "maxLength": USER_ID_MAX}, {"type": "integer"}]},
            "k": k,
            "context": {"type": "object", "maxProperties": CONTEXT_MAX, "additionalProperties": scalar},
        },
        "required": ["user_id"],
        "additionalProperties": False,
    }


def _recommend_path(state: ServingState) -> dict[str, Any]:
    return {
        "post": {
            "summary": "top-k items for a user, with the degradation level that answered",
            "requestBody": _json_body({"$ref": "#/components/schemas/RecommendRequest"}),
            "responses": _responses({"200": "recommended", **CLIENT_ERRORS}, _object()),
        }
    }

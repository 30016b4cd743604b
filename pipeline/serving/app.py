"""The HTTP routes, as a plain FastAPI app that BentoML mounts (and the bench serves bare).

Why raw `Request` bodies instead of pydantic-typed BentoML APIs: the request schema is the
bundle's contract, known only once the champion is loaded, and RecordChecker already names
every bad field; a pydantic IO descriptor would validate twice and answer in its own format.
Handlers are `async def`. A small request (up to INLINE_RECORDS records, ~1-2 ms of model time)
is scored on the event loop itself: the thread hop costs about as much as the work (measured
with bench/bench_serving.py: 0.7-0.8 vs 1.0 ms server CPU per /score, p99 at 8 connections
19-34 vs 46-52 ms). Larger batches go to a bounded thread pool (KEEL_SCORE_THREADS, default one
per core; LightGBM releases the GIL) so one big batch does not stall the loop; 0 means always
inline. Scale a host by worker processes (KEEL_WORKERS), one per core.
`?explain=false` skips the reasons (tree SHAP is most of a request's cost).
Scoring goes through dispatch.score_routed: during a rollout each record is routed to the
champion or the challenger (router.py), a shadow challenger scores a copy after the response,
and every request is logged (request_log.py). Answers carry X-Request-Id and X-Keel-Side.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from prometheus_client import Histogram
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.serving.admin import is_admin, redact
from pipeline.serving.dispatch import Answer, Unavailable, log_refusal, request_id, score_routed
from pipeline.serving.errors import RequestError
from pipeline.serving.openapi import openapi_document
from pipeline.serving.recommend import add_recommend_route
from pipeline.serving.route_metrics import exposition
from pipeline.serving.state import ServingState

__all__ = ["ServingState", "build_app"]

log = logging.getLogger("keel.serving")

SCORES = Histogram(
    "keel_score_probability",
    "Churn probabilities returned by /score and /score_batch",
    buckets=[i / 10 for i in range(1, 11)],
)
ENTITY_MAX = 128
SWAGGER_ASSETS = "/static_content"  # BentoML's bundled Swagger UI (bentoml/_internal/server/static_content)
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")  # a JSON escape of a UTF-16 surrogate


def _error_response(
    status: int, message: str, problems: list[str] | None = None, rid: str | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if problems is not None:
        body["problems"] = problems
    return JSONResponse(body, status_code=status, headers={"x-request-id": rid} if rid else None)


def _headers(rid: str, answer: Answer) -> dict[str, str]:
    """The request id (outcomes join the request log on it) and the side that answered."""
    sides = set(answer.sides)
    return {"x-request-id": rid, "x-keel-side": sides.pop() if len(sides) == 1 else "mixed"}


async def _json_body(request: Request) -> Any:
    """The parsed body, or a RequestError: 415 wrong type, 400 not JSON (or nested too deep), 422 bad text."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise RequestError([f"content-type: expected application/json, got {content_type or 'none'!r}"], 415)
    raw = await request.body()
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError([f"body: malformed JSON ({type(exc).__name__}: {str(exc)[:120]})"], 400) from None
    except RecursionError:  # e.g. 1000 nested arrays: the parser gives up; the caller's fault, not ours
        raise RequestError(["body: JSON nested too deeply"], 400) from None
    if SURROGATE_ESCAPE.search(raw):  # only \ud800-\udfff escapes can make text that is not Unicode
        problems = invalid_text(body)
        if problems:
            raise RequestError(problems, 422)
    return body


def invalid_text(body: Any, limit: int = 10) -> list[str]:
    """Where `body` holds a lone surrogate (valid JSON, invalid Unicode: nothing downstream can encode it).

    Iterative, not recursive: the body may be nested as deep as the parser allowed.
    """
    problems: list[str] = []
    stack: list[tuple[str, Any]] = [("body", body)]
    while stack and len(problems) < limit:
        where, value = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                problems.append(f"{where}: text is not valid Unicode (a lone surrogate escape)")
        elif isinstance(value, dict):
            for key, item in value.items():
                if not _encodable(key):
                    problems.append(f"{where}: a field name is not valid Unicode (a lone surrogate escape)")
                    continue
                stack.append((f"{where}.{key}"[:200], item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]"[:200], item) for i, item in enumerate(value))
    return problems


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _explain(request: Request) -> bool:
    """`?explain=false` (or 0/no) skips the reasons; anything unrecognised is a 400, not a silent default."""
    value = request.query_params.get("explain", "true").strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise RequestError([f"explain: expected true or false, got {value[:20]!r}"], 400)


def _refuse_constant(name: str) -> float:
    """NaN/Infinity are not JSON; keep them so RecordChecker names the field instead of a parse error."""
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


def _echo_ids(results: list[dict[str, Any]], records: list[Any], id_field: str | None) -> None:
    """Add `index` (the record's position) and the spec's entity id, when the record carried it, to each result."""
    for index, (result, record) in enumerate(zip(results, records, strict=True)):
        result["index"] = index
        if id_field and isinstance(record, dict) and id_field in record:
            result[id_field] = record[id_field]


def build_app(state: ServingState) -> FastAPI:
    """Routes over `state`; every failure is a JSON error without a traceback.

    Error messages are ours (the caller's own values go in `problems`): any absolute path in one
    (a store home in "no champion for ... in /srv/...") is redacted for every caller (admin.py).
    """
    app = FastAPI(title="Keel scoring", docs_url=None, redoc_url=None, openapi_url=None)

    def _error(status: int, message: str, problems: list[str] | None = None, rid: str | None = None) -> JSONResponse:
        return _error_response(status, redact(message, state.paths), problems, rid)

    @app.exception_handler(RequestError)
    async def _bad_request(_: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, "invalid request", exc.problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's own answers (no such route, wrong method) in the same JSON shape as ours, not text/plain."""
        return _error(exc.status_code, str(exc.detail)[:200])

    @app.exception_handler(Exception)
    async def _server_fault(_: Request, exc: Exception) -> JSONResponse:
        log.exception("scoring failed")  # the traceback goes to the log, never to the caller
        return _error(500, "internal error")

    async def _scored(request: Request, single: bool) -> Response:
        """Route, score, log; the response names the bundle that answered, the shadow runs after it."""
        rid = request_id(request.headers.get("x-request-id"))
        if state.task == "recommendation":
            return _error(404, "this service serves a recommendation spec: POST /recommend", None, rid)
        try:
            body = await _json_body(request)
            records = body if single or not isinstance(body, dict) else body.get("records")
            if single and not isinstance(records, dict):
                raise RequestError(["body: expected one JSON object of named features"])
            if not single and not isinstance(records, list):
                raise RequestError(['body: expected {"records": [...]} or a JSON list of records'])
            answer = await score_routed(state, [records] if single else records, _explain(request), rid)
        except RequestError as exc:
            log_refusal(state, rid, "invalid", "; ".join(exc.problems))
            return _error(exc.status, "invalid request", exc.problems, rid)
        except Unavailable as exc:
            log_refusal(state, rid, "unavailable", str(exc))
            return _error(503, str(exc), None, rid)
        for r in answer.results:
            SCORES.observe(r["probability"])
        if not single:  # each answer names its record: the entity id it carried, and its index (keel score joins)
            _echo_ids(answer.results, records, state.scorer.id_field if state.scorer else None)
        body = answer.results[0] if single else {"results": answer.results}
        return JSONResponse(body, headers=_headers(rid, answer), background=_shadow(answer))

    def _shadow(answer: Answer) -> BackgroundTask | None:
        if answer.shadow is None or state.shadow is None:
            return None
        return BackgroundTask(state.shadow.submit, answer.shadow)

    @app.post("/score")
    async def score(request: Request) -> Response:
        return await _scored(request, single=True)

    @app.post("/score_batch")
    async def score_batch(request: Request) -> Response:
        return await _scored(request, single=False)

    add_recommend_route(app, state, _json_body, _error)

    @app.get("/openapi.json", include_in_schema=False)
    @app.get("/docs.json", include_in_schema=False)  # answered before BentoML's generic one (direct.py)
    async def openapi() -> Response:
        """This service's own routes, bodies from the champion's contract (openapi.py); the same at both paths."""
        return JSONResponse(openapi_document(state))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        """Interactive docs over /openapi.json, with the Swagger UI files BentoML serves (no CDN)."""
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Keel scoring",
            swagger_js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_ASSETS}/favicon-light-32x32.png",
        )

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus text for every worker (route_metrics.py); a plain def: reading the metric files blocks."""
        content, media_type = exposition()
        return Response(content, media_type=media_type)

    @app.get("/status")
    async def status(request: Request) -> Response:
        """What this worker serves and why not something else: the operator's first stop.

        Absolute paths (store home, request-log folder, spec, anything in an error) are redacted
        unless the caller sends `Authorization: Bearer <KEEL_ADMIN_TOKEN>`; an admin also gets `paths`.
        """
        scorer = state.scorer
        body = {
            "ready": scorer is not None,
            "task": state.task,
            "bundle": scorer.tag if scorer else None,
            "threshold": scorer.threshold if scorer else None,
            "loaded_at": state.loaded_at,
            "error": state.error,
            "reload_error": state.reload_error,
            "standby": state.standby.tag if state.standby else None,
            "rollout": _rollout_status(),
            "rollout_error": state.rollout_error,
            "triggered": state.triggered,
            "request_log": state.request_log.counts() if state.request_log else None,
            "score_cache": _cache_status(),
        }
        if is_admin(request.headers.get("authorization"), state.admin_token):
            body["paths"] = dict(state.paths)
        else:
            body = redact(body, state.paths)
        return JSONResponse(body, status_code=200 if scorer is not None else 503)

    def _cache_status() -> dict[str, Any] | None:
        if state.cache is None:
            return None
        return {"kind": state.cache.kind, **state.cache_health.to_dict()}

    def _rollout_status() -> dict[str, Any] | None:
        record, routing = state.rollout, state.routing
        if record is None:
            return None
        out = {k: record.get(k) for k in ("rollout_id", "status", "stage", "traffic", "challenger", "champion")}
        out["routing"] = routing is not None  # False: the challenger is not being served (see rollout_error)
        out["shadow"] = routing.shadow if routing else False
        if state.triggers is not None:
            out["windows"] = state.triggers.to_dict()
        if state.shadow is not None:
            out["shadow_dropped"] = state.shadow.dropped
        return out

    @app.get("/cached_score/{entity_id}")
    async def cached_score(entity_id: str) -> Response:
        """The weekly score the *current champion* wrote for this id; never another bundle's (ADR 0018)."""
        if len(entity_id) > ENTITY_MAX:
            raise RequestError([f"entity_id: longer than {ENTITY_MAX} characters"])
        if state.task == "recommendation":
            return _error(404, "this service serves a recommendation spec: POST /recommend")
        champion = state.scorer
        if champion is None:
            return _error(503, state.error or "not ready")
        if state.cache is None:
            return _error(404, "no score cache is configured")
        tag = champion.tag
        if state.cache_health.skip():  # down: one probe per PROBE_S, the rest refused at once
            return _error(503, "score cache unavailable")
        try:
            found = state.cache.get(entity_id, tag)
        except Exception as exc:  # Redis down or slow: a fast 503; logged once per outage, counted
            state.cache_health.failed(exc)
            return _error(503, "score cache unavailable")
        state.cache_health.ok()
        if found is None:
            return _error(404, f"no cached score for {entity_id!r} in the champion {tag}")
        return JSONResponse({"entity_id": entity_id, **found, "bundle": tag}, headers={"x-keel-bundle": tag})

    return app

"""The HTTP routes, as a plain FastAPI app that BentoML mounts (and the bench serves bare).

Why raw `Request` bodies instead of pydantic-typed BentoML APIs: the request schema is the
bundle's contract, known only once the champion is loaded, and RecordChecker already names
every bad field; a pydantic IO descriptor would validate twice and answer in its own format.
Handlers are `async def` and hand the model call to a bounded thread pool: LightGBM releases
the GIL, so two cores score two requests at once, while the loop keeps answering /readyz.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Histogram

from pipeline.serving.cache import ScoreCache
from pipeline.serving.errors import RequestError
from pipeline.serving.scorer import Scorer

log = logging.getLogger("keel.serving")

SCORES = Histogram(
    "keel_score_probability",
    "Churn probabilities returned by /score and /score_batch",
    buckets=[i / 10 for i in range(1, 11)],
)
ENTITY_MAX = 128


@dataclass
class ServingState:
    """What the routes read; filled in by whoever loaded the bundle (the BentoML service or the bench)."""

    scorer: Scorer | None = None
    cache: ScoreCache | None = None
    error: str | None = "not loaded yet"
    limiter: anyio.CapacityLimiter = field(
        default_factory=lambda: anyio.CapacityLimiter(int(os.environ.get("KEEL_SCORE_THREADS", os.cpu_count() or 1)))
    )


def _error(status: int, message: str, problems: list[str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if problems is not None:
        body["problems"] = problems
    return JSONResponse(body, status_code=status)


async def _json_body(request: Request) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise RequestError([f"content-type: expected application/json, got {content_type or 'none'!r}"], 415)
    raw = await request.body()
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError([f"body: malformed JSON ({type(exc).__name__}: {str(exc)[:120]})"], 400) from None


def _refuse_constant(name: str) -> float:
    """NaN/Infinity are not JSON; keep them so RecordChecker names the field instead of a parse error."""
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


def build_app(state: ServingState) -> FastAPI:
    """Routes over `state`; every failure is a JSON error without a traceback."""
    app = FastAPI(title="Keel scoring", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestError)
    async def _bad_request(_: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, "invalid request", exc.problems)

    @app.exception_handler(Exception)
    async def _server_fault(_: Request, exc: Exception) -> JSONResponse:
        log.exception("scoring failed")  # the traceback goes to the log, never to the caller
        return _error(500, "internal error")

    async def _score(records: list[Any]) -> list[dict[str, Any]]:
        scorer = state.scorer
        if scorer is None:
            raise _Unavailable(state.error or "not ready")
        results = await anyio.to_thread.run_sync(scorer.score, records, limiter=state.limiter)
        for r in results:
            SCORES.observe(r["probability"])
        return results

    @app.post("/score")
    async def score(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise RequestError(["body: expected one JSON object of named features"])
        try:
            return JSONResponse((await _score([body]))[0])
        except _Unavailable as exc:
            return _error(503, str(exc))

    @app.post("/score_batch")
    async def score_batch(request: Request) -> Response:
        body = await _json_body(request)
        records = body.get("records") if isinstance(body, dict) else body
        if not isinstance(records, list):
            raise RequestError(['body: expected {"records": [...]} or a JSON list of records'])
        try:
            return JSONResponse({"results": await _score(records)})
        except _Unavailable as exc:
            return _error(503, str(exc))

    @app.get("/cached_score/{entity_id}")
    async def cached_score(entity_id: str) -> Response:
        if len(entity_id) > ENTITY_MAX:
            raise RequestError([f"entity_id: longer than {ENTITY_MAX} characters"])
        if state.cache is None:
            return _error(404, "no score cache is configured")
        try:
            found = state.cache.get(entity_id)
        except Exception:  # Redis down or slow: a fast 503, the log has the detail
            log.exception("score cache lookup failed")
            return _error(503, "score cache unavailable")
        if found is None:
            return _error(404, f"no cached score for {entity_id!r}")
        return JSONResponse({"entity_id": entity_id, **found})

    return app


class _Unavailable(Exception):
    pass

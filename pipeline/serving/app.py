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
INLINE_RECORDS = 8


@dataclass
class ServingState:
    """What the routes read; filled in by whoever loaded the bundle (the BentoML service or the bench)."""

    scorer: Scorer | None = None
    cache: ScoreCache | None = None
    error: str | None = "not loaded yet"  # why nothing is served (None once a scorer is live)
    reload_error: str | None = None  # why the latest champion change was not taken (the old one still serves)
    loaded_at: float | None = None
    threads: int = field(default_factory=lambda: int(os.environ.get("KEEL_SCORE_THREADS", os.cpu_count() or 1)))
    limiter: anyio.CapacityLimiter | None = None

    def __post_init__(self) -> None:
        if self.threads > 0 and self.limiter is None:
            self.limiter = anyio.CapacityLimiter(self.threads)


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

    async def _score(records: list[Any], explain: bool) -> list[dict[str, Any]]:
        scorer = state.scorer
        if scorer is None:
            raise _Unavailable(state.error or "not ready")
        if state.limiter is None or len(records) <= INLINE_RECORDS:
            results = scorer.score(records, explain)
        else:
            results = await anyio.to_thread.run_sync(scorer.score, records, explain, limiter=state.limiter)
        for r in results:
            SCORES.observe(r["probability"])
        return results

    @app.post("/score")
    async def score(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise RequestError(["body: expected one JSON object of named features"])
        try:
            return JSONResponse((await _score([body], _explain(request)))[0])
        except _Unavailable as exc:
            return _error(503, str(exc))

    @app.post("/score_batch")
    async def score_batch(request: Request) -> Response:
        body = await _json_body(request)
        records = body.get("records") if isinstance(body, dict) else body
        if not isinstance(records, list):
            raise RequestError(['body: expected {"records": [...]} or a JSON list of records'])
        try:
            return JSONResponse({"results": await _score(records, _explain(request))})
        except _Unavailable as exc:
            return _error(503, str(exc))

    @app.get("/status")
    async def status() -> Response:
        """What this worker serves and why not something else: the operator's first stop."""
        scorer = state.scorer
        body = {
            "ready": scorer is not None,
            "bundle": scorer.tag if scorer else None,
            "threshold": scorer.threshold if scorer else None,
            "loaded_at": state.loaded_at,
            "error": state.error,
            "reload_error": state.reload_error,
        }
        return JSONResponse(body, status_code=200 if scorer is not None else 503)

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

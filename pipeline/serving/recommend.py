"""POST /recommend: parse, route (champion or challenger, sticky by user_id), answer, log, shadow.

The contract (docs/adr/0012-recommend-serving.md): body {"user_id": str|int, "k": 1..max_k
(default 10), "context": {str: scalar}}; the answer names the degradation level, the bundle,
the side and rollout stage, the stage timings and whether re-ranking ran. Bad bodies are 4xx
with {"error", "problems"}; no bundle is 503; nothing else is a 5xx: stage failures are
fallback levels (pipeline/recsys/online.py), a failing challenger is answered by the champion
and counted against the challenger, exactly as /score does (dispatch.py).

Why the work runs on the worker's thread pool (anyio, state.limiter) and not on the event loop
as small /score requests do: a recommendation is milliseconds of FAISS, scipy and LightGBM
that release the GIL, so two requests overlap on two cores, and the loop stays free to accept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter
from starlette.background import BackgroundTask

from pipeline.recsys.fallback import NoFallbackLeft
from pipeline.rollout.simulate.faults import challenger_fault
from pipeline.serving.dispatch import log_refusal, request_id
from pipeline.serving.errors import RequestError
from pipeline.serving.request_log import Entry
from pipeline.serving.router import Routing
from pipeline.serving.shadow import ShadowJob
from pipeline.serving.state import ServingState
from pipeline.spec.schema import Spec

if TYPE_CHECKING:
    from pipeline.recsys.online import OnlineRecommender

log = logging.getLogger("keel.serving")

BODY_KEYS = frozenset({"user_id", "k", "context"})
USER_ID_MAX = 128
CONTEXT_MAX = 32
DEFAULT_K = 10
LEVELS = Counter("keel_recommend_level", "/recommend answers by degradation level and side", ["level", "side"])


def parse_body(body: Any, max_k: int) -> tuple[str, int, dict[str, Any]]:
    """(user_id, k, context) or RequestError naming every problem."""
    if not isinstance(body, dict):
        raise RequestError(['body: expected a JSON object {"user_id": ..., "k": ..., "context": {...}}'], 400)
    problems = [f"{key}: unknown key (allowed: user_id, k, context)" for key in sorted(set(body) - BODY_KEYS)]
    user_id = body.get("user_id")
    if user_id is None:
        problems.append("user_id: required")
    elif isinstance(user_id, bool) or not isinstance(user_id, str | int):
        problems.append(f"user_id: expected a string or an integer, got {type(user_id).__name__}")
    elif not 0 < len(str(user_id)) <= USER_ID_MAX:
        problems.append(f"user_id: 1 to {USER_ID_MAX} characters")
    k = body.get("k", DEFAULT_K)
    if isinstance(k, bool) or not isinstance(k, int):
        problems.append(f"k: expected an integer, got {type(k).__name__}")
    elif not 1 <= k <= max_k:
        problems.append(f"k: must be between 1 and {max_k} (serving.max_k), got {k}")
    context = body.get("context") or {}
    if not isinstance(context, dict):
        problems.append("context: expected an object of names to scalars")
    elif len(context) > CONTEXT_MAX:
        problems.append(f"context: at most {CONTEXT_MAX} entries")
    else:
        for key, value in context.items():
            if value is not None and not isinstance(value, str | int | float | bool):
                problems.append(f"context.{str(key)[:40]}: expected a scalar, got {type(value).__name__}")
    if problems:
        raise RequestError(problems, 422)
    return str(user_id), int(k), dict(context)


def recommender_loader(spec: Spec, redis_url: str | None, faults: dict[str, tuple[str, float]]) -> Callable:
    """BundleRef -> OnlineRecommender for the champion watcher (sha256-checked, index bound to its model)."""

    # the models (torch, FAISS, LightGBM) are imported only by a service that serves a recommendation spec
    import faiss

    from pipeline.recsys.bundle import load_recsys_bundle
    from pipeline.recsys.online import OnlineRecommender
    from pipeline.recsys.online_features import RedisFeatures, publish_features

    # one query per call: FAISS's OpenMP team costs more than the search (3 ms vs 0.3 ms on a 20k-item flat
    # index, 2 busy cores); parallelism comes from concurrent requests instead
    faiss.omp_set_num_threads(1)

    def load(ref: Any) -> OnlineRecommender:
        bundle = load_recsys_bundle(ref)  # IndexMismatchError here keeps the previous champion serving
        features = None
        if redis_url:
            features = RedisFeatures(redis_url, ref.tag, spec.serving.stage_budget_ms.features / 1000.0)
            try:
                if not features.published() and bundle.serving is not None:
                    # a bundle registered without Redis at hand: publish its training-time values now
                    ids = bundle.users.iloc[:, 0].to_numpy(), bundle.items.iloc[:, 0].to_numpy()
                    publish_features(features.client, ref.tag, bundle.serving.builder(), *ids)
            except Exception as exc:  # Redis down at load: requests answer STALE_FEATURES until it is back
                log.error("online features for %s not available yet: %s", ref.tag, exc)
        recommender = OnlineRecommender(ref.tag, bundle, spec.serving, redis=features, faults=faults)
        warm = recommender.user_ids[:1]
        if len(warm):
            recommender.recommend(warm[0], 1)  # first-call costs (FAISS, LightGBM) off the request path
        return recommender

    return load


async def _answer(state: ServingState, recommender: Any, user_id: str, k: int, context: dict) -> dict[str, Any]:
    if state.limiter is None:
        return recommender.recommend(user_id, k, context).to_dict()
    result = await anyio.to_thread.run_sync(recommender.recommend, user_id, k, context, limiter=state.limiter)
    return result.to_dict()


async def recommend_routed(state: ServingState, body: Any, rid: str) -> tuple[dict[str, Any], str, Any]:
    """(answer, side, shadow job or None); RequestError for the caller's mistakes."""
    champion, routing = state.scorer, state.routing
    if champion is None:
        raise NoFallbackLeft(state.error or "not ready")
    user_id, k, context = parse_body(body, _max_k(champion))
    side = routing.side(user_id, rid) if routing is not None else "champion"
    answer = None
    if side == "challenger" and routing is not None:
        start = time.perf_counter()
        try:
            await challenger_fault()  # simulation only (KEEL_SIMULATION=1); a no-op otherwise
            answer = await _answer(state, routing.challenger, user_id, k, context)
        except Exception as exc:  # the champion answers; the failure counts against the challenger
            _observe(state, routing, "challenger", routing.challenger.tag, rid, user_id, start, exc)
            side = "champion"
        else:
            _observe(state, routing, "challenger", routing.challenger.tag, rid, user_id, start, None, answer)
    if answer is None:
        start = time.perf_counter()
        try:
            answer = await _answer(state, champion, user_id, k, context)
        except Exception as exc:
            _observe(state, routing, "champion", champion.tag, rid, user_id, start, exc)
            raise
        _observe(state, routing, "champion", champion.tag, rid, user_id, start, None, answer)
    shadow = None
    if routing is not None and routing.shadowed(user_id, rid) and state.shadow is not None:
        shadow = ShadowJob(routing, [{"user_id": user_id, "k": k, "context": context}], [rid], [user_id])
    answer.update(side=side, stage=routing.stage if routing is not None else None, request_id=rid)
    LEVELS.labels(answer["level"], side).inc()
    return answer, side, shadow


def _max_k(recommender: Any) -> int:
    return int(recommender.serving.max_k)


def _observe(
    state: ServingState,
    routing: Routing | None,
    side: str,
    tag: str,
    rid: str,
    user_id: str,
    start: float,
    exc: BaseException | None,
    answer: dict[str, Any] | None = None,
) -> None:
    """One request-log row (items and level included) and one trigger sample per call."""
    ms = (time.perf_counter() - start) * 1e3
    failed = exc is not None
    if state.triggers is not None and routing is not None and state.triggers.rollout_id == routing.rollout_id:
        state.triggers.record(side, ms, failed)
    if state.request_log is None:
        return
    items = [i["item_id"] for i in answer["items"]] if answer is not None else None
    level = answer["level"] if answer is not None else None
    entry = Entry(
        rid,
        user_id,
        tag,
        side,
        routing.stage if routing else None,
        routing.rollout_id if routing else None,
        ms,
        "error" if failed else "ok",
        f"{type(exc).__name__}: {exc}" if exc is not None else None,
        items=items,
        level=level,
    )
    state.request_log.log(entry)


def add_recommend_route(app: FastAPI, state: ServingState, json_body: Callable, error: Callable) -> None:
    """Mount POST /recommend on the scoring app (it shares the app's JSON parsing and error format)."""

    @app.post("/recommend")
    async def recommend(request: Request) -> Response:
        rid = request_id(request.headers.get("x-request-id"))
        if state.task != "recommendation":
            return error(404, f"this service serves a {state.task} spec: POST /score", None, rid)
        try:
            answer, side, shadow = await recommend_routed(state, await json_body(request), rid)
        except RequestError as exc:
            log_refusal(state, rid, "invalid", "; ".join(exc.problems))
            return error(exc.status, "invalid request", exc.problems, rid)
        except NoFallbackLeft as exc:
            log_refusal(state, rid, "unavailable", str(exc))
            return error(503, str(exc), None, rid)
        background = BackgroundTask(state.shadow.submit, shadow) if shadow is not None and state.shadow else None
        return JSONResponse(answer, headers={"x-request-id": rid, "x-keel-side": side}, background=background)

"""ChurnService: the BentoML service that serves a spec's champion bundle.

Configuration (env, read at import/start): KEEL_SPEC (spec path, required), BENTOML_HOME (store),
KEEL_REDIS_URL or the spec's runtime.redis_url (score cache in Redis) else KEEL_SCORE_CACHE (a
Parquet of batch scores), KEEL_MAX_BODY_BYTES (default 1 MiB), KEEL_MAX_CONCURRENCY (default 32),
KEEL_MAX_BATCH (default 1000 records), KEEL_WORKERS (default 1).

Design (see bench/README.md for the full table): the routes are a FastAPI app mounted on the
service with `@bentoml.asgi_app`, not `@bentoml.api` methods. BentoML still owns the process
model, /livez, /readyz (via `__is_ready__`), /metrics, max_concurrency and the timeout; the
mounted app skips BentoML's pydantic IO descriptors and its per-call thread hop, whose cost
dwarfs a 0.3 ms model (measured by the developer: default sync API 570 req/s, p99 330 ms at 32
connections, vs bare FastAPI 3.0k req/s). Measured here (bench/bench_serving.py, 2 cores,
1 worker, same routes on bare uvicorn): conc 1 p99 11.6 vs 9.8 ms, 125 vs 173 req/s; conc 8
p99 201 vs 87 ms. Our `/score` costs ~4.5 ms CPU, mostly tree SHAP for the reasons, so the
model, not BentoML, sets the ceiling; BentoML's middlewares add ~2.3 ms/request. The
`@bentoml.api` sync/async variants were NOT measured against this design (no time).

A bundle that cannot be loaded (no champion, tampered file) does not crash the worker: the
reason is logged, /readyz stays 503 and the scoring routes answer 503 with that reason.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import bentoml

from pipeline.serving.app import ServingState, build_app
from pipeline.serving.cache import cache_from_env
from pipeline.serving.limits import BodySizeLimit
from pipeline.serving.loader import NotServable, load_serving_spec
from pipeline.serving.watch import ChampionWatcher

log = logging.getLogger("keel.serving")

MAX_BODY_BYTES = int(os.environ.get("KEEL_MAX_BODY_BYTES", 1 << 20))
MAX_CONCURRENCY = int(os.environ.get("KEEL_MAX_CONCURRENCY", 32))
MAX_BATCH = int(os.environ.get("KEEL_MAX_BATCH", 1000))
WORKERS = int(os.environ.get("KEEL_WORKERS", 1))
ACCESS_LOG = os.environ.get("KEEL_ACCESS_LOG", "0") == "1"
WATCH_INTERVAL_S = float(os.environ.get("KEEL_WATCH_INTERVAL_S", 0.5))
# BentoML samples no traces by default (tracing.sample_rate 0) yet still builds a span per request;
# the hot routes skip OpenTelemetry unless KEEL_TRACE_SCORING=1 (then set BentoML's sample_rate too).
TRACE_SCORING = os.environ.get("KEEL_TRACE_SCORING", "0") == "1"
UNTRACED = [] if TRACE_SCORING else ["/score", "/score_batch", "/cached_score/", "/status"]

STATE = ServingState()  # one per worker process; the mounted app reads it
app = build_app(STATE)


@bentoml.service(
    name="keel-churn",
    workers=WORKERS,
    traffic={"timeout": 10, "max_concurrency": MAX_CONCURRENCY},
    http={"host": "127.0.0.1"},  # BentoML binds 0.0.0.0 by default; exposing it is a deliberate choice
    logging={"access": {"enabled": ACCESS_LOG}},
    tracing={"excluded_urls": UNTRACED},
)
@bentoml.asgi_app(app, path="/")
class ChurnService:
    """Serves the spec's champion and follows the alias record; never ready on a model it could not verify."""

    def __init__(self) -> None:
        self.state = STATE
        spec_path = os.environ.get("KEEL_SPEC")
        try:
            if not spec_path:
                raise NotServable("KEEL_SPEC is not set: point it at the spec file to serve")
            spec, store = load_serving_spec(spec_path)
        except NotServable as exc:
            STATE.error = str(exc)
            log.error("keel serving NOT READY: %s", exc)
            return
        self.watcher = ChampionWatcher(spec.name, store, STATE, max_batch=MAX_BATCH)
        self.watcher.start(WATCH_INTERVAL_S)  # loads the champion now, then follows promotions and rollbacks
        if STATE.scorer is None:
            log.error("keel serving NOT READY (will retry): %s", STATE.error)
        try:
            redis_url = os.environ.get("KEEL_REDIS_URL") or spec.runtime.redis_url
            cache_path = os.environ.get("KEEL_SCORE_CACHE")
            STATE.cache = cache_from_env(redis_url, spec.name, Path(cache_path) if cache_path else None)
        except Exception as exc:  # a broken cache must not take scoring down; /cached_score answers 404/503
            log.error("keel score cache unavailable: %s", exc)

    def __is_ready__(self) -> bool:
        return self.state.scorer is not None


ChurnService.add_asgi_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)

"""ChurnService: the BentoML service that serves a spec's champion bundle.

Configuration (env, read at import/start): KEEL_SPEC (spec path, required), BENTOML_HOME (store),
KEEL_REDIS_URL or the spec's runtime.redis_url (score cache in Redis; else the batch scores `keel run`
wrote into the store, $BENTOML_HOME/keel/<name>/scores/, ADR 0018), KEEL_MAX_BODY_BYTES (default 1 MiB),
KEEL_MAX_CONCURRENCY (default 32),
KEEL_MAX_BATCH (default 1000 records), KEEL_WORKERS (default 1; use one per core),
KEEL_SCORE_THREADS (thread pool for batches over 8 records), KEEL_WATCH_INTERVAL_S (0.05),
KEEL_ACCESS_LOG / KEEL_TRACE_SCORING (default off, see below). Rollout (ADR 0010):
KEEL_REQUEST_LOG (1: write the Parquet request log), KEEL_REQUEST_LOG_DIR (default
$BENTOML_HOME/keel/<name>/requests), KEEL_TRIGGER_MIN_SAMPLES (100: requests a side needs
before an immediate trigger may fire), KEEL_SHADOW_QUEUE (256 copies waiting, then dropped),
KEEL_REQUEST_LOG_FLUSH_S (1.0: request-log part interval), KEEL_SIMULATION (1: honour the simulator's
X-Keel-Sim-Fault header, ADR 0016; never set it in production).
KEEL_ADMIN_TOKEN (16+ characters): a caller sending `Authorization: Bearer <it>` sees the store, spec and
request-log paths on /status; everyone else gets them redacted (pipeline/serving/admin.py).

Recommendation specs (ADR 0012): the same service answers POST /recommend instead of /score;
KEEL_REDIS_URL / runtime.redis_url then holds the online features, and KEEL_TEST_FAULTS
(tests only, e.g. `ranking=raise` or `ranking=sleep:300`) breaks a stage to exercise the fallbacks.

Design (ADR 0007; figures in bench/README.md): the routes are a FastAPI app mounted on the
service with `@bentoml.asgi_app`, not `@bentoml.api` methods. BentoML still owns the process
model, /livez, /readyz (via `__is_ready__`), /metrics, max_concurrency and the timeout; the
mounted app skips BentoML's pydantic IO descriptors and its per-call thread hop, whose cost
dwarfs a 1 ms model (measured by the developer: default sync API 570 req/s, p99 330 ms at 32
connections, vs bare FastAPI 3.0k req/s). Where BentoML's own per-request cost went, measured
with bench/bench_serving.py (server CPU per request, same routes on bare uvicorn): the access
log line (relayed through the arbiter) and an OpenTelemetry span per request even at sample
rate 0, plus h11/asyncio where uvloop/httptools were not installed. With those off by default
(KEEL_ACCESS_LOG=1, KEEL_TRACE_SCORING=1 turn them back on) BentoML costs within noise of bare
uvicorn: 0.7-1.0 vs 0.6-0.9 ms CPU per /score without reasons. Issue 16.6 (ADR 0031): Keel's routes
skip BentoML's per-request context middleware and inner router (DirectRoutes, last middleware below);
BentoML's request metrics are off and Keel counts its routes by template (route_metrics.py, which
also serves /metrics); BentoML's tracing check and timeout stay (bench/profile_serving.py).

A bundle that cannot be loaded (no champion, tampered file) does not crash the worker: the
reason is logged, /readyz stays 503, the scoring routes answer 503 with that reason, and the
champion watcher (pipeline/serving/watch.py) keeps retrying and follows later promotions.
The watcher also follows the rollout record: the challenger is routed a stable share of
requests (pipeline/serving/router.py) or shadows them, and the standby stays loaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import bentoml

from pipeline.permissions import apply_umask
from pipeline.recsys.fallback import parse_faults
from pipeline.registry import BundleStore
from pipeline.rollout.backends import configure_backend as configure_rollout_state
from pipeline.rollout.fairness_checks import request_group_fields
from pipeline.rollout.simulate.faults import SimFaultMiddleware
from pipeline.rollout.simulate.faults import enabled as sim_faults_enabled
from pipeline.serving.admin import admin_token_from_env
from pipeline.serving.app import ServingState, build_app
from pipeline.serving.cache import open_score_cache
from pipeline.serving.direct import DirectRoutes
from pipeline.serving.dispatch import report_shadow
from pipeline.serving.limits import BodySizeLimit, PathGuard
from pipeline.serving.loader import NotServable, load_serving_spec
from pipeline.serving.recommend import recommender_loader
from pipeline.serving.request_log import RequestLog
from pipeline.serving.reuseport import enable_reuseport
from pipeline.serving.route_metrics import RouteMetrics
from pipeline.serving.shadow import ShadowRunner
from pipeline.serving.triggers import ImmediateTriggers
from pipeline.serving.watch import ChampionWatcher
from pipeline.spec.schema import Spec
from pipeline.spec.secrets import SecretError
from pipeline.spec.secrets import redis_url as secret_redis_url

log = logging.getLogger("keel.serving")
apply_umask()  # request logs and caches this worker writes are owner-only unless KEEL_UMASK says otherwise

MAX_BODY_BYTES = int(os.environ.get("KEEL_MAX_BODY_BYTES", 1 << 20))
MAX_CONCURRENCY = int(os.environ.get("KEEL_MAX_CONCURRENCY", 32))
MAX_BATCH = int(os.environ.get("KEEL_MAX_BATCH", 1000))
WORKERS = int(os.environ.get("KEEL_WORKERS", 1))
ACCESS_LOG = os.environ.get("KEEL_ACCESS_LOG", "0") == "1"
WATCH_INTERVAL_S = float(os.environ.get("KEEL_WATCH_INTERVAL_S", 0.05))
REQUEST_LOG = os.environ.get("KEEL_REQUEST_LOG", "1") == "1"
TRIGGER_MIN_SAMPLES = int(os.environ.get("KEEL_TRIGGER_MIN_SAMPLES", 100))
SHADOW_QUEUE = int(os.environ.get("KEEL_SHADOW_QUEUE", 256))
REQUEST_LOG_FLUSH_S = float(os.environ.get("KEEL_REQUEST_LOG_FLUSH_S", 1.0))
# BentoML samples no traces by default (tracing.sample_rate 0) yet still builds a span per request;
# the hot routes skip OpenTelemetry unless KEEL_TRACE_SCORING=1 (then set BentoML's sample_rate too).
TRACE_SCORING = os.environ.get("KEEL_TRACE_SCORING", "0") == "1"
UNTRACED = [] if TRACE_SCORING else ["/score", "/score_batch", "/cached_score/", "/status", "/recommend"]

# uvicorn formats an access-log record per request whenever the logger has any handler up the tree
# (BentoML gives the root one) and then drops it below WARNING; BentoML's own access log
# (KEEL_ACCESS_LOG=1) does not use this logger. Detached, uvicorn skips the work (~0.01 ms/request).
logging.getLogger("uvicorn.access").propagate = False
enable_reuseport()  # KEEL_REUSEPORT=1 only: a listening socket per worker (ADR 0012, Worker balance)
STATE = ServingState()  # one per worker process; the mounted app reads it
app = build_app(STATE)


# keel serve names the service after the spec's task (pipeline/serving/run.py: service_name)
SERVICE_NAME = os.environ.get("KEEL_SERVICE_NAME", "keel-churn")


@bentoml.service(
    name=SERVICE_NAME,
    workers=WORKERS,
    traffic={"timeout": 10, "max_concurrency": MAX_CONCURRENCY},
    http={"host": "127.0.0.1"},  # BentoML binds 0.0.0.0 by default; exposing it is a deliberate choice
    logging={"access": {"enabled": ACCESS_LOG}},
    tracing={"excluded_urls": UNTRACED},
    metrics={"enabled": False},  # Keel counts its routes by template and serves /metrics itself (route_metrics.py)
)
@bentoml.asgi_app(app, path="/")
class ChurnService:
    """Serves the spec's champion and follows the alias record; never ready on a model it could not verify."""

    def __init__(self) -> None:
        self.state = STATE
        spec_path = os.environ.get("KEEL_SPEC")
        STATE.paths = {"spec": spec_path or "", "store": os.environ.get("BENTOML_HOME", "")}
        try:
            STATE.admin_token = admin_token_from_env()  # KEEL_ADMIN_TOKEN: /status shows paths to its bearer
            if not spec_path:
                raise NotServable("KEEL_SPEC is not set: point it at the spec file to serve")
            spec, store = load_serving_spec(spec_path)
            STATE.paths["store"] = str(store.home)
            configure_rollout_state(spec, store)  # runtime.rollout_state: file (default) or redis (ADR 0010)
        except (NotServable, ValueError) as exc:
            STATE.error = str(exc)
            log.error("keel serving NOT READY: %s", exc)
            return
        self._rollout_parts(spec, store)
        warm = spec.rollout.rollback.warm_standby if spec.rollout else True
        try:
            redis_url = secret_redis_url(spec)  # KEEL_REDIS_URL, else the spec's (an env:/prefect-secret: reference)
        except SecretError as exc:
            STATE.error = str(exc)
            log.error("keel serving NOT READY: %s", exc)
            return
        STATE.task = spec.task
        build = None
        if spec.task == "recommendation":  # /recommend (ADR 0012): an OnlineRecommender per bundle
            try:
                faults = parse_faults(os.environ.get("KEEL_TEST_FAULTS"))
            except ValueError as exc:
                STATE.error = str(exc)
                log.error("keel serving NOT READY: %s", exc)
                return
            build = recommender_loader(spec, redis_url, faults)
        else:
            try:  # the cache the spec names; only the champion's namespace is read (ADR 0018)
                STATE.cache = open_score_cache(redis_url, store.keel_dir, spec.name)
                if STATE.cache.kind == "file":
                    STATE.paths["score_cache"] = str(STATE.cache.directory)
            except Exception as exc:  # a broken cache must not take scoring down; /cached_score answers 404/503
                log.error("keel score cache unavailable: %s", exc)
        self.watcher = ChampionWatcher(
            spec.name,
            store,
            STATE,
            max_batch=MAX_BATCH,
            id_field=spec.data.entity_id,
            warm_standby=warm,
            build=build,
            group_fields=request_group_fields(spec),  # fairness groups a /score record may carry (logged)
            on_champion=STATE.cache.warm if STATE.cache is not None else None,  # preload its scores
        )
        self.watcher.start(WATCH_INTERVAL_S)  # loads the champion now, then follows promotions, rollouts, rollbacks
        if STATE.scorer is None:
            log.error("keel serving NOT READY (will retry): %s", STATE.error)

    def _rollout_parts(self, spec: Spec, store: BundleStore) -> None:
        """Request log, shadow runner and immediate triggers; each optional, none can stop scoring."""
        if REQUEST_LOG:
            directory = os.environ.get("KEEL_REQUEST_LOG_DIR") or store.keel_dir / spec.name / "requests"
            STATE.request_log = RequestLog(Path(directory), flush_interval_s=REQUEST_LOG_FLUSH_S).start()
            STATE.paths["request_log"] = str(directory)
        STATE.shadow = ShadowRunner(lambda *outcome: report_shadow(STATE, *outcome), maxsize=SHADOW_QUEUE)
        if spec.rollout is not None:
            immediate = spec.rollout.rollback.immediate
            STATE.triggers = ImmediateTriggers(
                immediate.error_rate, immediate.p99_latency_ms, min_samples=TRIGGER_MIN_SAMPLES
            )

    def __is_ready__(self) -> bool:
        return self.state.scorer is not None

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        """Flush the request log so the last second of requests is not lost on a clean stop."""
        for part in (getattr(self, "watcher", None), STATE.shadow, STATE.request_log):
            if part is not None:
                part.stop()


ChurnService.add_asgi_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
ChurnService.add_asgi_middleware(PathGuard)
if sim_faults_enabled():  # KEEL_SIMULATION=1 only: `keel simulate` injects faults per request (ADR 0016)
    ChurnService.add_asgi_middleware(SimFaultMiddleware)
# last: Keel's routes skip BentoML's inner layers, counted by RouteMetrics (ADR 0031)
ChurnService.add_asgi_middleware(DirectRoutes, target=RouteMetrics(app))

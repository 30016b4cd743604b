"""Keel's own HTTP request metrics and the /metrics exposition (issue 16.6, ADR 0031).

Why Keel counts its routes instead of BentoML: BentoML's request-metrics middleware labels
each series with the raw path, so every `/cached_score/<id>` a caller asks for became a new
series in every worker's metric files (unbounded cardinality), and it made five multiprocess
metric writes and four `labels()` lookups per request (~0.03 ms of a ~0.5 ms `/score`). Here
each series is labelled with the route *template* (`/cached_score/{entity_id}`), children are
bound once, and a request costs one histogram observation and one counter increment.
BentoML's metrics are switched off (`metrics.enabled: false`, public service config), so Keel
serves `/metrics` itself: every worker's series (BentoML keeps PROMETHEUS_MULTIPROC_DIR set),
Keel's scoring, cache, request-log and shadow counters included.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.routing import BaseRoute

from pipeline.serving.direct import route_templates

Scope = dict[str, Any]

REQUESTS = Counter(
    "keel_http_requests", "HTTP requests to Keel's routes, by route template and status code", ["route", "code"]
)
DURATION = Histogram(
    "keel_http_request_duration_seconds",
    "Time from the request reaching Keel's app to its last response byte, by route template",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
UNMATCHED = "unmatched"  # any path that is not one of Keel's routes: one series, whatever the path


class RouteMetrics:
    """Wraps Keel's FastAPI app: counts each HTTP request by route template and status, and times it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.exact, self.prefixes = route_templates(app.routes)
        self._durations: dict[str, Any] = {}
        self._counts: dict[tuple[str, int], Any] = {}

    @property
    def routes(self) -> list[BaseRoute]:
        """The wrapped app's routes (DirectRoutes reads them to know which paths are Keel's)."""
        return self.app.routes

    def route_of(self, path: str) -> str:
        """The template a path matches, or UNMATCHED: labels never carry a caller's id."""
        template = self.exact.get(path)
        if template is not None:
            return template
        for prefix, template in self.prefixes:
            if path.startswith(prefix):
                return template
        return UNMATCHED

    def record(self, route: str, code: int, seconds: float) -> None:
        """One observation and one increment, on children bound the first time a (route, code) is seen."""
        duration = self._durations.get(route)
        if duration is None:
            duration = self._durations[route] = DURATION.labels(route)
        count = self._counts.get((route, code))
        if count is None:
            count = self._counts[route, code] = REQUESTS.labels(route, str(code))
        duration.observe(seconds)
        count.inc()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an app that raised before starting a response answered nothing: count it as 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.record(self.route_of(scope["path"]), status, time.perf_counter() - start)


def exposition() -> tuple[bytes, str]:
    """Prometheus text of every worker's series under `bentoml serve` (multiprocess files), else this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST

"""Where BentoML's per-request CPU goes: /score?explain=false through the worker's real ASGI stack, in-process.

Why in-process: on a shared 2-core box the HTTP bench's CPU-per-request figures swing by
+-0.1 ms run to run, as large as the layers being compared. Here one process builds BentoML's
own app for ChurnService (ServiceAppFactory, as the worker does) and drives it with ASGI
messages, no sockets: main-thread CPU per request is steady to ~0.02 ms. Each configuration
switches layers off at runtime (a middleware class's `__call__` becomes a pass-through; the
request log is detached) and the configurations alternate over several rounds, so drift hits
all of them alike. `bare` is Keel's FastAPI app over the same state with Keel's body cap, path
guard and route metrics, no BentoML. This is a measuring tool: the pass-throughs are never how Keel serves.

    PYTHONPATH=. python bench/profile_serving.py [--rounds 8] [--requests 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# `bentoml serve` always sets this, so every metric write in a worker goes to a shared file; so here
# (before prometheus_client is imported: it picks its value class at import).
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="keel-prom-"))

from tests.integration.serving_fixtures import SPEC_PATH, build_bundle  # noqa: E402

CONFIGS = ("service", "-metrics", "-otel", "-timeout", "-direct", "-reqlog", "-bentoml", "bare")
# -metrics: Keel's route metrics (BentoML's request-metrics middleware is off in the service, ADR 0031);
# -bentoml: the two BentoML layers left in front of Keel's routes.


def layer_classes() -> dict[str, list[type]]:
    """The middleware classes each switch turns into pass-throughs (BentoML's are private: measuring only)."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    from pipeline.serving.direct import DirectRoutes
    from pipeline.serving.route_metrics import RouteMetrics

    return {
        "metrics": [RouteMetrics],
        "otel": [OpenTelemetryMiddleware],
        "timeout": [TimeoutMiddleware],
        "direct": [DirectRoutes],  # off: requests take BentoML's context middleware and router again
        "bentoml": [OpenTelemetryMiddleware, TimeoutMiddleware],
    }


async def _pass_through(self: Any, scope: dict, receive: Any, send: Any) -> None:
    await self.app(scope, receive, send)


def _driver(body: bytes) -> Callable[[Any], Any]:
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(body)).encode()))

    async def one(app: Any) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST"}
        scope |= {"scheme": "http", "path": "/score", "raw_path": b"/score", "query_string": b"explain=false"}
        scope |= {"root_path": "", "headers": headers, "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 3000)}
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope | {"state": {}}, receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"HTTP {sent[0]['status']}: {sent[1:]}")

    return one


async def profile(body: bytes, rounds: int, requests: int) -> dict[str, list[float]]:
    from _bentoml_impl.server.app import ServiceAppFactory

    from pipeline.serving.app import build_app
    from pipeline.serving.limits import BodySizeLimit, PathGuard
    from pipeline.serving.service import STATE, ChurnService

    ChurnService.inject_config()
    service = ServiceAppFactory(ChurnService, is_main=True)()
    from pipeline.serving.route_metrics import RouteMetrics

    bare = BodySizeLimit(PathGuard(RouteMetrics(build_app(STATE))))
    classes = layer_classes()
    original = {cls: cls.__call__ for group in classes.values() for cls in group}
    one = _driver(body)
    timings: dict[str, list[float]] = {config: [] for config in CONFIGS}
    async with service.router.lifespan_context(service):
        request_log = STATE.request_log
        for _ in range(300):
            await one(service)
        for _ in range(rounds):
            for config in CONFIGS:
                for cls, call in original.items():
                    cls.__call__ = call
                for cls in classes.get(config[1:], []):
                    cls.__call__ = _pass_through
                STATE.request_log = None if config == "-reqlog" else request_log
                app = bare if config == "bare" else service
                start = time.thread_time()
                for _ in range(requests):
                    await one(app)
                timings[config].append((time.thread_time() - start) * 1e3 / requests)
        for cls, call in original.items():
            cls.__call__ = call
        STATE.request_log = request_log
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=1000, help="per configuration and round")
    parser.add_argument("--rows", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keel-profile-") as tmp:
        built = build_bundle(Path(tmp) / "home", rows=args.rows)
        os.environ.update(BENTOML_HOME=str(built.home), KEEL_SPEC=str(SPEC_PATH), KEEL_MAX_CONCURRENCY="128")
        import uvloop

        timings = uvloop.run(profile(json.dumps(built.sample[0]).encode(), args.rounds, args.requests))
    base = statistics.median(timings["service"])
    print(f"/score?explain=false, in-process, main-thread CPU ms/request, median of {args.rounds} rounds")
    for config, values in timings.items():
        median = statistics.median(values)
        print(f"{config:<10} {median:6.3f}  (saves {base - median:+.3f}; range {min(values):.3f}-{max(values):.3f})")


if __name__ == "__main__":
    main()

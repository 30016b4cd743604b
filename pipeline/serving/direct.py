"""DirectRoutes: Keel's own routes go straight from Keel's middleware to Keel's FastAPI app.

Why (issue 16.6, ADR 0031): BentoML mounts the app behind its per-request `ContextMiddleware`
(a Starlette `Request`, two context variables and a header copy, for `bentoml.context`, which
Keel's routes never read) and its own Starlette app (error middleware, a router that tries
every system route before the mount). Measured in-process with the worker's real stack, those
layers cost ~0.08 ms of the ~0.5 ms a `/score?explain=false` request costs. This middleware is
added with BentoML's public `add_asgi_middleware`, so it runs after BentoML's tracing, timeout
and concurrency limit and after Keel's body cap and path guard, and only skips what lies
between it and the mount. Everything else (/livez, /readyz, /metrics, /docs.json, BentoML's
UI) takes BentoML's normal path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute, Route

Scope = dict[str, Any]


def route_templates(routes: Iterable[BaseRoute]) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    """Exact paths, and (prefix, template) pairs for templated ones (`/cached_score/`, `/cached_score/{entity_id}`)."""
    exact: dict[str, str] = {}
    prefixes: list[tuple[str, str]] = []
    for route in routes:
        if not isinstance(route, Route):
            continue
        if "{" in route.path:
            prefixes.append((route.path.split("{", 1)[0], route.path))
        else:
            exact[route.path] = route.path
    return exact, tuple(prefixes)


def route_matchers(routes: Iterable[BaseRoute]) -> tuple[frozenset[str], tuple[str, ...]]:
    """Exact paths, and prefixes for templated ones (`/cached_score/{entity_id}` -> `/cached_score/`)."""
    exact, templated = route_templates(routes)
    return frozenset(exact), tuple(prefix for prefix, _ in templated)


class DirectRoutes:
    """Hands an HTTP request for one of `target`'s routes to `target`; anything else goes on to BentoML."""

    def __init__(self, app: Any, target: Any) -> None:
        self.app = app
        self.target = target
        self.exact, self.prefixes = route_matchers(target.routes)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path in self.exact or (self.prefixes and path.startswith(self.prefixes)):
                await self.target(scope, receive, send)
                return
        await self.app(scope, receive, send)

"""DirectRoutes (ADR 0031): Keel's routes reach Keel's app directly, everything else goes on to BentoML's app."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from pipeline.serving.app import ServingState, build_app
from pipeline.serving.direct import DirectRoutes, route_matchers


async def _bentoml_side(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"downstream {request.url.path}")


def _client() -> TestClient:
    downstream = Starlette(routes=[Route("/{path:path}", _bentoml_side, methods=["GET", "POST"])])
    state = ServingState()
    state.error = "no champion"
    return TestClient(DirectRoutes(downstream, target=build_app(state)))


def test_keel_routes_are_answered_by_keel_and_the_rest_by_the_app_behind() -> None:
    client = _client()
    score = client.post("/score", json={"a": 1})
    assert score.status_code == 503 and "no champion" in score.json()["error"]  # Keel's JSON, not the downstream
    assert client.get("/cached_score/abc").headers["content-type"].startswith("application/json")
    assert client.get("/status").json()["ready"] is False
    assert "/score" in client.get("/docs.json").json()["paths"]  # Keel's document, not BentoML's generic one
    assert "keel_http_requests_total" in client.get("/metrics").text  # Keel serves /metrics (route_metrics.py)
    for path in ("/livez", "/readyz", "/docs.json/x", "/scorecard"):
        answer = client.get(path)
        assert answer.text == f"downstream {path}", path


def test_route_matchers_split_exact_paths_from_templated_prefixes() -> None:
    exact, prefixes = route_matchers(build_app(ServingState()).routes)
    assert {"/score", "/score_batch", "/status", "/openapi.json", "/docs.json", "/docs", "/metrics"} <= exact
    assert prefixes == ("/cached_score/",)

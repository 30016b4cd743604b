"""RouteMetrics (ADR 0031): Keel's routes counted by template and status, never by a caller's id."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from pipeline.serving.app import ServingState, build_app
from pipeline.serving.route_metrics import UNMATCHED, RouteMetrics, exposition


def _count(route: str, code: str) -> float:
    return REGISTRY.get_sample_value("keel_http_requests_total", {"route": route, "code": code}) or 0.0


def _observed(route: str) -> float:
    return REGISTRY.get_sample_value("keel_http_request_duration_seconds_count", {"route": route}) or 0.0


def _client() -> tuple[RouteMetrics, TestClient]:
    state = ServingState()
    state.error = "no champion"
    metered = RouteMetrics(build_app(state))
    return metered, TestClient(metered, raise_server_exceptions=False)


def test_ids_in_the_path_share_the_template_series_and_codes_are_counted_apart() -> None:
    _, client = _client()
    template = "/cached_score/{entity_id}"
    before_503, before_seen = _count(template, "503"), _observed(template)
    for entity in ("sub-1", "sub-2", "sub-3"):
        assert client.get(f"/cached_score/{entity}").status_code == 503  # no champion: Keel's 503
    assert _count(template, "503") == before_503 + 3
    assert _observed(template) == before_seen + 3
    text = exposition()[0].decode()
    assert "sub-1" not in text and 'route="/cached_score/{entity_id}"' in text
    before_status = _count("/status", "503")
    client.get("/status")
    assert _count("/status", "503") == before_status + 1


def test_paths_that_are_not_routes_fall_into_one_series() -> None:
    metered, client = _client()
    before = _count(UNMATCHED, "404")
    for path in ("/nope", "/etc/passwd", "/score/extra"):
        assert client.get(path).status_code == 404
    assert _count(UNMATCHED, "404") == before + 3
    assert metered.route_of("/score") == "/score" and metered.route_of("/cached_score/x") == "/cached_score/{entity_id}"


def test_an_app_that_raises_before_answering_counts_as_500() -> None:
    async def broken(scope, receive, send) -> None:
        raise RuntimeError("boom")

    broken.routes = []  # type: ignore[attr-defined]
    client = TestClient(RouteMetrics(broken), raise_server_exceptions=False)
    before = _count(UNMATCHED, "500")
    assert client.get("/anything").status_code == 500
    assert _count(UNMATCHED, "500") == before + 1


def test_metrics_route_serves_the_prometheus_text() -> None:
    _, client = _client()
    client.get("/status")
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert re.search(r'^keel_http_requests_total\{code="503",route="/status"\} \d', answer.text, re.M)

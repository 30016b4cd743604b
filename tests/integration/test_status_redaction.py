"""/status and 503 answers show no absolute path to a caller without the admin token (issue 15), over real HTTP.

The service serves a store with no champion yet, so its reason ("no champion for ... in <store home>")
names the store home: the most common way a path reached an anonymous caller.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.serving.admin import redact
from tests.integration.serving_fixtures import SPEC_PATH, running_service

TOKEN = "test-admin-token-0123456789"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    base = tmp_path_factory.mktemp("status-redaction")
    home, requests = base / "home", base / "requests"
    home.mkdir()
    env = {"KEEL_ADMIN_TOKEN": TOKEN, "KEEL_REQUEST_LOG_DIR": str(requests)}
    with running_service(home, env, wait_ready=False) as (url, _):
        yield url, home, requests


def _absolute_paths(text: str, *roots: Path) -> list[str]:
    found = [str(r) for r in roots if str(r) in text or str(r.resolve()) in text]
    return found + [p for p in ("/tmp/", str(Path.home()), str(SPEC_PATH.parent)) if p in text]


def test_status_without_the_token_names_no_path(service) -> None:
    url, home, requests = service
    for headers in ({}, {"authorization": "Bearer wrong-token-0123456789"}, {"authorization": TOKEN}):
        r = httpx.get(f"{url}/status", headers=headers, timeout=5)
        assert r.status_code == 503, r.text  # nothing to serve yet
        body = r.json()
        assert "no champion" in body["error"] and "<store>" in body["error"], body
        assert not _absolute_paths(r.text, home, requests), (headers, r.text)
        assert "paths" not in body


def test_status_with_the_admin_token_shows_the_paths(service) -> None:
    url, home, requests = service
    r = httpx.get(f"{url}/status", headers={"authorization": f"Bearer {TOKEN}"}, timeout=5)
    body = r.json()
    assert str(home) in body["error"], body  # the admin sees the real reason
    assert body["paths"]["store"] == str(home) and body["paths"]["request_log"] == str(requests), body
    assert Path(body["paths"]["spec"]).resolve() == SPEC_PATH.resolve(), body


def test_503_answers_name_no_path(service) -> None:
    url, home, requests = service
    record = json.dumps({"tenure_months": 3}).encode()
    for method, path in (("POST", "/score"), ("GET", "/cached_score/sub-1")):
        r = httpx.request(method, f"{url}{path}", content=record, headers={"content-type": "application/json"})
        assert r.status_code == 503, (path, r.text)
        assert "<store>" in r.json()["error"] and not _absolute_paths(r.text, home, requests), (path, r.text)


def test_redact_names_known_paths_and_hides_the_rest() -> None:
    known = {"store": "/srv/keel/bentoml", "request_log": "/srv/keel/bentoml/keel/churn/requests", "spec": "x.yaml"}
    status = {
        "error": "cannot load spec x.yaml: no file /srv/keel/conf/contract/c.yaml",
        "score_cache": {"last_error": "DamagedParquet: /srv/keel/bentoml/keel/churn/scores/v1.parquet: damaged"},
        "request_log": ["/srv/keel/bentoml/keel/churn/requests/part-1.parquet", 3],
        "rollout": {"challenger": "churn:v2", "url": "redis://10.0.0.1:6379/0"},
        "routes": "POST /recommend, ratio 1/2",
    }
    out = redact(status, known)
    assert out["error"] == "cannot load spec <spec>: no file <path>"
    assert out["score_cache"]["last_error"] == "DamagedParquet: <store>/keel/churn/scores/v1.parquet: damaged"
    assert out["request_log"] == ["<request_log>/part-1.parquet", 3]
    assert out["rollout"] == status["rollout"] and out["routes"] == status["routes"]
    assert redact("home ~/bentoml/keel and /etc/keel/x") == "home <path> and <path>"

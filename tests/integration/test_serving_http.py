"""The BentoML churn service over real HTTP on loopback: scoring, bad input, limits, caches, readiness."""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from pathlib import Path

import httpx
import pandas as pd
import pytest

from pipeline.data.derived import add_derived
from pipeline.registry import BundleStore
from pipeline.registry.tabular import load_tabular_bundle
from pipeline.serving.cache import FileScoreCache, RedisScoreCache
from tests.integration.serving_fixtures import BuiltBundle, build_bundle, running_service

REDIS_URL = "redis://127.0.0.1:6379/12"  # a database of its own: the cache test prunes its namespaces


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltBundle:
    return build_bundle(tmp_path_factory.mktemp("serving") / "home")


@pytest.fixture(scope="module")
def file_cache(built: BuiltBundle) -> Path:
    """The champion's batch scores where `keel run` writes them: the service finds them with no env (ADR 0018)."""
    cache = FileScoreCache(BundleStore(built.home).keel_dir, built.name)
    cache.put(built.tag, [{"entity_id": "sub-1", "probability": 0.42, "reasons": ["a"]}])
    return cache.path(built.tag)


@pytest.fixture(scope="module")
def server(built: BuiltBundle, file_cache: Path):
    env = {"KEEL_MAX_BATCH": "20"}
    with running_service(built.home, env) as (url, _), httpx.Client(base_url=url, timeout=10) as client:
        yield client


def test_score_matches_the_model_and_names_reasons(server: httpx.Client, built: BuiltBundle) -> None:
    bundle = load_tabular_bundle(BundleStore(built.home).get(built.tag))
    frame = add_derived(pd.DataFrame(built.sample[:5]), bundle.derived)
    expected = bundle.model.predict_proba(frame[bundle.model.features])
    features = set(bundle.model.features)
    for record, want in zip(built.sample[:5], expected, strict=True):
        r = server.post("/score", json=record)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["probability"] == pytest.approx(float(want), abs=1e-12)
        assert body["flagged"] == (body["probability"] >= bundle.threshold)
        assert body["bundle"] == built.tag
        assert 0 < len(body["reasons"]) <= 3
        assert all(reason.split(" ")[0] in features for reason in body["reasons"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"drop": "plan_type"}, "plan_type"),
        ({"set": ("surprise", 1)}, "surprise"),
        ({"set": ("tenure_months", "ten")}, "tenure_months"),
        ({"set": ("plan_type", 3)}, "plan_type"),
        ({"set": ("plan_type", "gold")}, "plan_type"),
        ({"set": ("sessions_last_30d", 2.5)}, "sessions_last_30d"),
        ({"set": ("monthly_charges", -1.0)}, "monthly_charges"),
        ({"set": ("tenure_months", 10_000)}, "tenure_months"),
        ({"set": ("avg_session_minutes", None)}, "avg_session_minutes"),
        ({"raw": "NaN"}, "monthly_charges"),
        ({"raw": "Infinity"}, "monthly_charges"),
    ],
)
def test_bad_fields_are_4xx_naming_the_field(
    server: httpx.Client, built: BuiltBundle, change: dict, field: str
) -> None:
    record = dict(built.sample[0])
    if "drop" in change:
        record.pop(change["drop"])
    if "set" in change:
        record[change["set"][0]] = change["set"][1]
    if "raw" in change:
        record["monthly_charges"] = 12345.5
        body = json.dumps(record).replace("12345.5", change["raw"])
        r = server.post("/score", content=body, headers={"content-type": "application/json"})
    else:
        r = server.post("/score", json=record)
    assert 400 <= r.status_code < 500, r.text
    assert any(p.startswith(field) for p in r.json()["problems"]), r.text
    assert "Traceback" not in r.text


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"[]", "application/json"),
        (b'{"a": 1}', "text/plain"),
        (b"\x80\x04K\x01.", "application/vnd.bentoml+pickle"),
    ],
)
def test_malformed_or_wrong_type_is_4xx(server: httpx.Client, body: bytes, content_type: str) -> None:
    r = server.post("/score", content=body, headers={"content-type": content_type})
    assert 400 <= r.status_code < 500, r.text
    assert "Traceback" not in r.text


def test_ten_megabyte_body_is_413(server: httpx.Client) -> None:
    r = server.post("/score", content=b" " * (10 << 20), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_score_batch_and_its_cap(server: httpx.Client, built: BuiltBundle) -> None:
    r = server.post("/score_batch", json={"records": built.sample[:10]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    single = server.post("/score", json=built.sample[3]).json()
    assert len(results) == 10 and results[3] == {**single, "index": 3}  # a batch answer names its record
    over = server.post("/score_batch", json={"records": built.sample[:21]})
    assert over.status_code == 413 and "cap" in over.text
    bad = server.post("/score_batch", json={"records": [built.sample[0], {**built.sample[1], "plan_type": "x"}]})
    assert bad.status_code == 422 and "records[1].plan_type" in bad.text


def test_cached_score_from_file(server: httpx.Client, built: BuiltBundle) -> None:
    r = server.get("/cached_score/sub-1")
    assert r.status_code == 200 and r.json() == {
        "entity_id": "sub-1",
        "probability": 0.42,
        "reasons": ["a"],
        "bundle": built.tag,
    }
    assert r.headers["x-keel-bundle"] == built.tag
    assert server.get("/cached_score/nobody").status_code == 404


def test_ready_and_metrics(server: httpx.Client, built: BuiltBundle) -> None:
    assert server.get("/readyz").status_code == 200
    server.post("/score", json=built.sample[0])
    for entity in ("metrics-probe-1", "metrics-probe-2"):
        server.get(f"/cached_score/{entity}")
    metrics = server.get("/metrics").text
    assert "keel_score_probability_count" in metrics
    # Keel's request metrics, by route template: a caller's ids never become series (ADR 0031)
    assert re.search(r'^keel_http_requests_total\{code="200",route="/score"\} [1-9]', metrics, re.M), metrics[-3000:]
    assert 'route="/cached_score/{entity_id}"' in metrics and "metrics-probe" not in metrics
    assert "keel_http_request_duration_seconds_bucket" in metrics
    assert "bentoml_service_request_total" not in metrics  # BentoML's per-path series are off


def test_cached_score_from_redis(built: BuiltBundle) -> None:
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    entity = f"test-{uuid.uuid4().hex}"
    cache = RedisScoreCache(REDIS_URL, built.name)
    cache.put(built.tag, [{"entity_id": entity, "probability": 0.7, "reasons": ["x high"]}])  # this bundle's own
    try:
        with running_service(built.home, {"KEEL_REDIS_URL": REDIS_URL}) as (url, _):
            r = httpx.get(f"{url}/cached_score/{entity}")
            assert r.status_code == 200 and r.json()["probability"] == 0.7 and r.json()["bundle"] == built.tag
            assert httpx.get(f"{url}/cached_score/{entity}-absent").status_code == 404
    finally:
        cache.prune(set())


def test_no_champion_is_not_ready(tmp_path: Path) -> None:
    home = tmp_path / "empty-home"
    home.mkdir()
    with running_service(home, wait_ready=False) as (url, proc):
        assert httpx.get(f"{url}/readyz").status_code == 503
        r = httpx.post(f"{url}/score", json={"a": 1})
        assert r.status_code == 503 and "no champion" in r.json()["error"]
        assert "NOT READY" in Path(proc.log_path).read_text()


def test_tampered_bundle_is_refused(built: BuiltBundle, tmp_path: Path) -> None:
    home = tmp_path / "tampered-home"
    shutil.copytree(built.home, home)
    name, version = built.tag.split(":")
    contract = home / "models" / name / version / "contract.json"
    contract.write_text(contract.read_text().replace('"min_rows": 1', '"min_rows": 0'))  # same size, new bytes
    with running_service(home, wait_ready=False) as (url, proc):
        assert httpx.get(f"{url}/readyz").status_code == 503
        r = httpx.post(f"{url}/score", json=built.sample[0])
        assert r.status_code == 503 and "refused at load" in r.json()["error"]
        assert "IntegrityError" in Path(proc.log_path).read_text()


def _wait_status(url: str, done, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        body = httpx.get(f"{url}/status").json()
        if done(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_follows_promotions_and_keeps_serving_through_a_damaged_alias_record(tmp_path: Path) -> None:
    home = tmp_path / "live-home"
    home.mkdir()
    with running_service(home, {"KEEL_WATCH_INTERVAL_S": "0.1"}, wait_ready=False) as (url, _):
        assert httpx.get(f"{url}/readyz").status_code == 503
        first = build_bundle(home)  # trains, registers and promotes while the service runs
        status = _wait_status(url, lambda b: b["bundle"] == first.tag)
        assert status["ready"] and status["error"] is None, status
        assert httpx.get(f"{url}/readyz").status_code == 200
        assert httpx.post(f"{url}/score", json=first.sample[0]).json()["bundle"] == first.tag

        record = home / "keel" / first.name / "aliases.json"
        good = record.read_bytes()
        record.write_text("{ not json")
        status = _wait_status(url, lambda b: b["reload_error"] is not None)
        assert "cannot read aliases" in status["reload_error"] and status["bundle"] == first.tag, status
        r = httpx.post(f"{url}/score", json=first.sample[0])
        assert r.status_code == 200 and r.json()["bundle"] == first.tag

        record.write_bytes(good)
        second = build_bundle(home)
        status = _wait_status(url, lambda b: b["bundle"] == second.tag)
        assert status["bundle"] == second.tag and status["reload_error"] is None, status
        assert httpx.post(f"{url}/score", json=first.sample[0]).json()["bundle"] == second.tag


def test_explain_false_skips_reasons_and_bad_values_are_400(server: httpx.Client, built: BuiltBundle) -> None:
    full = server.post("/score", json=built.sample[0]).json()
    bare = server.post("/score?explain=false", json=built.sample[0])
    assert bare.status_code == 200 and "reasons" not in bare.json()
    assert bare.json()["probability"] == pytest.approx(full["probability"], abs=1e-12)
    r = server.post("/score?explain=maybe", json=built.sample[0])
    assert r.status_code == 400 and "explain" in r.text


def test_status_names_the_served_bundle(server: httpx.Client, built: BuiltBundle) -> None:
    body = server.get("/status").json()
    assert body["ready"] and body["bundle"] == built.tag and body["reload_error"] is None

"""Request hardening over real HTTP (issues 15.2 and 15.7): bad text, deep JSON, chunked bodies, a Redis outage.

One real BentoML service on loopback whose score cache is a Redis that is not there at first
(a free port); the outage test then starts a real redis-server on that port and watches it recover.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.serving.request_log import read_request_log
from tests.integration.serving_fixtures import BuiltBundle, build_bundle, free_port, running_service

MAX_BODY = 64 * 1024
HANG_3S = ["DEBUG", "SLEEP", "3"]  # the test's own redis-server allows DEBUG (enable-debug-command local)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltBundle:
    return build_bundle(tmp_path_factory.mktemp("hardening") / "home", rows=2000)


@pytest.fixture(scope="module")
def redis_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def service(built: BuiltBundle, redis_port: int) -> Iterator[tuple[str, Path, Path]]:
    """(url, server log, request-log dir)."""
    requests = built.home.parent / "requests"
    env = {
        "KEEL_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "KEEL_MAX_BODY_BYTES": str(MAX_BODY),
        "KEEL_REQUEST_LOG_DIR": str(requests),
        "KEEL_REQUEST_LOG_FLUSH_S": "0.2",
    }
    with running_service(built.home, env) as (url, proc):
        yield url, Path(proc.log_path), requests


def _post(url: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    headers = {"content-type": "application/json", **(headers or {})}
    return httpx.post(f"{url}{path}", content=body, headers=headers, timeout=10)


def test_lone_surrogates_are_422_and_the_request_log_keeps_every_row(service, built: BuiltBundle) -> None:
    url, _, requests = service
    record = {**built.sample[0], "subscriber_id": "SURROGATE"}
    text = json.dumps(record)
    bad_value = text.replace('"SURROGATE"', '"\\udc80"').encode()
    bad_key = text.replace('"subscriber_id": "SURROGATE"', '"\\udc80x": 1').encode()
    records = [json.dumps({**built.sample[i], "subscriber_id": f"ok-{i}"}).encode() for i in range(5)]
    good = [_post(url, "/score", body) for body in records]
    assert all(r.status_code == 200 for r in good), [r.text for r in good]
    for body in (bad_value, bad_key):
        r = _post(url, "/score", body, headers={"x-request-id": "bad-text"})
        assert r.status_code == 422 and "not valid Unicode" in r.text, r.text
    batch = b'{"records": [' + bad_value + b"]}"
    r = _post(url, "/score_batch", batch)
    assert r.status_code == 422 and "records[0].subscriber_id" in r.text, r.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        counts = httpx.get(f"{url}/status").json()["request_log"]
        if counts["buffered"] == 0 and counts["written"] >= 8:
            break
        time.sleep(0.1)
    assert counts["dropped"] == 0 and counts["write_errors"] == 0, counts
    logged = read_request_log(requests)
    assert {f"ok-{i}" for i in range(5)} <= set(logged["entity_id"].dropna()), logged
    assert (logged["request_id"] == "bad-text").sum() == 2  # the refusals are logged too


@pytest.mark.parametrize("path", ["/score", "/score_batch"])
def test_thousand_deep_json_is_400(service, path: str) -> None:
    url = service[0]
    for depth in (1000, 20_000):
        r = _post(url, path, b"[" * depth + b"]" * depth)
        assert r.status_code == 400, (depth, r.status_code, r.text)
        assert "nested too deeply" in r.text or "malformed" in r.text


def test_oversized_chunked_body_is_413(service, built: BuiltBundle) -> None:
    url = service[0]

    def chunks() -> Iterator[bytes]:
        yield b'{"records": ['
        for _ in range(MAX_BODY // 1024 + 2):
            yield b" " * 1024
        yield b"]}"

    for path in ("/score", "/score_batch"):
        r = httpx.post(f"{url}{path}", content=chunks(), headers={"content-type": "application/json"}, timeout=10)
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert r.status_code == 413, (path, r.status_code, r.text)
    body = iter([json.dumps(built.sample[0]).encode()])
    small = httpx.post(f"{url}/score", content=body, headers={"content-type": "application/json"})
    assert small.status_code == 200, small.text  # a chunked body under the cap is served


@contextlib.contextmanager
def _redis_server(port: int, workdir: Path) -> Iterator[None]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("needs redis-server installed (apt-get install redis-server)")
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    cmd += ["--enable-debug-command", "local"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_redis_outage_logs_once_per_state_change_and_counts(service, redis_port: int, tmp_path: Path) -> None:
    url, server_log, _ = service

    def lookups(n: int) -> None:
        for _ in range(n):
            r = httpx.get(f"{url}/cached_score/sub-1", timeout=5)
            assert r.status_code == 503 and r.json()["error"] == "score cache unavailable", r.text

    lookups(1)
    tracebacks = server_log.read_text(errors="replace").count("Traceback")
    assert tracebacks >= 1  # the first failure is logged in full (a chained traceback)
    lookups(24)
    cache = httpx.get(f"{url}/status").json()["score_cache"]
    assert cache["kind"] == "redis" and cache["up"] is False and cache["errors"] >= 25, cache
    metrics = httpx.get(f"{url}/metrics").text
    counted = re.search(r"^keel_score_cache_errors_total(?:\{[^}]*\})? (\S+)$", metrics, re.M)
    assert counted and float(counted.group(1)) >= 25, metrics[-2000:]
    text = server_log.read_text(errors="replace")
    assert text.count("Traceback") == tracebacks, f"{text.count('Traceback')} tracebacks after 25 failed lookups"
    assert text.count("score cache DOWN") == 1, text[-3000:]
    with _redis_server(redis_port, tmp_path):
        deadline = time.monotonic() + 5  # while down, Redis is probed at most every 0.5 s
        while (r := httpx.get(f"{url}/cached_score/sub-1", timeout=5)).status_code == 503:
            assert time.monotonic() < deadline, "the cache never came back up"
            time.sleep(0.05)
        assert r.status_code == 404, r.text  # reachable again; this champion wrote no list there
        cache = httpx.get(f"{url}/status").json()["score_cache"]
        assert cache["up"] is True and cache["state_changes"] == 2, cache
        up_text = server_log.read_text(errors="replace")
        assert up_text.count("score cache UP again") == 1 and up_text.count("Traceback") == tracebacks, up_text[-3000:]
        hang = threading.Thread(target=subprocess.run, args=(["redis-cli", "-p", str(redis_port), *HANG_3S],))
        hang.start()  # a Redis that hangs instead of refusing: every lookup would wait the 0.5 s socket timeout
        time.sleep(0.2)
        waits = []
        while hang.is_alive():  # lookups through the 3 s hang, one every ~0.1 s unless one has to wait
            t0 = time.monotonic()
            assert httpx.get(f"{url}/cached_score/sub-1", timeout=5).status_code in (503, 404)
            waits.append(time.monotonic() - t0)
            time.sleep(0.1)
        slow = [w for w in waits if w >= 0.4]  # the probes: one per second while down (CacheHealth.PROBE_S)
        # >= 5: on a loaded 2-core box a lookup itself can take 0.3 s, so 3 s may hold only 6-7 of them
        assert len(waits) >= 5 and len(slow) <= len(waits) // 3, f"lookups during a hung Redis: {waits}"
    text = server_log.read_text(errors="replace")
    assert text.count("score cache DOWN") == 2, text[-3000:]  # the hang is a second outage: logged once


def test_control_characters_in_the_path_and_wrong_methods_answer_json(service) -> None:
    """Found by the schemathesis suite: `/cached_score/a%0Ab` was BentoML's text/plain 404 (its mount's pattern
    does not match a newline); now a JSON 400. A wrong method is a 405 in the same {"error"} shape."""
    url = service[0]
    for path in ("/cached_score/a%0Ab", "/cached_score/%00", "/score%7F"):
        r = httpx.get(f"{url}{path}", timeout=5)
        assert r.status_code == 400 and r.headers["content-type"] == "application/json", (path, r.text)
        assert "control characters" in r.json()["error"], r.text
    r = httpx.get(f"{url}/score", timeout=5)
    assert r.status_code == 405 and r.json()["error"] == "Method Not Allowed", r.text

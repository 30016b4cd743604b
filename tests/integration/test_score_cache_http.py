"""`/cached_score` over real HTTP: the cache `keel run` writes is served with no extra environment,
only in the current champion's namespace (issues 12.3 and 15.4, ADR 0018).

The lists are written by `write_score_cache`, the very function `keel run`'s batch step calls,
into a real BentoML home (file cache, the default runtime) or a real Redis (runtime.redis_url
from a runtime config on KEEL_CONF_PATH, as a deployment would select it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from pipeline.registry import BundleStore
from pipeline.registry.aliases import aliases, rollback
from pipeline.scoring.batch import write_score_cache
from pipeline.spec.load import load_spec
from tests.integration.serving_fixtures import SPEC_PATH, BuiltBundle, build_bundle, running_service

pytestmark = pytest.mark.slow
REDIS_URL = "redis://127.0.0.1:6379/13"  # a database of its own: these tests delete their namespaces


def _listing(ids: list[str], probability: float) -> pd.DataFrame:
    """A high-risk list as score_high_risk returns it (the spec's entity column, probability, reasons)."""
    return pd.DataFrame(
        {
            "subscriber_id": ids,
            "probability": [probability] * len(ids),
            "rank": range(1, len(ids) + 1),
            "reasons": [["tenure_months low"]] * len(ids),
        }
    )


def _write(built: BuiltBundle, ids: list[str], probability: float, conf: list[Path] | None = None) -> dict:
    spec = load_spec(SPEC_PATH, [], conf).spec
    return write_score_cache(spec, _listing(ids, probability), built.tag, BundleStore(built.home))


def _until(url: str, done: Callable[[dict], bool], timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        body = httpx.get(f"{url}/status").json()
        if done(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def _cached(url: str, entity: str) -> tuple[int, dict]:
    r = httpx.get(f"{url}/cached_score/{entity}", timeout=5)
    return r.status_code, r.json()


def _switches_namespace_with_the_champion(home: Path, conf: list[Path] | None, env: dict[str, str]) -> None:
    """first list {only-first, both}; second {both, only-second}; promotion, then rollback."""
    first = build_bundle(home, rows=2000)
    _write(first, ["only-first", "both"], 0.61, conf)
    with running_service(home, env) as (url, _):
        code, body = _cached(url, "only-first")
        assert code == 200, body
        assert body == {"entity_id": "only-first", "probability": 0.61, "reasons": ["tenure_months low"],
                        "bundle": first.tag}  # fmt: skip
        second = build_bundle(home, rows=2000, overrides=["model.params.num_leaves=7"])  # promoted at once
        status = _until(url, lambda b: b["bundle"] == second.tag)
        assert status["bundle"] == second.tag, status
        code, body = _cached(url, "only-first")  # second's list is not written yet: nothing, not first's
        assert code == 404 and second.tag in body["error"], (code, body)
        _write(second, ["both", "only-second"], 0.72, conf)
        code, body = _cached(url, "only-first")
        assert code == 404, f"a subscriber missing from the champion's list was answered: {body}"
        assert _cached(url, "both") == (200, {"entity_id": "both", "probability": 0.72,
                                             "reasons": ["tenure_months low"], "bundle": second.tag})  # fmt: skip
        assert _cached(url, "only-second")[1]["bundle"] == second.tag
        rollback(first.name, "test: back to the standby", store=BundleStore(home))
        assert _until(url, lambda b: b["bundle"] == first.tag)["bundle"] == first.tag
        code, body = _cached(url, "only-first")
        assert code == 200 and body["bundle"] == first.tag and body["probability"] == 0.61, body
        assert _cached(url, "only-second")[0] == 404


def test_file_cache_written_into_the_store_is_served_without_extra_env(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _switches_namespace_with_the_champion(home, None, {})
    scores = home / "keel" / "streamflow-churn" / "scores"
    assert sorted(p.name for p in scores.glob("*.parquet")), "keel run's cache file is in the store"


def test_file_cache_keeps_only_the_champion_and_the_standby(tmp_path: Path) -> None:
    home = tmp_path / "home"
    built = [build_bundle(home, rows=1500, overrides=[f"model.params.num_leaves={n}"]) for n in (7, 15, 31)]
    outputs = [_write(b, ["x"], 0.5) for b in built]  # each written right after its promotion, as keel run does
    names = {p.name for p in (home / "keel" / built[0].name / "scores").glob("*.parquet")}
    assert names == {Path(outputs[1]["score_cache"]).name, Path(outputs[2]["score_cache"]).name}, names
    assert aliases(built[0].name, store=BundleStore(home))["standby"] == built[1].tag


@pytest.fixture
def redis_conf(tmp_path: Path) -> Iterator[list[Path]]:
    """runtime.redis_url through a runtime config, and a clean database for this spec's scores."""
    import redis

    conf = tmp_path / "conf"
    (conf / "runtime").mkdir(parents=True)
    (conf / "runtime" / "local.yaml").write_text(f"runs_dir: runs\nredis_url: {REDIS_URL}\n")
    client = redis.Redis.from_url(REDIS_URL)

    def clean() -> None:
        keys = list(client.scan_iter("keel:streamflow-churn:score*"))
        if keys:
            client.delete(*keys)

    clean()
    yield [conf]
    clean()


@pytest.mark.redis
def test_redis_namespaces_follow_the_champion_and_old_ones_are_deleted(tmp_path: Path, redis_conf) -> None:
    import redis

    home = tmp_path / "home"
    _switches_namespace_with_the_champion(home, redis_conf, {"KEEL_CONF_PATH": str(redis_conf[0])})
    client = redis.Redis.from_url(REDIS_URL)
    store = BundleStore(home)
    champion = aliases("streamflow-churn", store=store)["champion"]
    third = build_bundle(home, rows=1500, overrides=["model.params.num_leaves=15"])  # champion, old one standby
    out = _write(third, ["z"], 0.3, redis_conf)
    assert out["score_cache_kind"] == "redis" and client.ttl(out["score_cache"]) > 86400
    namespaces = {k.decode() for k in client.scan_iter("keel:streamflow-churn:score:*")}
    kept = {f"keel:streamflow-churn:score:{t.split(':')[1]}" for t in (third.tag, champion)}
    assert namespaces == kept, namespaces  # the rolled-back bundle's namespace is gone

"""Serving latency: /score through the BentoML ChurnService vs the same routes on bare uvicorn.

Both servers run the same Scorer, the same FastAPI routes (pipeline.serving.app), the request
log and Keel's body cap and path guard, so the difference is exactly what BentoML adds (its ASGI
stack, middlewares, metrics, tracing, timeout, access log). The load generator is a minimal
keep-alive HTTP/1.1 client on asyncio streams: httpx costs ~1 ms of CPU per request, which on a
2-core box would be charged to whichever server it sits beside. Loopback only, a fixed number
of requests per level; prints, asserts nothing.

    PYTHONPATH=. python bench/bench_serving.py [--requests 600] [--levels 1,8,32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.serving_fixtures import SPEC_PATH, _stop, build_bundle, free_port, running_service  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"


def bare_app():
    """The serving routes on plain uvicorn with the Keel parts the service runs on every request.

    The request log (on by default in the service), the body cap, the path guard and the route
    metrics are Keel's, not BentoML's: the bare server runs them too, so the difference is what
    BentoML adds.
    """
    from pipeline.serving.app import ServingState, build_app
    from pipeline.serving.limits import BodySizeLimit, PathGuard
    from pipeline.serving.loader import load_champion
    from pipeline.serving.request_log import RequestLog
    from pipeline.serving.route_metrics import RouteMetrics

    state = ServingState()
    state.scorer = load_champion(os.environ["KEEL_SPEC"]).scorer
    state.error = None
    state.request_log = RequestLog(Path(os.environ["BENTOML_HOME"]) / "bare-requests").start()  # in the bench tmp
    return BodySizeLimit(PathGuard(RouteMetrics(build_app(state))))


async def _one_connection(port: int, request: bytes, count: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                raise RuntimeError(f"HTTP {status}")
    finally:
        writer.close()


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a server process and its children (workers), from /proc via psutil."""
    import psutil

    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def timed_load(pid: int, port: int, method: str, path: str, body: bytes, concurrency: int, total: int):
    """load() plus the server's CPU milliseconds per request: the framework's cost, whatever the noise."""
    load(port, method, path, body, 1, 20)  # warm-up, outside the CPU window
    before = cpu_seconds(pid)
    result = load(port, method, path, body, concurrency, total, warm=False)
    result["cpu_ms"] = (cpu_seconds(pid) - before) * 1e3 / max(1, (total // concurrency) * concurrency)
    return result


def load(
    port: int, method: str, path: str, body: bytes, concurrency: int, total: int, warm: bool = True
) -> dict[str, float]:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    request = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    latencies: list[float] = []
    per = max(1, total // concurrency)

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(_one_connection(port, request, per, latencies) for _ in range(concurrency)))
        return time.perf_counter() - start

    if warm:
        asyncio.run(_one_connection(port, request, 20, []))
    elapsed = asyncio.run(main())
    ms = np.array(latencies) * 1e3
    return {"rps": len(ms) / elapsed, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def _bare_server(home: Path, workers: int, extra: dict[str, str]):
    port = free_port()
    env = {**os.environ, "BENTOML_HOME": str(home), "KEEL_SPEC": str(SPEC_PATH), "PYTHONPATH": str(REPO), **extra}
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "bench.bench_serving:bare_app", "--port", str(port)]
    cmd += ["--workers", str(workers), "--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            load(port, "GET", "/cached_score/x", b"", 1, 1)
        except (OSError, RuntimeError):
            pass
        else:
            break
        time.sleep(0.3)
    return proc, port


CASES = (("/score", "with reasons"), ("/score?explain=false", "no reasons"))


def _measure(pid: int, port: int, body: bytes, levels: list[int], requests: int) -> dict[tuple[str, int], dict]:
    return {(path, c): timed_load(pid, port, "POST", path, body, c, requests) for path, _ in CASES for c in levels}


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=640)
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=3, help="alternating BentoML/bare rounds; medians are printed")
    parser.add_argument("--workers", type=int, default=1, help="server processes, the same for both")
    parser.add_argument("--threads", type=int, default=None, help="KEEL_SCORE_THREADS (0: score on the loop)")
    parser.add_argument("--rows", type=int, default=20000, help="training rows (the demo spec's size)")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    extra = {"KEEL_WORKERS": str(args.workers), "KEEL_MAX_CONCURRENCY": "128"}  # shed nothing while timing
    if args.threads is not None:
        extra["KEEL_SCORE_THREADS"] = str(args.threads)
    runs: dict[str, list[dict]] = {"bento": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
        built = build_bundle(Path(tmp) / "home", rows=args.rows)
        trees = _trees(built)
        body = json.dumps(built.sample[0]).encode()
        entity = f"bench-{uuid.uuid4().hex}"
        redis_ok = _seed_redis(built, entity)
        with running_service(built.home, {**extra, **({"KEEL_REDIS_URL": REDIS_URL} if redis_ok else {})}) as (
            url,
            proc,
        ):
            port = int(url.rsplit(":", 1)[1])
            bare_proc, bare_port = _bare_server(built.home, args.workers, extra)
            try:  # both up, rounds alternating: a noisy neighbour or a slow minute hits both alike
                for _ in range(args.rounds):
                    runs["bento"].append(_measure(proc.pid, port, body, levels, args.requests))
                    runs["bare"].append(_measure(bare_proc.pid, bare_port, body, levels, args.requests))
            finally:
                _stop(bare_proc)
            cached = {c: load(port, "GET", f"/cached_score/{entity}", b"", c, 2000) for c in (1, 8)} if redis_ok else {}
    print(
        f"/score, one record, {args.requests} requests/level, LightGBM {trees} trees (trained on {args.rows} rows "
        f"with early stopping), workers={args.workers}, score threads={extra.get('KEEL_SCORE_THREADS', 'cpu_count')}, "
        f"cpu_count={os.cpu_count()}, medians of {args.rounds} alternating rounds"
    )
    print(
        f"{'case':<13} {'conc':>4} | {'BentoML req/s':>13} {'p50':>6} {'p99':>6} {'cpu/req':>7} | "
        f"{'FastAPI req/s':>13} {'p50':>6} {'p99':>6} {'cpu/req':>7} | req/s ratio  cpu ratio"
    )
    for path, label in CASES:
        for c in levels:
            b = _median([run[(path, c)] for run in runs["bento"]])
            f = _median([run[(path, c)] for run in runs["bare"]])
            print(
                f"{label:<13} {c:>4} | {b['rps']:>13.0f} {b['p50']:>6.2f} {b['p99']:>6.2f} {b['cpu_ms']:>7.2f} | "
                f"{f['rps']:>13.0f} {f['p50']:>6.2f} {f['p99']:>6.2f} {f['cpu_ms']:>7.2f} | "
                f"{b['rps'] / f['rps']:>10.2f}x {b['cpu_ms'] / f['cpu_ms']:>8.2f}x"
            )
    print("(latencies in ms; cpu/req = server CPU ms per request, all processes; loopback, same machine)")
    for c, r in cached.items():
        print(f"/cached_score (Redis) conc {c}: {r['rps']:.0f} req/s, p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms")
    if not redis_ok:
        print("/cached_score: no Redis on 127.0.0.1:6379, skipped")


def _trees(built) -> int:
    from pipeline.registry import BundleStore
    from pipeline.registry.tabular import load_tabular_bundle

    model = load_tabular_bundle(BundleStore(built.home).get(built.tag)).model
    return int(model.booster.num_trees())


def _seed_redis(built, entity: str) -> bool:
    try:
        from pipeline.serving.cache import RedisScoreCache

        cache = RedisScoreCache(REDIS_URL, built.name)
        cache.put(built.tag, [{"entity_id": entity, "probability": 0.5, "reasons": ["r1", "r2", "r3"]}], keep=None)
        return True
    except Exception:
        return False


if __name__ == "__main__":
    main()

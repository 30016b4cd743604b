"""Rollout benchmarks against the real BentoML service: rollback under load, and the router's cost.

1. Rollback under load. Steady paced load (`--rate` req/s over `--conns` keep-alive connections,
   a different subscriber id per request) while a rollout holds the challenger at 50%; mid-run the
   rollout is rolled back (one atomic write of rollout.json). Reported: the time from the write
   until every later request is answered by the champion (all workers), failed requests (non-200
   or connection errors) and misrouted ones (the challenger answering a subscriber the router
   assigns to the champion, answering more than 100 ms after the write, or any third bundle).
   The same again after completion: the challenger is champion, the old champion the warm
   standby, and `keel models rollback` (aliases) swaps them back.
2. Router overhead: /score p50/p99 at a fixed concurrency with no rollout, in a 10% canary
   (routing on), in shadow at the spec's `shadow_share` (the challenger scores a copy of that
   share of subscribers' requests on its thread) and in shadow at share 1.0 (every request).

    PYTHONPATH=. python bench/bench_rollout.py [--workers 2] [--rate 200] [--requests 2000] [--backend redis]
    PYTHONPATH=. python bench/bench_rollout.py --quick   # 4k-row models, 600 requests, 3 rounds, 3 s runs

`--backend redis` keeps the rollout record in Redis (`runtime.rollout_state: redis` through a runtime
config on KEEL_CONF_PATH, keys keel:rollout:<name>* in `--redis-url`, deleted before and after).
Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_serving import cpu_seconds  # noqa: E402
from pipeline.rollout.drill import TARGET_S, http_request, paced  # noqa: E402
from tests.integration.serving_fixtures import SPEC_PATH, build_bundle, running_service  # noqa: E402


def _requests(sample: list[dict], count: int, offset: int = 0) -> list[tuple[str, bytes]]:
    out = []
    for i in range(count):
        entity = f"sub-{offset + i:07d}"
        out.append((entity, http_request("/score?explain=false", {**sample[i % len(sample)], "subscriber_id": entity})))
    return out


async def _paced(port: int, work: list[tuple[str, bytes]], conns: int, rate: float, action, at_s: float):
    """The drill's paced load (pipeline/rollout/drill.py) with one action `at_s` seconds in."""
    out, times = await paced("127.0.0.1", port, work, conns, rate, [(at_s, action)])
    return out, times[0]


def rollback_under_load(port, sample, conns, rate, seconds, action, old: str, new: str, assigned_old) -> dict:
    """`old` answers until `action` runs; afterwards only `new` may. assigned_old(entity): routed to `old` before."""
    count = int(rate * seconds)
    replies, (t0, t1) = asyncio.run(_paced(port, _requests(sample, count), conns, rate, action, seconds / 2))
    failed = sum(1 for r in replies if r.status != 200)
    third = sum(1 for r in replies if r.status == 200 and r.bundle not in (old, new))
    wrong_side = sum(1 for r in replies if r.bundle == old and not assigned_old(r.entity))
    late = [r for r in replies if r.bundle == old and r.sent >= t0]
    switch = max((r.sent - t0 for r in late), default=0.0)
    too_late = sum(1 for r in late if r.sent - t1 > TARGET_S)
    lat = np.array([r.received - r.sent for r in replies if r.status == 200]) * 1e3
    return {
        "requests": len(replies),
        "on_old_before": sum(1 for r in replies if r.bundle == old and r.sent < t0),
        "switch_ms": switch * 1e3,
        "write_ms": (t1 - t0) * 1e3,
        "failed": failed,
        "misrouted": third + wrong_side + too_late,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
    }


async def _closed(port: int, work: list[tuple[str, bytes]], conns: int) -> list[float]:
    latencies: list[float] = []

    async def one(shard):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _, request in shard:
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(x.split(b":", 1)[1]) for x in head.split(b"\r\n") if x.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t)
        writer.close()

    await asyncio.gather(*(one(work[c::conns]) for c in range(conns)))
    return latencies


def latency(pid: int, port: int, sample: list[dict], total: int, conns: int, rate: float) -> dict[str, float]:
    """Closed loop (as fast as the server answers) with the server's CPU per request, and paced at `rate`."""
    asyncio.run(_closed(port, _requests(sample, 100, offset=9_000_000), conns))  # warm-up
    before = cpu_seconds(pid)
    ms = np.array(asyncio.run(_closed(port, _requests(sample, total), conns))) * 1e3
    cpu_ms = (cpu_seconds(pid) - before) * 1e3 / total
    paced = paced_latency(port, sample, rate, total / rate, conns)
    return {
        "cpu_ms": cpu_ms,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "paced_p50": paced["p50"],
        "paced_p99": paced["p99"],
    }


def paced_latency(port: int, sample: list[dict], rate: float, seconds: float, conns: int) -> dict[str, float]:
    """p50/p99 at a steady request rate below saturation (what a caller sees on a healthy service)."""
    replies, _ = asyncio.run(_paced(port, _requests(sample, int(rate * seconds)), conns, rate, lambda: None, 0.0))
    ms = np.array([r.received - r.sent for r in replies if r.status == 200]) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.median([r[key] for r in runs])) for key in runs[0]}


def _shadowed_shares(store, name: str, rollout_ids: dict[str, list[str]]) -> dict[str, float]:
    """Shadow rows / answered requests per shadow case: checks that the share the bench claims is the one it ran."""
    from pipeline.rollout.outcomes import requests_dir
    from pipeline.serving.request_log import read_request_log

    time.sleep(2.5)  # the workers' request logs flush every second
    frame = read_request_log(requests_dir(store.keel_dir, name))
    out = {}
    for case in ("shadow", "shadow_all"):
        rows = frame[frame["rollout_id"].isin(rollout_ids[case])]
        shadow = rows["shadow"].fillna(False).astype(bool)
        out[case] = float(shadow.sum() / max(int((~shadow).sum()), 1))
    return out


def _wait_status(url: str, done, timeout_s: float = 30.0) -> dict:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        body = httpx.get(f"{url}/status", timeout=5).json()
        if done(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def _redis_state(url: str) -> None:
    """Select the Redis rollout backend for this process and the service it starts, as a deployment would."""
    conf = Path(tempfile.mkdtemp(prefix="keel-bench-conf-"))
    (conf / "runtime").mkdir()
    (conf / "runtime" / "local.yaml").write_text(f"runs_dir: runs\nredis_url: {url}\nrollout_state: redis\n")
    os.environ["KEEL_CONF_PATH"] = str(conf)


def _clear_redis_state(url: str, name: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"keel:rollout:{name}*"))
    if keys:
        client.delete(*keys)


def main() -> None:
    from pipeline.registry import BundleStore
    from pipeline.registry.aliases import rollback as alias_rollback
    from pipeline.rollout import advance, rollback, start
    from pipeline.serving.router import assign
    from pipeline.spec.load import load_spec

    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second during the rollback runs")
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each rollback run")
    parser.add_argument("--requests", type=int, default=2000, help="requests per latency case")
    parser.add_argument("--latency-conns", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the latency cases (median)")
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--backend", choices=("file", "redis"), default="file", help="where the rollout record lives")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="--backend redis: the server")
    parser.add_argument("--quick", action="store_true", help="small: 4k-row models, 600 requests, 3 s runs")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.requests, args.seconds, args.rounds = 4000, 600, 3.0, max(3, min(args.rounds, 3))
    if args.backend == "redis":
        _redis_state(args.redis_url)
    spec = load_spec(SPEC_PATH).spec
    share = next((s.shadow_share for s in spec.rollout.stages if s.traffic <= 0), 1.0)
    # the same plan with every request shadowed: the baseline the configured share is compared with
    shadow_all = spec.rollout.model_copy(
        update={"stages": [s.model_copy(update={"shadow_share": 1.0}) for s in spec.rollout.stages]}
    )
    env = {"KEEL_WORKERS": str(args.workers), "KEEL_MAX_CONCURRENCY": "256", "KEEL_TRIGGER_MIN_SAMPLES": "1000000"}
    with tempfile.TemporaryDirectory(prefix="keel-bench-rollout-") as tmp:
        home = Path(tmp) / "home"
        champion = build_bundle(home, rows=args.rows)
        challenger = build_bundle(home, rows=args.rows, champion=False, overrides=["model.params.num_leaves=15"]).tag
        store, name, sample = BundleStore(home), champion.name, champion.sample
        from pipeline.rollout.backends import configure_backend

        configure_backend(spec, store)  # the file (default) or Redis, as the spec's runtime.rollout_state says
        if args.backend == "redis":
            _clear_redis_state(args.redis_url, name)
        with running_service(home, env) as (url, proc):
            port = int(url.rsplit(":", 1)[1])

            def wait(done) -> None:
                _wait_status(url, done)
                time.sleep(0.2)  # /status answered from one worker: give the others a few watch ticks

            cases = ("off", "shadow", "shadow_all", "canary")
            rounds: dict[str, list[dict[str, float]]] = {case: [] for case in cases}
            rollout_ids: dict[str, list[str]] = {case: [] for case in cases}
            measure = lambda: latency(proc.pid, port, sample, args.requests, args.latency_conns, args.rate)  # noqa: E731
            for n in range(args.rounds):  # interleaved, order rotated: drift in the machine's load hits every case
                for case in cases[n % len(cases) :] + cases[: n % len(cases)]:
                    if case == "off":
                        rounds["off"].append(measure())
                        continue
                    plan = shadow_all if case == "shadow_all" else spec.rollout
                    rollout_ids[case].append(start(name, challenger, plan, "bench", store=store).rollout_id)
                    wait(lambda s: (s["rollout"] or {}).get("shadow"))
                    if case == "canary":
                        advance(name, store=store)
                        wait(lambda s: (s["rollout"] or {}).get("traffic") == 0.1 and s["rollout"]["routing"])
                    rounds[case].append(measure())
                    rollback(name, "bench round", store=store)
                    wait(lambda s: not (s["rollout"] or {}).get("routing"))
            off, canary, shadow, everyone = (_median(rounds[k]) for k in ("off", "canary", "shadow", "shadow_all"))
            shadowed = _shadowed_shares(store, name, rollout_ids)
            state = start(name, challenger, spec.rollout, "bench", store=store)
            state = advance(name, store=store)
            for _ in range(2):
                state = advance(name, store=store)
            wait(lambda s: (s["rollout"] or {}).get("traffic") == 0.5 and s["rollout"]["routing"])
            rid = state.rollout_id
            on_challenger = lambda e: assign(rid, e, 0.5) == "challenger"  # noqa: E731
            canary_rb = rollback_under_load(
                port, sample, args.conns, args.rate, args.seconds,
                lambda: rollback(name, "bench", store=store), challenger, champion.tag, on_challenger,
            )  # fmt: skip

            start(name, challenger, spec.rollout, "bench again", store=store)
            for _ in range(5):
                state = advance(name, store=store)
            assert state.status == "completed"
            wait(lambda s: s["bundle"] == challenger and s["standby"] == champion.tag)
            standby_rb = rollback_under_load(
                port, sample, args.conns, args.rate, args.seconds,
                lambda: alias_rollback(name, "bench", store=store), challenger, champion.tag, lambda e: True,
            )  # fmt: skip

    if args.backend == "redis":
        _clear_redis_state(args.redis_url, spec.name)
    print(
        f"rollout bench: workers={args.workers}, {args.rows}-row models, loopback, same 2-core machine, "
        f"rollout record in {args.backend}, load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())} at the end"
    )
    print(f"rollback under load ({args.rate:.0f} req/s over {args.conns} connections, {args.seconds:.0f} s per run)")
    print(
        f"{'case':<36} {'requests':>8} {'old before':>10} {'switch ms':>9} {'write ms':>8} {'failed':>6} "
        f"{'misrouted':>9} {'p99 ms':>7}"
    )
    for label, r in (
        ("canary 50% -> champion (rollout)", canary_rb),
        ("champion -> warm standby (aliases)", standby_rb),
    ):
        print(
            f"{label:<36} {r['requests']:>8} {r['on_old_before']:>10} {r['switch_ms']:>9.1f} {r['write_ms']:>8.1f} "
            f"{r['failed']:>6} {r['misrouted']:>9} {r['p99_ms']:>7.1f}"
        )
    print("(switch ms: from the rollback call until the last request the old side answered was sent; write ms: the")
    print(" call itself, history + atomic replace + fsyncs; resolution: 2/rate between requests of one side;")
    print(f" target < {TARGET_S * 1e3:.0f} ms and zero failed)")
    print(
        f"\n/score?explain=false latency in ms, {args.requests} requests per case over {args.latency_conns} "
        f"connections, median of {args.rounds} interleaved rounds"
    )
    print(f"{'':<26} {'closed loop':^42} | {f'paced {args.rate:.0f} req/s':^32}")
    print(
        f"{'case':<26} {'cpu/req':>8} {'p50':>8} {'p99':>8} {'p99 ratio':>14} | {'p50':>8} {'p99':>8} {'p99 ratio':>14}"
    )
    cases = (
        ("no rollout", off),
        ("canary 10% (routing)", canary),
        ("shadow, share 1.0", everyone),
        (f"shadow, share {share:g} (spec)", shadow),
    )
    for label, r in cases:
        print(
            f"{label:<26} {r['cpu_ms']:>8.2f} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['p99'] / off['p99']:>13.2f}x | "
            f"{r['paced_p50']:>8.2f} {r['paced_p99']:>8.2f} {r['paced_p99'] / off['paced_p99']:>13.2f}x"
        )
    print(
        "(cpu/req: server CPU ms per request, all worker processes; target: p99 with routing and shadow on < 1.2x off)"
    )
    print(
        "shadowed share of the answered requests, from the request log: "
        + ", ".join(
            f"{label} {shadowed[case]:.3f}"
            for label, case in (("share 1.0", "shadow_all"), (f"share {share:g}", "shadow"))
        )
    )


if __name__ == "__main__":
    main()

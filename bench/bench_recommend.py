"""/recommend latency through the BentoML service on a large catalogue, vs the same recommender in-process.

Trains a small StreamRec system (one epoch, small towers: the catalogue size is what matters
for FAISS and candidate generation) directly through pipeline.recsys.system, writes it as a
registered champion bundle with its serving state, then:

* baseline: `OnlineRecommender.recommend` called in-process, one user after another (no HTTP,
  no JSON, no BentoML): what the recommendation itself costs;
* service: `bentoml serve` with the same bundle, loaded at concurrency 1/8/32 by a minimal
  keep-alive HTTP/1.1 client (httpx would cost ~1 ms of CPU per request on the same 2 cores),
  each request for another warm user; req/s, p50/p95/p99 and the mean time per stage from the
  answers' `timings_ms`; the CPU seconds of the busiest server processes show whether the workers
  share the load. Run once with BentoML's one shared listening socket and once with
  KEEL_REUSEPORT=1 (a socket per worker, pipeline/serving/reuseport.py): `--sockets`.

Target (issue 4): p95 < 50 ms at concurrency 8 on 2 cores, with a 100k-item catalogue.

    PYTHONPATH=. python bench/bench_recommend.py            # 100k items (not run on the shared box)
    PYTHONPATH=. python bench/bench_recommend.py --quick    # 20k items, fewer requests
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.serving_fixtures import running_service  # noqa: E402

STAGES = ("retrieval", "features", "ranking", "rerank", "total")

SPEC = """\
defaults:
  - contract: streamrec_interactions
  - model: two_tower
  - runtime: local
  - _self_
name: recbench
task: recommendation
data:
  source: synthetic:streamrec
  table: interactions
  rows: {rows}
  seed: 11
  scenario: {{items: {items}}}
  entity_id: interaction_id
  timestamp: timestamp
  label: clicked
  positive: 1
  user: user_id
  item: item_id
  items: {{table: items, id: item_id, attributes: {{language: categorical, genre: categorical}}}}
  users: {{table: users, id: user_id}}
  split: {{method: time, valid_fraction: 0.1, test_fraction: 0.2}}
model:
  features: [user_id, platform]
  item_features: [item_id]
  candidates: 500
  params: {{epochs: 1, embedding_dim: 32, hidden_dim: 64, batch_size: 1024}}
ranker:
  family: lightgbm_ranker
  params: {{threads: 1}}
  features: [retrieval_score, retrieval_rank, source, item_popularity, item_ctr, history_cooccurrence,
             impression_cooccurrence, user_language_affinity, user_genre_affinity, same_language, user_positives]
reranker: {{diversity_attribute: language, diversity_weight: 0.3, min_exposure_share: 0.05, latency_budget_share: 0.8}}
serving:
  sla_ms: 200
  max_k: 100
  stage_budget_ms: {{retrieval: 60, features: 20, ranking: 60}}
evaluation: {{top_k: 10}}
"""


def build(home: Path, spec_path: Path) -> tuple[str, list[str]]:
    """Fit, write, register and promote one bundle; returns (tag, warm user ids)."""
    from flows.validate import check_contract
    from pipeline.data.prepare import load_frame
    from pipeline.recsys import system
    from pipeline.recsys.package import write_system_bundle
    from pipeline.registry import BundleStore, promote, save_bundle
    from pipeline.spec.load import load_spec

    loaded = load_spec(spec_path)
    spec = loaded.spec
    accepted = check_contract.fn(load_frame(spec, loaded.base_dir), spec).accepted
    tables = system.load_side_tables(spec, loaded.base_dir)
    ex = system.make_examples(spec, accepted, tables)
    builder = system.feature_builder(spec, tables, ex)
    model = system.fit_two_tower(spec, accepted, tables, ex)
    index = system.build_index(spec, model)
    retrieval = system.Retrieval.fit(model, index, ex, spec.model.candidates)
    ranking = system.train_ranker(spec, builder, retrieval, ex, 0)
    attribute, exposure = system.diversity_attribute(spec, tables, ex)
    recommender = system.Recommender(spec, retrieval, builder, ranking, attribute, exposure)
    seen = system.all_positive_matrix(ex)
    source = home.parent / "src"
    write_system_bundle(source, loaded, model, index, recommender, tables, ex, {})  # the layout keel run writes
    store = BundleStore(home)
    ref = save_bundle(
        spec.name,
        source,
        spec_sha256=loaded.sha256,
        data_fingerprint="b",
        code_version="b",
        gate_passed=True,
        store=store,
    )
    promote(spec.name, ref.tag, "bench", store=store)
    warm = np.flatnonzero(np.diff(seen.indptr) > 0)
    print(
        f"catalogue {ex.n_items:,} items, {ex.n_users:,} users, {len(accepted):,} impressions; "
        f"ranker used: {ranking.ranker is not None}"
    )
    return ref.tag, [str(u) for u in ex.user_map.ids[warm]]


def in_process(home: Path, tag: str, spec_path: Path, users: list[str], k: int) -> dict[str, float]:
    """The baseline: the same recommender, same bundle, no HTTP."""
    import faiss

    from pipeline.recsys.bundle import load_recsys_bundle
    from pipeline.recsys.online import OnlineRecommender
    from pipeline.registry import BundleStore
    from pipeline.spec.load import load_spec

    faiss.omp_set_num_threads(1)  # as the service does (pipeline/serving/recommend.py)
    spec = load_spec(spec_path).spec
    rec = OnlineRecommender(tag, load_recsys_bundle(BundleStore(home).get(tag)), spec.serving)
    for user in users[:20]:
        rec.recommend(user, k)  # warm-up
    latencies, stages, levels = [], [], {}
    start, cpu = time.perf_counter(), time.process_time()
    for user in users:
        t = time.perf_counter()
        answer = rec.recommend(user, k)
        latencies.append((time.perf_counter() - t) * 1e3)
        stages.append(answer.timings_ms)
        levels[answer.level] = levels.get(answer.level, 0) + 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {**_summary(latencies, stages, elapsed, levels), "cpu_ms": cpu * 1e3 / len(users)}


async def _connection(port: int, bodies: list[bytes], latencies: list, stages: list, levels: dict) -> None:
    """One keep-alive client; when the server answers `Connection: close` it reconnects (the time counts)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    try:
        for body in bodies:
            request = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            start = time.perf_counter()
            if writer.is_closing():
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            header = await reader.readuntil(b"\r\n\r\n")
            status = int(header.split(b" ", 2)[1])
            lines = [x.lower() for x in header.split(b"\r\n")]
            length = next(int(x.split(b":", 1)[1]) for x in lines if x.startswith(b"content-length:"))
            payload = await reader.readexactly(length)
            latencies.append((time.perf_counter() - start) * 1e3)
            if b"connection: close" in lines:
                writer.close()
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {payload[:200]!r}")
            answer = json.loads(payload)
            stages.append(answer["timings_ms"])
            levels[answer["level"]] = levels.get(answer["level"], 0) + 1
    finally:
        writer.close()


def over_http(port: int, pid: int, users: list[str], k: int, concurrency: int, total: int) -> dict[str, float]:
    per = max(1, total // concurrency)
    rng = np.random.default_rng(concurrency)
    picks = rng.choice(len(users), per * concurrency)
    bodies = [json.dumps({"user_id": users[i], "k": k}).encode() for i in picks]
    latencies: list[float] = []
    stages: list[dict] = []
    levels: dict[str, int] = {}

    async def run() -> float:
        start = time.perf_counter()
        chunks = [bodies[c * per : (c + 1) * per] for c in range(concurrency)]
        await asyncio.gather(*(_connection(port, chunk, latencies, stages, levels) for chunk in chunks))
        return time.perf_counter() - start

    asyncio.run(_connection(port, bodies[:20], [], [], {}))  # warm-up
    before = cpu_seconds(pid)
    out = _summary(latencies, stages, asyncio.run(run()), levels)
    after = cpu_seconds(pid)
    out["cpu_ms"] = (sum(after.values()) - sum(before.values())) * 1e3 / len(latencies)
    busy = sorted(((after[p] - before.get(p, 0.0)) for p in after), reverse=True)
    out["split"] = busy[:3]  # the busiest processes' CPU seconds: shows whether the workers share the load
    return out


def cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU of the server and each of its children (BentoML's workers), from /proc via psutil."""
    import psutil

    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    out = {}
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        out[proc.pid] = times.user + times.system
    return out


def _summary(latencies: list[float], stages: list[dict], elapsed: float, levels: dict) -> dict:
    ms = np.asarray(latencies)
    out = {"rps": len(ms) / elapsed, **{f"p{q}": float(np.percentile(ms, q)) for q in (50, 95, 99)}}
    out["stages"] = {s: float(np.mean([t.get(s, 0.0) for t in stages])) for s in STAGES}
    out["levels"] = levels
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="20k items, fewer requests (a few minutes)")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--requests", type=int, default=None, help="requests per concurrency level")
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--workers", type=int, default=2, help="service worker processes (one per core)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--sockets", default="shared,reuseport", help="listening-socket modes to compare")
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for the service (repeatable), e.g. an experiment's knob"
    )
    args = parser.parse_args()
    items = args.items or (20_000 if args.quick else 100_000)
    rows = args.rows or (80_000 if args.quick else 300_000)
    requests = args.requests or (320 if args.quick else 1600)
    levels = [int(x) for x in args.levels.split(",")]
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    with tempfile.TemporaryDirectory(prefix="keel-bench-rec-") as tmp:
        spec_path = Path(tmp) / "recbench.yaml"
        spec_path.write_text(SPEC.format(rows=rows, items=items))
        home = Path(tmp) / "home"
        t = time.perf_counter()
        tag, users = build(home, spec_path)
        print(f"trained and registered in {time.perf_counter() - t:.0f} s")
        base = in_process(home, tag, spec_path, users[: max(200, requests // 2)], args.k)
        env = {"KEEL_SPEC": str(spec_path), "KEEL_WORKERS": str(args.workers), "KEEL_MAX_CONCURRENCY": "128"}
        env["KEEL_REQUEST_LOG"] = "1"
        env.update(dict(item.split("=", 1) for item in args.env))
        http: dict[tuple[str, int], dict] = {}
        for sockets in args.sockets.split(","):  # BentoML's one shared socket vs one per worker (ADR 0012)
            mode = {**env, "KEEL_REUSEPORT": "1" if sockets == "reuseport" else "0"}
            with running_service(home, mode) as (url, proc):
                port = int(url.rsplit(":", 1)[1])
                http.update({(sockets, c): over_http(port, proc.pid, users, args.k, c, requests) for c in levels})
    load = tuple(round(x, 2) for x in os.getloadavg())
    print(f"/recommend k={args.k}, {items:,}-item catalogue, {requests} requests/level, workers={args.workers}, "
          f"cpu_count={os.cpu_count()}, load average (1/5/15 min) at the end {load}")  # fmt: skip
    header = f"{'case':<26} {'req/s':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'cpu/req':>7} | "
    print(header + " ".join(f"{s:>9}" for s in STAGES) + " | levels")
    rows_out = [("in-process (baseline)", base)] + [(f"HTTP {m} conc {c}", r) for (m, c), r in http.items()]
    for name, r in rows_out:
        stage = " ".join(f"{r['stages'][s]:>9.2f}" for s in STAGES)
        head = f"{name:<26} {r['rps']:>7.0f} {r['p50']:>7.2f} {r['p95']:>7.2f} {r['p99']:>7.2f} {r['cpu_ms']:>7.2f}"
        print(f"{head} | {stage} | {r['levels']}")
    print(
        "(ms; cpu/req: CPU per request of the server's processes (in-process: of this process); stage columns:"
        " mean server-side time per stage from timings_ms; loopback, same machine; shared: BentoML's one"
        " listening socket, reuseport: KEEL_REUSEPORT=1, one per worker)"
    )
    for (m, c), r in http.items():
        split = ", ".join(f"{x:.2f}" for x in r["split"])
        print(f"{m} conc {c}: CPU s of the 3 busiest server processes: {split}")
    for (m, c), r in http.items():
        print(
            f"{m} conc {c}: p95 {r['p95'] / base['p95']:.1f}x the in-process p95; req/s {r['rps'] / base['rps']:.2f}x"
        )
    for (m, c), r in http.items():
        if c == 8:
            verdict = "meets" if r["p95"] < 50 else "MISSES"
            print(f"target p95 < 50 ms at concurrency 8 ({m}): {r['p95']:.1f} ms, {verdict} it")


if __name__ == "__main__":
    main()

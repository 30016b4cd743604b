"""Benchmark: the weekly high-risk list (`score_high_risk`) vs plain pandas + LightGBM on the same rows.

Usage: python bench/bench_batch.py [--rows 1000000] [--quick] [--train-rows 50000] [--repeat 3] [--reason-repeat 2]

The model is trained and registered the way `keel run` does it (the flow's own prepare/fit task
functions, `write_bundle_dir` + `save_bundle` into a throwaway BentoML home, `load_tabular_bundle`),
then both sides score the latest snapshot of `--rows` synthetic StreamFlow subscribers (held to the
contract first, untimed), without and with the top-3 tree-SHAP reasons. The baseline
(bench/plain_churn.py `score`) is what a plain script would write: derived features in numpy,
`Booster.predict` on the pandas frame, threshold + rank, `predict(pred_contrib=True)` on the listed
rows and an argsort for the top 3 feature names. Keel also words each reason against the training
median. Sides alternate (keel, plain, plain, keel) and the best time per side counts. It prints
figures; the only assertions check that both sides list the same subscribers in the same order with
the same probabilities, so both do the same job.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from bench.plain_churn import score as plain_score  # noqa: E402
from flows.train import fingerprint, fit_model, prepare_data  # noqa: E402
from pipeline.contracts.profile import build_profile  # noqa: E402
from pipeline.contracts.validate import validate_frame  # noqa: E402
from pipeline.data.synthetic.streamflow import generate  # noqa: E402
from pipeline.models.explain import FeatureReference  # noqa: E402
from pipeline.registry import BundleStore, save_bundle  # noqa: E402
from pipeline.registry.tabular import TabularBundle, load_tabular_bundle, write_bundle_dir  # noqa: E402
from pipeline.scoring.batch import HighRiskList, latest_snapshot, score_high_risk  # noqa: E402
from pipeline.spec.load import LoadedSpec, load_spec  # noqa: E402

SPEC_PATH = REPO / "specs" / "streamflow_churn.yaml"


def train_bundle(loaded: LoadedSpec, home: Path) -> TabularBundle:
    """Train with the flow's task bodies (no Prefect run) and round-trip through the registry like keel run."""
    spec = loaded.spec
    data = prepare_data.fn(spec, loaded.base_dir)
    model = fit_model.fn(spec, spec.model, data)
    train = data.splits["train"]
    profile = build_profile(data.contract.accepted, spec.contract, spec.contract.profile.bins)
    source = write_bundle_dir(
        home.parent / "bundle-src",
        model,
        spec.contract,
        spec.features.derived,
        FeatureReference.from_frame(train, model.features),
        {"test": {}},
        profile.to_json(),
        loaded.to_yaml(),
        spec.evaluation.threshold,
    )
    ref = save_bundle(
        spec.name,
        source,
        spec_sha256=loaded.sha256,
        data_fingerprint=fingerprint(train),
        code_version="bench",
        features=model.features,
        store=BundleStore(home),
    )
    return load_tabular_bundle(ref)


def snapshot(loaded: LoadedSpec, rows: int) -> pd.DataFrame:
    """`rows` fresh subscribers (another seed than training), held to the contract, latest snapshot each."""
    spec = loaded.spec
    frame = generate(rows, spec.data.seed + 1, spec.data.scenario)
    accepted = validate_frame(frame, spec.contract).accepted
    return latest_snapshot(accepted, spec.data.entity_id, spec.data.timestamp)


def alternate(keel: Callable[[], Any], plain: Callable[[], Any], repeat: int) -> tuple[float, Any, float, Any]:
    """Best of `repeat` per side, run keel, plain, plain, keel, ...: a load change on a shared box hits both alike."""
    times: dict[str, list[float]] = {"keel": [], "plain": []}
    results: dict[str, Any] = {}
    for i in range(repeat):
        for side in ("keel", "plain") if i % 2 == 0 else ("plain", "keel"):
            start = time.perf_counter()
            results[side] = (keel if side == "keel" else plain)()
            times[side].append(time.perf_counter() - start)
    return min(times["keel"]), results["keel"], min(times["plain"]), results["plain"]


def check_same(keel: HighRiskList, plain: pd.DataFrame, entity_id: str) -> float:
    """Apples to apples: the same subscribers in the same order with the same probabilities.

    Returns the share of listed rows whose Keel reasons name the plain top-3 features in the same order
    (Keel words only the features that raise the risk, so its list may be shorter).
    """
    ids = keel.frame[entity_id].astype(str).to_numpy()
    assert np.array_equal(ids, plain[entity_id].astype(str).to_numpy()), "listed subscribers differ"
    assert np.allclose(keel.frame["probability"].to_numpy(), plain["probability"].to_numpy(), rtol=0, atol=1e-12)
    if "reasons" not in plain or len(plain) == 0:
        return 1.0
    named = [[reason.split(" ", 1)[0] for reason in row] for row in keel.frame["reasons"]]
    return float(np.mean([mine == theirs[: len(mine)] for mine, theirs in zip(named, plain["reasons"], strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="subscribers to score")
    ap.add_argument("--quick", action="store_true", help="100k subscribers")
    ap.add_argument("--train-rows", type=int, default=50_000, help="rows the model is trained on")
    ap.add_argument("--repeat", type=int, default=3, help="best of N per side without reasons")
    ap.add_argument("--reason-repeat", type=int, default=2, help="best of N per side with reasons (tree SHAP: slow)")
    args = ap.parse_args()
    rows = 100_000 if args.quick else args.rows
    loaded = load_spec(SPEC_PATH, [f"data.rows={args.train_rows}"])
    spec = loaded.spec
    entity_id, threshold = spec.data.entity_id, spec.evaluation.threshold
    with tempfile.TemporaryDirectory(prefix="keel-bench-batch-") as tmp:
        bundle = train_bundle(loaded, Path(tmp) / "bentoml")
    booster = bundle.model.booster
    features = list(bundle.model.features)
    frame = snapshot(loaded, rows)
    print(
        f"cores: {os.cpu_count()}, lightgbm {lgb.__version__}, pandas {pd.__version__}; model: "
        f"{booster.num_trees()} trees, {args.train_rows:,} training rows; scoring {len(frame):,} subscribers"
    )
    for with_reasons in (False, True):
        repeat = args.reason_repeat if with_reasons else args.repeat
        n_reasons = 3 if with_reasons else 0
        keel_run = lambda r=n_reasons: score_high_risk(bundle, frame, entity_id, threshold, reasons=r)  # noqa: E731
        plain_run = lambda w=with_reasons: plain_score(booster, frame, features, entity_id, threshold, w)  # noqa: E731
        t_keel, listing, t_plain, plain = alternate(keel_run, plain_run, repeat)
        agree = check_same(listing, plain, entity_id)
        label = "with top-3 reasons" if with_reasons else "without reasons   "
        print(
            f"{label}: keel {len(frame) / t_keel:9,.0f} rows/s ({t_keel:7.2f} s), "
            f"plain {len(frame) / t_plain:9,.0f} rows/s ({t_plain:7.2f} s), ratio keel/plain {t_keel / t_plain:.2f}x; "
            f"listed {len(listing.frame):,}, best of {repeat}"
            + (f", same reason features as plain in {agree:.2%} of rows" if with_reasons else "")
        )


if __name__ == "__main__":
    main()

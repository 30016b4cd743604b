"""Build a small real churn bundle in a throwaway BentoML home, for the serving tests and the bench.

Training is real (LightGBM on a few thousand synthetic rows, derived features included) so
that the served probability can be checked against the model's own predict_proba.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pipeline.contracts.profile import build_profile
from pipeline.data.prepare import prepare
from pipeline.data.synthetic.streamflow import generate
from pipeline.models import build_model
from pipeline.models.explain import FeatureReference
from pipeline.registry import BundleStore, promote, save_bundle
from pipeline.registry.tabular import write_bundle_dir
from pipeline.spec.load import load_spec
from pipeline.spec.schema import ScenarioSpec

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "specs" / "streamflow_churn.yaml"


@dataclass
class BuiltBundle:
    home: Path
    tag: str
    name: str
    sample: list[dict[str, Any]]  # raw input records (input_columns only) from the test split
    entity_ids: list[str] = field(default_factory=list)  # the sample's subscriber ids, in order


FAILED_GATES = {
    "passed": False,
    "gates": [
        {"name": "auc_floor", "metric": "auc", "value": 0.61, "passed": False, "blocking": True,
         "rule": "auc >= 0.7", "reason": "auc 0.61 is below the minimum 0.7", "reference": None},
        {"name": "brier", "metric": "brier", "value": 0.1, "passed": True, "blocking": True,
         "rule": "brier <= 0.2", "reason": "ok", "reference": None},
    ],
}  # fmt: skip


def build_bundle(
    home: Path,
    rows: int = 4000,
    champion: bool = True,
    overrides: list[str] | None = None,
    gate_passed: bool = True,
) -> BuiltBundle:
    """Train (as `keel run` does: early stopping on the validation split), write, register, promote.

    `gate_passed=False` registers a bundle whose gate report (metrics.json) failed, as `keel run` does.
    """
    loaded = load_spec(SPEC_PATH, overrides)
    spec = loaded.spec
    frame = generate(rows, 11, ScenarioSpec())
    prepared = prepare(spec, frame)
    train = prepared.splits["train"]
    features = list(spec.model.features)
    model = build_model(spec.model, seed=0)
    valid = (prepared.splits["valid"][features], prepared.labels("valid", spec.data))
    model.fit(train[features], prepared.labels("train", spec.data), valid=valid)
    reference = FeatureReference.from_frame(train, features)
    profile = build_profile(train, spec.contract)
    home.parent.mkdir(parents=True, exist_ok=True)
    source = Path(tempfile.mkdtemp(prefix=f"{home.name}-src-", dir=home.parent))
    write_bundle_dir(
        source,
        model,
        spec.contract,
        dict(spec.features.derived),
        reference,
        {"auc": 0.8} if gate_passed else {"test": {"auc": 0.61}, "gates": FAILED_GATES},
        profile.to_json(),
        loaded.to_yaml(),
        threshold=float(spec.evaluation.threshold),
    )
    store = BundleStore(home)
    ref = save_bundle(
        spec.name,
        source,
        spec_sha256=loaded.sha256,
        data_fingerprint="test",
        code_version="test",
        features=features,
        metrics={"auc": 0.8},
        gate_passed=gate_passed,
        store=store,
    )
    if champion and gate_passed:
        promote(spec.name, ref.tag, "serving tests", store=store)
    from pipeline.registry.tabular import load_tabular_bundle

    columns = load_tabular_bundle(ref).input_columns
    test = prepared.splits["test"]
    head = test.head(50).to_dict("records")
    sample = [{c: _plain(row[c]) for c in columns} for row in head]
    return BuiltBundle(home, ref.tag, spec.name, sample, [str(row[spec.data.entity_id]) for row in head])


def _plain(value: Any) -> Any:
    """JSON-ready scalars (numpy ints/floats and pandas categoricals become Python values)."""
    if hasattr(value, "item"):
        return value.item()
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_service(home: Path, extra_env: dict[str, str] | None = None, wait_ready: bool = True):
    """`bentoml serve` in a subprocess on a free loopback port; yields (base_url, process)."""
    port = free_port()
    env = {**os.environ, "BENTOML_HOME": str(home), "KEEL_SPEC": str(SPEC_PATH), "PYTHONPATH": str(REPO)}
    env.update(extra_env or {})
    log = open(home.parent / f"serve-{port}.log", "w")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "bentoml", "serve", "pipeline.serving.service:ChurnService"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited {proc.returncode}: {_tail(log.name)}")
            with contextlib.suppress(httpx.HTTPError):
                code = httpx.get(f"{url}/livez", timeout=1).status_code
                if code == 200 and (not wait_ready or httpx.get(f"{url}/readyz", timeout=1).status_code == 200):
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"service not up in 60 s: {_tail(log.name)}")
        proc.log_path = log.name  # type: ignore[attr-defined]
        yield url, proc
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _tail(path: str, chars: int = 3000) -> str:
    return Path(path).read_text(errors="replace")[-chars:]

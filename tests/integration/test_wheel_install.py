"""The built wheel, installed into a fresh venv, checks, runs and serves a user's repository outside the checkout.

No index is reachable and the dependencies are large, so the fresh venv gets Keel from the wheel alone
(`pip install --no-deps`) and its dependencies from this checkout's .venv through one `.pth` file that
names .venv's site-packages. A plain path line in a .pth appends the directory to sys.path WITHOUT
processing the .pth files inside it, so the editable install of this checkout (.venv's
`__editable__.keel-*.pth` finder) is never activated: `import pipeline` can only be the wheel's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.integration.serving_fixtures import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def build_wheel(out: Path) -> Path:
    """`pip wheel --no-deps --no-build-isolation` (setuptools from .venv: no index needed) of a copy of the checkout.

    A copy: setuptools' in-tree build/ keeps files of modules deleted since, and the checkout stays clean.
    """
    source = out.parent / "source"
    skip = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "runs", ".keel", "*.egg-info", "__pycache__", "*.parquet"
    )
    shutil.copytree(REPO, source, ignore=skip)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source), "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = out.glob("keel-*.whl")
    return wheel


def venv_with_wheel(root: Path, wheel: Path) -> Path:
    """A fresh venv (no system site-packages) holding the wheel; dependencies through a .pth (module docstring)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "_keel_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: .venv's editable keel (seen through the .pth) must not count as "already installed"
    install = ["install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)]
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), *install],
        check=True,
        capture_output=True,
        timeout=300,
        env=clean,
    )
    return root / "bin"


def user_repository(root: Path) -> Path:
    """specs/my.yaml on a small Parquet file, with its own contract group conf/contract/my.yaml."""
    from pipeline.data.sources import load_source
    from pipeline.spec.schema import SourceSpec

    (root / "data").mkdir(parents=True)
    (root / "specs").mkdir()
    (root / "conf" / "contract").mkdir(parents=True)
    frame = load_source(SourceSpec(source="synthetic:streamflow", rows=3000, seed=3), root)
    frame.to_parquet(root / "data" / "subscribers.parquet", index=False)
    contract = yaml.safe_load((REPO / "conf" / "contract" / "streamflow.yaml").read_text())
    contract["name"] = "my-subscribers"
    (root / "conf" / "contract" / "my.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    spec = root / "specs" / "my.yaml"
    spec.write_text(
        """\
defaults:
  - contract: my          # this repository's conf/contract/my.yaml
  - model: lightgbm       # Keel's, from the installed package
  - runtime: local        # Keel's
  - _self_
name: my-churn
task: binary_classification
data:
  source: ../data/subscribers.parquet
  seed: 3
  entity_id: subscriber_id
  timestamp: snapshot_date
  label: churned
  positive: 1
  split: {method: time, valid_fraction: 0.1, test_fraction: 0.2}
model:
  features: [sessions_last_30d, avg_session_minutes, days_since_last_activity, monthly_charges, tenure_months]
  params: {n_estimators: 50}
gates:
  auc: {min: 0.5}
"""
    )
    return spec


def test_the_wheel_runs_a_user_repository_outside_the_checkout(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist")
    bin_dir = venv_with_wheel(tmp_path / "venv", wheel)
    user = tmp_path / "elsewhere" / "user-repo"
    user_repository(user)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "KEEL_", "BENTOML_", "PREFECT_"))}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "GX_ANALYTICS_ENABLED": "false"}
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"

    def keel(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bin_dir / "keel"), *args], cwd=user, env=env, capture_output=True, text=True, timeout=timeout
        )

    where = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            "import json, pipeline; from pipeline.spec.load import load_spec; l = load_spec('specs/my.yaml'); "
            "print(json.dumps({'package': pipeline.__file__, 'sources': [str(s.path) for s in l.provenance.sources],"
            " 'dirs': [str(d) for d in l.conf_dirs]}))",
        ],
        cwd=user,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0, where.stderr
    found = json.loads(where.stdout.splitlines()[-1])
    site = str(tmp_path / "venv")
    assert found["package"].startswith(site)  # the wheel's, not the checkout's
    keel_conf = Path(found["package"]).parent / "conf"
    assert found["dirs"] == [str(user / "conf"), str(keel_conf)]  # the user's groups first, Keel's last
    assert str(keel_conf / "model" / "lightgbm.yaml") in found["sources"]
    assert str(keel_conf / "runtime" / "local.yaml") in found["sources"]
    assert str(user / "conf" / "contract" / "my.yaml") in found["sources"]

    version = keel("--version")
    assert version.returncode == 0 and version.stdout.startswith("keel 0.1.0"), version.stderr
    check = keel("check", "specs/my.yaml")
    assert check.returncode == 0, check.stderr
    assert str(user / "data" / "subscribers.parquet") in check.stdout

    run = keel("run", "specs/my.yaml", "--json", timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["promoted"] and result["bundle"].startswith("my-churn:")
    assert (user / ".keel" / "bentoml" / "models" / "my-churn").is_dir()  # the project-local store, here
    assert (user / result["run_dir"]).is_dir()  # runtime.runs_dir (runs/) of the working directory

    port = free_port()  # keel serve from the wheel, in the user's repository: the champion keel run promoted
    with open(tmp_path / "serve.log", "w") as log:
        serving = subprocess.Popen(
            [str(bin_dir / "keel"), "serve", "specs/my.yaml", "--port", str(port)],
            cwd=user,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            status = _wait_status(f"http://127.0.0.1:{port}", serving, tmp_path / "serve.log")
        finally:
            serving.send_signal(signal.SIGTERM)  # keel serve stops its server's process group
            serving.wait(30)
    assert status["bundle"] == result["bundle"]

    init = keel("init", str(tmp_path / "scaffold"))
    assert init.returncode == 0, init.stderr
    scaffolded = subprocess.run(
        [str(bin_dir / "keel"), "check", "specs/churn.yaml"],
        cwd=tmp_path / "scaffold",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert scaffolded.returncode == 0, scaffolded.stderr


def _wait_status(url: str, proc: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return httpx.get(f"{url}/status", timeout=5).json()
        time.sleep(0.3)
    raise AssertionError(f"keel serve not ready in 90 s: {log.read_text()[-3000:]}")

"""`keel build`: a Bento that carries its bundle, Keel's code and the resolved spec, served far from the checkout.

The Bento is exported to a file, imported into a fresh BENTOML_HOME in another directory and served there by a
Python that has Keel's dependencies but NOT Keel (a venv whose .pth names .venv's site-packages without
processing its .pth files, so this checkout's editable install is not active: `import pipeline` can only find
the Bento's copy). Its /score answers must equal `keel serve`'s on the same bundle.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.serving_fixtures import _stop, build_bundle, free_port

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "streamflow_churn.yaml"
KEEL = Path(sys.executable).parent / "keel"
pytestmark = pytest.mark.slow


def _deps_only_python(root: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "_keel_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@contextlib.contextmanager
def _serving(cmd: list[str], cwd: Path, env: dict[str, str], log: Path):
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*cmd, "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()[-3000:]
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                time.sleep(0.3)
            else:
                raise AssertionError(f"not ready in 90 s: {log.read_text()[-3000:]}")
            yield url
        finally:
            _stop(proc)


def test_a_built_bento_serves_the_same_answers_anywhere(tmp_path: Path) -> None:
    built = build_bundle(tmp_path / "store")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "BENTOML_", "PYTHONPATH"))}
    env["GX_ANALYTICS_ENABLED"] = "false"
    here = {**env, "BENTOML_HOME": str(tmp_path / "store")}
    build = subprocess.run(
        [str(KEEL), "build", str(SPEC), "--json"], cwd=tmp_path, env=here, capture_output=True, text=True, timeout=600
    )
    assert build.returncode == 0, build.stderr[-3000:]
    result = json.loads(build.stdout.strip().splitlines()[-1])
    bento, bundle = result["bento"], result["bundle"]
    assert bundle == built.tag and result["host"] == "0.0.0.0"
    reqs = result["requirements"]
    assert "uvloop==0.23.0" in reqs and "bentoml==1.4.39" in reqs  # pinned from constraints.txt
    assert not any(r.startswith(("torch", "faiss")) for r in reqs)  # a classification bundle
    shipped = tmp_path / "ship" / "churn.bento"
    shipped.parent.mkdir()
    bentoml = [sys.executable, "-m", "bentoml"]
    subprocess.run([*bentoml, "export", bento, str(shipped)], env=here, check=True, capture_output=True, timeout=300)

    away = tmp_path / "elsewhere"
    away.mkdir()
    fresh = {**env, "BENTOML_HOME": str(away / "bentoml")}
    python = _deps_only_python(tmp_path / "deps-venv")
    gone = subprocess.run([str(python), "-c", "import pipeline"], cwd=away, env=fresh, capture_output=True)
    assert gone.returncode != 0  # Keel is not installed there: the Bento brings it
    subprocess.run(
        [str(python), "-m", "bentoml", "import", str(shipped)], cwd=away, env=fresh, check=True, capture_output=True
    )
    records = built.sample[:10]
    with _serving([str(python), "-m", "bentoml", "serve", bento], away, fresh, tmp_path / "bento.log") as url:
        from_bento = [httpx.post(f"{url}/score", json=r, timeout=10).json() for r in records]
        status = httpx.get(f"{url}/status", timeout=5).json()
    assert status["bundle"] == bundle
    with _serving([str(KEEL), "serve", str(SPEC)], tmp_path, here, tmp_path / "keel.log") as url:
        from_keel = [httpx.post(f"{url}/score", json=r, timeout=10).json() for r in records]
    assert [a["bundle"] for a in from_bento] == [bundle] * len(records) == [a["bundle"] for a in from_keel]
    assert [a["probability"] for a in from_bento] == [a["probability"] for a in from_keel]
    assert [a["reasons"] for a in from_bento] == [a["reasons"] for a in from_keel]


def _container_backend() -> str | None:
    """docker or podman when one is installed AND its daemon answers (`info` exits 0)."""
    for tool in ("docker", "podman"):
        if shutil.which(tool):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                if subprocess.run([tool, "info"], capture_output=True, timeout=20).returncode == 0:
                    return tool
    return None


BACKEND = _container_backend()


@pytest.mark.skipif(
    BACKEND is None,
    reason="bentoml containerize needs a running docker or podman: none is installed, or its daemon does not answer",
)
def test_containerize(tmp_path: Path) -> None:
    build_bundle(tmp_path / "store")
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "store"), "GX_ANALYTICS_ENABLED": "false"}
    build = subprocess.run(
        [str(KEEL), "build", str(SPEC), "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    bento = json.loads(build.stdout.strip().splitlines()[-1])["bento"]
    backend = ["--backend", BACKEND] if BACKEND != "docker" else []
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", "containerize", bento, *backend],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]

"""`keel build` of a recommendation bundle: the Bento (torch and faiss pinned) answers /recommend far from the
checkout exactly as `keel serve` does, for users with a history and for a user it has never seen.

As in test_bento_build.py: exported to a file, imported into a fresh BENTOML_HOME in another directory and
served there by a Python that has Keel's dependencies but not Keel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.integration.test_bento_build import _deps_only_python, _serving

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamrec.yaml")
KEEL = str(Path(sys.executable).parent / "keel")
SMALL = ["data.rows=20000", "data.scenario.items=1500", "model.params.epochs=2"]
pytestmark = pytest.mark.slow


def test_a_recommendation_bento_serves_the_same_lists_anywhere(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "BENTOML_", "PYTHONPATH"))}
    env |= {"GX_ANALYTICS_ENABLED": "false", "KEEL_WARM": "0"}
    here = {**env, "BENTOML_HOME": str(tmp_path / "store")}

    def keel(*args: str) -> dict:
        done = subprocess.run([KEEL, *args, "--json"], cwd=tmp_path, env=here, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    run = keel("run", SPEC, *SMALL, f"runtime.runs_dir={tmp_path / 'runs'}")
    built = keel("build", SPEC, *SMALL)
    assert built["bundle"] == run["bundle"]
    pinned = {r.split("==")[0] for r in built["requirements"]}
    assert {"torch", "faiss-cpu", "bentoml"} <= pinned  # what a recommendation bundle needs to load

    shipped = tmp_path / "ship" / "streamrec.bento"
    shipped.parent.mkdir()
    bentoml = [sys.executable, "-m", "bentoml"]
    subprocess.run([*bentoml, "export", built["bento"], str(shipped)], env=here, check=True, capture_output=True)
    away = tmp_path / "elsewhere"
    away.mkdir()
    fresh = {**env, "BENTOML_HOME": str(away / "bentoml")}
    python = _deps_only_python(tmp_path / "deps-venv")
    assert subprocess.run([str(python), "-c", "import pipeline"], cwd=away, env=fresh).returncode != 0
    subprocess.run(
        [str(python), "-m", "bentoml", "import", str(shipped)], cwd=away, env=fresh, check=True, capture_output=True
    )

    listed = pd.read_parquet(run["scoring"]["parquet"])
    users = [str(u) for u in listed.iloc[:, 0].drop_duplicates().head(5)] + ["never-seen-user"]
    requests = [{"user_id": user, "k": 8} for user in users]
    with _serving([str(python), "-m", "bentoml", "serve", built["bento"]], away, fresh, tmp_path / "b.log") as url:
        from_bento = [httpx.post(f"{url}/recommend", json=r, timeout=30) for r in requests]
    with _serving([KEEL, "serve", SPEC, *SMALL], tmp_path, here, tmp_path / "keel.log") as url:
        from_keel = [httpx.post(f"{url}/recommend", json=r, timeout=30) for r in requests]
    assert [r.status_code for r in from_bento] == [200] * len(requests) == [r.status_code for r in from_keel]
    bento_lists = [[item["item_id"] for item in r.json()["items"]] for r in from_bento]
    keel_lists = [[item["item_id"] for item in r.json()["items"]] for r in from_keel]
    assert bento_lists == keel_lists and all(len(items) == 8 for items in bento_lists)
    assert {r.json()["bundle"] for r in from_bento} == {run["bundle"]}

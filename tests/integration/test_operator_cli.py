"""The operator's path through the CLI: one store for every verb, and no champion swap under a live rollout."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamflow_churn.yaml")
SMALL = ["data.rows=3000"]

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def keel(*args: str) -> tuple[int, dict, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1]), out.getvalue() + err.getvalue()


def test_every_verb_uses_the_project_store_and_run_refuses_a_live_rollout(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BENTOML_HOME", raising=False)  # a plain shell: no store named anywhere
    store = (tmp_path / ".keel" / "bentoml").resolve()

    code, first, _ = keel("run", SPEC, *SMALL)
    assert code == 0 and first["promoted"], first
    assert json.loads((Path(first["run_dir"]) / "run.json").read_text())["store"] == str(store)
    code, listed, text = keel("models", "list", SPEC)
    assert code == 0 and listed["store"] == str(store) and listed["aliases"]["champion"] == first["bundle"]
    assert f"store {store}" in text

    # a retrain that rolls out: the new bundle is the challenger of a live rollout
    code, rolled, _ = keel("run", SPEC, *SMALL, "--rollout")
    assert code == 0, rolled
    code, status, _ = keel("rollout", "status", SPEC)
    assert status["rollout"]["status"] == "active"
    rollout_id = status["rollout"]["rollout_id"]

    # a plain run now would swap the champion under the rollout: refused, named, nothing trained
    code, refused, text = keel("run", SPEC, *SMALL)
    assert code == 1 and refused["status"] == "refused", refused
    assert rollout_id in text and "--abort-rollout" in text
    code, listed, _ = keel("models", "list", SPEC)
    assert len(listed["bundles"]) == 2 and listed["aliases"]["champion"] == first["bundle"]

    code, aborted, text = keel("run", SPEC, *SMALL, "--abort-rollout")
    assert code == 0 and aborted["promoted"], aborted
    assert f"rollout {rollout_id} rolled back" in text
    code, status, _ = keel("rollout", "status", SPEC)
    assert status["rollout"]["status"] == "rolled_back"

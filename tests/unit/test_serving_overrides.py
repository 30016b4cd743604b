"""`keel serve SPEC key=value`: the service's workers load the spec with the command line's overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.serving.loader import load_serving_spec

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "streamflow_churn.yaml"


def test_overrides_from_keel_serve_reach_the_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KEEL_OVERRIDES", json.dumps(["runtime.redis_url=redis://127.0.0.1:6390/3"]))
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "store"))
    spec, store = load_serving_spec(SPEC)
    assert spec.runtime.redis_url == "redis://127.0.0.1:6390/3"
    assert store.home == tmp_path / "store"


def test_without_overrides_the_file_is_served_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEEL_OVERRIDES", raising=False)
    spec, _ = load_serving_spec(SPEC)
    assert spec.runtime.redis_url is None

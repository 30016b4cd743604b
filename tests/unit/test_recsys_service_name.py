"""The recommendation BentoML service has its own name (it was the churn service's, keel-churn)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.serving import run

REPO = Path(__file__).resolve().parents[2]


class _Proc:
    def wait(self) -> int:
        return 0

    def poll(self) -> int:
        return 0


@pytest.mark.parametrize(
    ("spec", "name"), [("streamrec.yaml", "keel-recommend"), ("streamflow_churn.yaml", "keel-churn")]
)
def test_keel_serve_names_the_service_after_the_task(monkeypatch: pytest.MonkeyPatch, spec: str, name: str) -> None:
    seen: dict = {}

    def popen(cmd, env, **kwargs):
        seen.update(env)
        return _Proc()

    monkeypatch.setattr(run, "subprocess", SimpleNamespace(Popen=popen))  # this module's Popen only
    assert run.serve(REPO / "specs" / spec) == 0
    assert seen["KEEL_SERVICE_NAME"] == name == run.service_name("recommendation" if "rec" in spec else "binary")

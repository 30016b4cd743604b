"""`keel run` composes its spec once: the CLI hands the LoadedSpec to the flow (pipeline.spec.load.handing_over).

Counts compositions, not time (bench/bench_run.py --startup-only measures the start-up).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

import pipeline.spec.load as load_module
from pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamflow_churn.yaml")

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def test_keel_run_composes_the_spec_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    calls: list[str] = []
    real = load_module.compose_spec

    def counting(spec_path, overrides, conf_dirs):
        calls.append(str(spec_path))
        return real(spec_path, overrides, conf_dirs)

    monkeypatch.setattr(load_module, "compose_spec", counting)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["run", SPEC, "data.rows=3000", "~fairness", "~causal", "gates=[churn]", "--json"])
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert code in (0, 1), result
    assert calls == [SPEC]
    assert not load_module._HANDED  # the hand-over ends with the flow

"""The CLI's own contract: --json always ends with a JSON line, and keel check says where the data is."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamflow_churn.yaml")


def _run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(list(args))
    return code, out.getvalue()


def test_a_usage_error_with_json_still_ends_with_a_json_line() -> None:
    code, out = _run("check", SPEC, "-x", "--json")
    assert code == 2
    assert json.loads(out.strip().splitlines()[-1]) == {
        "status": "error",
        "problems": [{"reason": "usage: unrecognized arguments: -x"}],
    }


def test_check_prints_the_absolute_path_of_each_data_source(tmp_path: Path) -> None:
    code, out = _run("check", SPEC, "data.source=../elsewhere/d.csv", "--json")
    payload = json.loads(out.strip().splitlines()[-1])
    expected = str((REPO / "elsewhere" / "d.csv").resolve())  # relative to the spec's project, resolved
    assert code == 0 and payload["data_sources"]["data"] == expected
    assert f"data: {expected}" in out

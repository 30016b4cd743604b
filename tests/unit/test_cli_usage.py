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
    code, out, _ = _run_both(*args)
    return code, out


def _run_both(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_a_usage_error_with_json_still_ends_with_a_json_line() -> None:
    code, out = _run("check", SPEC, "-x", "--json")
    assert code == 2
    assert json.loads(out.strip().splitlines()[-1]) == {
        "status": "error",
        "problems": [{"reason": "usage: unrecognized arguments: -x"}],
    }


def test_check_prints_the_absolute_path_of_each_data_source(tmp_path: Path) -> None:
    code, out, err = _run_both("check", SPEC, "data.source=../elsewhere/d.csv", "--json")
    (line,) = out.strip().splitlines()  # --json: the JSON object alone on stdout, the words on stderr
    expected = str((REPO / "elsewhere" / "d.csv").resolve())  # relative to the spec's project, resolved
    assert code == 0 and json.loads(line)["data_sources"]["data"] == expected
    assert f"data: {expected}" in err

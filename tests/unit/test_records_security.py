"""What Keel writes holds no secret and says what it read (issues 15.8, 15.12)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.permissions import apply_umask
from pipeline.runs import create_run_dir
from pipeline.spec.load import load_spec
from pipeline.spec.secrets import SecretError, redact, redis_url, resolve

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "streamflow_churn.yaml"
SECRET = "hunter2"


def keel(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(args))
    return code, out.getvalue()


@pytest.mark.parametrize("key", ["runtime.redis_url", "runtime.prefect_api_url"])
def test_a_password_in_a_spec_url_is_refused_without_echoing_it(key: str) -> None:
    code, text = keel("check", str(SPEC), f"{key}=redis://admin:{SECRET}@127.0.0.1:6379/0", "--json")
    assert code == 2 and "env:NAME" in text
    assert SECRET not in text  # neither in the message nor in the --json problems


def test_a_reference_is_kept_as_written_and_resolved_only_when_used(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KEEL_TEST_REDIS", f"redis://:{SECRET}@127.0.0.1:6379/0")
    monkeypatch.delenv("KEEL_REDIS_URL", raising=False)
    loaded = load_spec(SPEC, ["runtime.redis_url=env:KEEL_TEST_REDIS", f"runtime.runs_dir={tmp_path}"])
    assert loaded.spec.runtime.redis_url == "env:KEEL_TEST_REDIS"
    assert redis_url(loaded.spec) == f"redis://:{SECRET}@127.0.0.1:6379/0"
    run = create_run_dir(loaded, "test")
    for name in ("run.json", "resolved_spec.yaml"):
        assert SECRET not in (run.path / name).read_text()
    monkeypatch.delenv("KEEL_TEST_REDIS")
    with pytest.raises(SecretError, match="KEEL_TEST_REDIS is not set"):
        resolve("env:KEEL_TEST_REDIS")


def test_redact_reaches_into_nested_records() -> None:
    record = {"overrides": [f"runtime.redis_url=redis://u:{SECRET}@h:6379/0"], "n": 3, "plain": "http://h/api"}
    assert json.dumps(redact(record)).count(SECRET) == 0
    assert redact(record)["overrides"] == ["runtime.redis_url=redis://u:***@h:6379/0"]
    assert redact(record)["plain"] == "http://h/api"


def test_files_keel_writes_are_owner_only(tmp_path: Path, monkeypatch) -> None:
    previous = os.umask(0o022)
    try:
        monkeypatch.delenv("KEEL_UMASK", raising=False)
        assert apply_umask() == 0o077
        (tmp_path / "list.csv").write_text("subscriber_id\n")
        (tmp_path / "requests").mkdir()
        assert stat.S_IMODE((tmp_path / "list.csv").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "requests").stat().st_mode) == 0o700
        monkeypatch.setenv("KEEL_UMASK", "027")
        assert apply_umask() == 0o027
    finally:
        os.umask(previous)


def test_a_run_records_the_sha256_of_each_input_file(tmp_path: Path) -> None:
    """Issue 15.12: two runs over a changed file differ in run.json, so the change is visible."""
    import hashlib

    import pandas as pd

    data = tmp_path / "snapshot.csv"
    pd.DataFrame({"a": [1, 2]}).to_csv(data, index=False)
    loaded = load_spec(SPEC, [f"data.source={data}", f"runtime.runs_dir={tmp_path / 'runs'}"])
    run = create_run_dir(loaded, "test")
    inputs = json.loads((run.path / "run.json").read_text())["inputs"]
    assert inputs["data"] == {
        "path": str(data.resolve()),
        "bytes": data.stat().st_size,
        "sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
    }

"""When a warm start would not be faithful, and which commands ask for one."""

from __future__ import annotations

import pytest

from pipeline.warm.client import wanted
from pipeline.warm.protocol import fingerprint, mismatch


def test_the_same_process_matches_itself() -> None:
    assert mismatch(fingerprint(), fingerprint()) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"python": "/other/python"}, "another interpreter"),
        ({"prefix": "/other/venv"}, "another venv"),
        ({"packages": {"/x/site-packages": 1}}, "packages were installed"),
    ],
)
def test_a_different_interpreter_or_package_set_is_refused(change: dict, reason: str) -> None:
    client = fingerprint() | change
    assert reason in (mismatch(client, fingerprint()) or "")


def test_an_import_time_setting_that_differs_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = fingerprint()
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    assert mismatch(fingerprint(), runner) == "OPENBLAS_NUM_THREADS differs from the runner's"


@pytest.mark.parametrize(
    ("argv", "warm"),
    [
        (["run", "s.yaml"], True),
        (["-q", "score", "s.yaml", "--data", "f.parquet"], True),
        (["show", "s.yaml"], False),
        (["serve", "s.yaml"], False),
        (["run", "--help"], False),
        ([], False),
    ],
)
def test_only_flow_verbs_go_to_the_runner(argv: list[str], warm: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEEL_WARM", raising=False)
    assert wanted(argv) is warm
    monkeypatch.setenv("KEEL_WARM", "off")
    assert wanted(argv) is False

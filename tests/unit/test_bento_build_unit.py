"""`keel build` (issue 16, part 2) without BentoML's build: requirements, bundle choice, host binding."""

from __future__ import annotations

import contextlib
import io
import re
import tomllib
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.packaging.bento import CORE, ENTRY, RECSYS, SERVE, requirements
from pipeline.packaging.bento_service import bind_host

REPO = Path(__file__).resolve().parents[2]


def test_the_bento_requirements_are_keels_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> list[str]:
        return [re.split(r"[<>=!~ ]", d, maxsplit=1)[0] for d in requirements]

    assert names(project["dependencies"]) == CORE
    assert names(project["optional-dependencies"]["serve"]) == SERVE
    assert names(project["optional-dependencies"]["recsys"]) == RECSYS


def test_requirements_are_pinned_from_constraints_and_recsys_only_for_recommendations() -> None:
    churn = requirements("binary_classification", REPO / "constraints.txt")
    assert "bentoml==1.4.39" in churn and "uvloop==0.23.0" in churn and "httptools==0.9.0" in churn
    assert "psycopg[binary]==3.3.9" in churn
    assert not any(r.startswith(("torch", "faiss")) for r in churn)
    recs = requirements("recommendation", REPO / "constraints.txt")
    assert "torch==2.13.0+cpu" in recs and "faiss-cpu==1.15.1" in recs and "implicit==0.7.3" in recs
    assert all("==" in r for r in recs)


def test_without_constraints_the_installed_versions_are_pinned() -> None:
    from importlib.metadata import version

    assert f"pandas=={version('pandas')}" in requirements("binary_classification", None)


def _build(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["build", str(REPO / "specs" / "streamflow_churn.yaml"), *args])
    return code, err.getvalue()


def test_no_champion_or_a_foreign_tag_is_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "empty"))
    code, err = _build()
    assert code == 2 and "has no champion bundle" in err
    code, err = _build("--bundle", "other:v1")
    assert code == 2 and "--bundle must be champion, challenger or streamflow-churn:VERSION" in err
    code, err = _build("--bundle", "streamflow-churn:nope")
    assert code == 2 and "not found" in err


def test_the_host_binds_as_built_unless_keel_host_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    class Service:
        config: dict = {"http": {"host": "127.0.0.1"}}  # noqa: RUF012

    bind_host(Service, {"host": "0.0.0.0"})
    assert Service.config["http"]["host"] == "0.0.0.0"
    monkeypatch.setenv("KEEL_HOST", "10.0.0.5")
    bind_host(Service, {"host": "0.0.0.0"})
    assert Service.config["http"]["host"] == "10.0.0.5"
    assert "prepare(HERE)" in ENTRY and ENTRY.index("prepare(HERE)") < ENTRY.index("import ChurnService")

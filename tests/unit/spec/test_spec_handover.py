"""handing_over: the flow `keel run` starts gets the spec the CLI composed, never a stale one.

Counts compositions (compose_spec calls), not time.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import pipeline.spec.load as load_module
from pipeline.spec.load import handing_over, load_spec

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def composed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every composition load_spec does from here on (the spec path of each)."""
    calls: list[Path] = []
    real = load_module.compose_spec

    def counting(spec_path, overrides, conf_dirs):
        calls.append(spec_path)
        return real(spec_path, overrides, conf_dirs)

    monkeypatch.setattr(load_module, "compose_spec", counting)
    return calls


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """specs/churn.yaml with its own conf/ (a copy of Keel's), so group files can be edited."""
    (tmp_path / "specs").mkdir()
    shutil.copy(REPO / "specs" / "streamflow_churn.yaml", tmp_path / "specs" / "churn.yaml")
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    return tmp_path / "specs" / "churn.yaml"


def test_the_same_request_inside_the_block_is_not_composed_again(project: Path, composed: list[Path]) -> None:
    loaded = load_spec(project, ["model.params.num_leaves=15"])
    with handing_over(loaded):
        again = load_spec(str(project), ["model.params.num_leaves=15"], [Path(d) for d in loaded.conf_dirs])
    assert again is loaded
    assert len(composed) == 1


def test_outside_the_block_or_for_another_request_it_composes(project: Path, composed: list[Path]) -> None:
    loaded = load_spec(project)
    with handing_over(loaded):
        other = load_spec(project, ["model.params.num_leaves=15"])
    after = load_spec(project)
    assert other.spec.model.params.num_leaves == 15
    assert after is not loaded and after.spec == loaded.spec
    assert len(composed) == 3


def test_an_edited_spec_is_composed_again(project: Path, composed: list[Path]) -> None:
    loaded = load_spec(project)
    with handing_over(loaded):
        project.write_text(project.read_text().replace("threshold: 0.20", "threshold: 0.30"))
        again = load_spec(project)
    assert again is not loaded
    assert (loaded.spec.evaluation.threshold, again.spec.evaluation.threshold) == (0.20, 0.30)
    assert len(composed) == 2


def test_an_edited_group_file_is_composed_again(project: Path, composed: list[Path]) -> None:
    loaded = load_spec(project)
    group = project.parents[1] / "conf" / "model" / "lightgbm.yaml"
    before = loaded.spec.model.params.num_leaves
    with handing_over(loaded):
        group.write_text(group.read_text().replace(f"num_leaves: {before}", "num_leaves: 7"))
        again = load_spec(project)
    assert again is not loaded and again.spec.model.params.num_leaves == 7
    assert len(composed) == 2


def test_a_new_file_that_shadows_a_group_file_is_composed_again(tmp_path: Path, composed: list[Path]) -> None:
    spec = tmp_path / "specs" / "churn.yaml"
    spec.parent.mkdir()
    shutil.copy(REPO / "specs" / "streamflow_churn.yaml", spec)
    (tmp_path / "conf" / "model").mkdir(parents=True)  # the project's conf/, searched before Keel's, empty so far
    loaded = load_spec(spec)
    with handing_over(loaded):
        keel_own = (REPO / "conf" / "model" / "lightgbm.yaml").read_text()
        (tmp_path / "conf" / "model" / "lightgbm.yaml").write_text(keel_own.replace("num_leaves: 31", "num_leaves: 9"))
        again = load_spec(spec)
    assert (loaded.spec.model.params.num_leaves, again.spec.model.params.num_leaves) == (31, 9)
    assert len(composed) == 2

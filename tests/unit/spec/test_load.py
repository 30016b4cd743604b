"""The reference specs load, overrides apply, and the resolved view is stable."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.spec.load import load_spec

SPECS = sorted((Path(__file__).resolve().parents[3] / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_reference_specs_load(path: Path) -> None:
    loaded = load_spec(path)
    assert loaded.spec.name
    assert len(loaded.sha256) == 64


def test_overrides_use_hydra_grammar(repo: Path) -> None:
    spec_path = repo / "specs" / "streamflow_churn.yaml"
    base = load_spec(spec_path)
    changed = load_spec(spec_path, ["model.params.num_leaves=63", "~triggers.drift", "+gates.f1={min: 0.3}"])
    assert base.spec.model.params.num_leaves == 31
    assert changed.spec.model.params.num_leaves == 63
    assert base.spec.triggers.drift is not None and changed.spec.triggers.drift is None
    assert changed.spec.gates["f1"].min == 0.3
    assert base.sha256 != changed.sha256


def test_group_option_can_be_swapped_from_the_command_line(repo: Path) -> None:
    loaded = load_spec(repo / "specs" / "streamflow_churn.yaml", ["model=logistic"])
    assert loaded.spec.model.family == "logistic"
    assert loaded.choices["model"] == "logistic"


def test_resolved_view_is_stable_and_complete(repo: Path) -> None:
    first = load_spec(repo / "specs" / "streamflow_churn.yaml")
    second = load_spec(repo / "specs" / "streamflow_churn.yaml")
    assert first.to_yaml() == second.to_yaml()
    resolved = first.resolved
    # defaults are filled in even where the spec and its groups say nothing
    assert resolved["contract"]["profile"]["bins"] == 10
    assert resolved["model"]["params"]["subsample"] == 1.0
    assert list(resolved)[:3] == ["name", "description", "task"]


def test_plain_interpolation_is_allowed(write_spec) -> None:
    path = write_spec(
        """
defaults: [{contract: streamflow}, {model: lightgbm}, _self_]
name: interp
task: binary_classification
data: {source: synthetic:streamflow, entity_id: subscriber_id, label: churned}
model: {features: ["${data.label_feature}"]}
""".replace("${data.label_feature}", "sessions_last_30d")
    )
    assert load_spec(path).spec.model.features == ["sessions_last_30d"]


def test_project_conf_dir_shadows_keel_conf(write_spec, tmp_path: Path) -> None:
    (tmp_path / "conf" / "gates").mkdir(parents=True)
    (tmp_path / "conf" / "gates" / "churn.yaml").write_text("auc: {min: 0.99}\n")
    path = write_spec(
        """
defaults: [{contract: streamflow}, {model: lightgbm}, {gates: churn}, _self_]
name: shadowed
task: binary_classification
data: {source: synthetic:streamflow, entity_id: subscriber_id, label: churned}
model: {features: [sessions_last_30d]}
"""
    )
    assert load_spec(path).spec.gates["auc"].min == 0.99

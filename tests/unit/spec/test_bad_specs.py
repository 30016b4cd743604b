"""Every kind of bad spec gives one paragraph naming file, line, key path and reason; exit 2.

One table of cases, in the style of Hydra's test_hydra_cli_errors: the spec text,
the overrides, and the substrings the error must contain.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.spec.errors import SpecError
from pipeline.spec.load import load_spec

GOOD = """\
defaults:
  - contract: streamflow
  - model: lightgbm
  - gates: churn
  - rollout: standard
  - triggers: weekly_drift
  - _self_
name: good-spec
task: binary_classification
data:
  source: synthetic:streamflow
  entity_id: subscriber_id
  timestamp: snapshot_date
  label: churned
model:
  features: [sessions_last_30d, plan_type]
"""


MASKED = """\
masked_churners:
  feature: {feature}
  segment: {segment}
  previous: {{source: synthetic:streamflow_previous}}
  fraction: {fraction}
"""


def _replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


CASES = [
    pytest.param(
        _replace("  timestamp:", "  timestmp:"),
        [],
        ["spec.yaml:13", "data.timestmp", "did you mean 'timestamp'"],
        id="typo-key",
    ),
    pytest.param(
        GOOD + "  params: {num_leaves: many}\n",
        [],
        ["spec.yaml:17", "model.params.num_leaves", "valid integer"],
        id="wrong-type",
    ),
    pytest.param(
        GOOD + "gates:\n  aucc: {min: 0.7}\n",
        [],
        ["spec.yaml:18", "gates.aucc", "unknown metric", "'auc'"],
        id="unknown-metric",
    ),
    pytest.param(
        _replace("sessions_last_30d, plan_type", "sessions_last_30d, plan_typ"),
        [],
        ["spec.yaml:16", "model.features.1", "unknown feature 'plan_typ'", "did you mean 'plan_type'"],
        id="unknown-feature",
    ),
    pytest.param(
        GOOD,
        ["rollout.stages.2.traffic=0.05"],
        ["command line override 'rollout.stages.2.traffic=0.05'", "never decrease"],
        id="traffic-decreases",
    ),
    pytest.param(
        GOOD + "triggers:\n  min_interval: 24 hours\n",
        [],
        ["spec.yaml:18", "triggers.min_interval", "cannot parse duration '24 hours'"],
        id="bad-duration",
    ),
    pytest.param(
        GOOD + "triggers:\n  schedule: {cron: '0 2 * *'}\n",
        [],
        ["spec.yaml:18", "triggers.schedule.cron", "cannot parse cron"],
        id="bad-cron",
    ),
    pytest.param(GOOD + "model_x: 1\n  bad: [\n", [], ["spec.yaml:18", "invalid YAML"], id="invalid-yaml"),
    pytest.param(
        GOOD + "name: again\n", [], ["spec.yaml:17", "name", "duplicate key (first set on line 8)"], id="duplicate-key"
    ),
    pytest.param(
        _replace("model: lightgbm", "model: lgbm"),
        [],
        ["spec.yaml:3", "defaults.model", "no option 'lgbm'", "did you mean 'lightgbm'"],
        id="unknown-option",
    ),
    pytest.param(
        GOOD + "  family: xgboost\n",
        [],
        ["spec.yaml:17", "model.family", "unknown model family 'xgboost'"],
        id="unknown-family",
    ),
    pytest.param(
        GOOD + "description: ${oc.env:HOME}\n",
        [],
        ["spec.yaml:17", "description", "resolver 'oc.env'"],
        id="env-resolver",
    ),
    pytest.param(
        GOOD + "  _target_: os.system\n", [], ["spec.yaml:17", "model._target_", "not allowed"], id="target-key"
    ),
    pytest.param(
        GOOD + "x: !!python/object/apply:os.system ['true']\n",
        [],
        ["spec.yaml:17", "YAML tag not allowed"],
        id="python-tag",
    ),
    pytest.param(
        _replace("name: good-spec", "name: ../../etc"),
        [],
        ["spec.yaml:8", "name", "invalid name"],
        id="path-traversal-name",
    ),
    pytest.param(
        GOOD,
        ["model.params.nope=1"],
        ["command line override 'model.params.nope=1'", "unknown key 'nope'"],
        id="override-unknown-key",
    ),
    pytest.param(
        GOOD, ["model.params.num_leaves=[1"], ["command line", "cannot parse override"], id="override-grammar"
    ),
    pytest.param(
        _replace("sessions_last_30d, plan_type", "churned"), [], ["model.features.0", "leaks"], id="label-leak"
    ),
    pytest.param(
        GOOD + MASKED.format(feature="sesions_last_30d", segment="plan_type", fraction=0.5),
        [],
        ["spec.yaml:18", "masked_churners.feature", "unknown feature 'sesions_last_30d'", "mean 'sessions_last_30d'"],
        id="masked-unknown-feature",
    ),
    pytest.param(
        GOOD + MASKED.format(feature="sessions_last_30d", segment="plan_tpye", fraction=0.5),
        [],
        ["spec.yaml:19", "masked_churners.segment", "unknown contract column 'plan_tpye'", "mean 'plan_type'"],
        id="masked-unknown-segment",
    ),
    pytest.param(
        GOOD + MASKED.format(feature="sessions_last_30d", segment="plan_type", fraction=1.5),
        [],
        ["spec.yaml:21", "masked_churners.fraction", "less than or equal to 1"],
        id="masked-fraction-above-1",
    ),
    pytest.param(
        GOOD + MASKED.format(feature="sessions_last_30d", segment="plan_type", fraction=0.5),
        ["masked_churners.fraction=-0.1"],
        ["command line override 'masked_churners.fraction=-0.1'", "greater than or equal to 0"],
        id="masked-fraction-negative",
    ),
    pytest.param(
        GOOD + MASKED.format(feature="plan_type", segment="monthly_charges", fraction=0.5),
        [],
        ["masked_churners.feature", "needs a numeric feature", "masked_churners.segment", "segment needs a category"],
        id="masked-wrong-dtypes",
    ),
    pytest.param(
        GOOD + "fairness:\n  groups: [[age_band], [plan_tpye, age_band]]\n",
        [],
        ["spec.yaml:18", "fairness.groups.1.0", "unknown column 'plan_tpye'", "mean 'plan_type'"],
        id="fairness-group-typo",
    ),
    pytest.param(
        GOOD,
        ["monitoring.features=[sessions_last_30d,sesions]"],
        ["monitoring.features.1", "unknown feature 'sesions'"],
        id="monitored-feature-typo",
    ),
]


@pytest.mark.parametrize(("text", "overrides", "expected"), CASES)
def test_bad_spec_is_explained(write_spec, text: str, overrides: list[str], expected: list[str]) -> None:
    path = write_spec(text)
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides)
    message = info.value.render()
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    assert "Traceback" not in message


def test_all_errors_of_a_file_are_reported_together(write_spec) -> None:
    text = _replace("  timestamp:", "  timestmp:") + "  params: {num_leavs: 3, learning_rate: fast}\n"
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(text))
    keys = {p.key for p in info.value.problems}
    assert {"data.timestmp", "model.params.num_leavs", "model.params.learning_rate"} <= keys


def test_semantic_errors_are_reported_together(write_spec) -> None:
    text = _replace("sessions_last_30d, plan_type", "sesions, plan_typ") + "gates:\n  aucc: {min: 0.7}\n"
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(text))
    assert len(info.value.problems) == 3


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_cli_exits_2_without_traceback(write_spec) -> None:
    path = write_spec(_replace("  timestamp:", "  timestmp:"))
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "check", str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "data.timestmp" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_cli_json_reports_problems(write_spec, capsys) -> None:
    path = write_spec(_replace("  timestamp:", "  timestmp:"))
    assert main(["check", str(path), "--json"]) == 2
    import json

    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["status"] == "error"
    assert payload["problems"][0]["key"] == "data.timestmp"
    assert payload["problems"][0]["line"] == 13

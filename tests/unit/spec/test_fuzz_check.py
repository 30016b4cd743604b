"""Standing fuzz test: whatever a spec or an override holds, `keel check` answers 0 or 2, never a traceback.

Hypothesis feeds random values and types, unicode, deep nesting and resolver strings as
spec keys (written into the spec file) and as command-line overrides, through
`pipeline.cli.main` in-process. The invariant is the CLI contract (docs/cli.md): exit 0
or 2, no traceback, and with `--json` the last line of stdout is one JSON object.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from tests.unit.spec.test_bad_specs import GOOD

EXAMPLES = int(os.environ.get("KEEL_FUZZ_EXAMPLES", "35"))
"""Per test; about 20 s for both on two busy cores. KEEL_FUZZ_EXAMPLES=2000 for a longer soak."""

KEYS = [
    "name",
    "description",
    "task",
    "data.source",
    "data.rows",
    "data.seed",
    "data.split.test_fraction",
    "data.scenario.corrupt_fraction",
    "model.params.num_leaves",
    "model.params.learning_rate",
    "model.features",
    "evaluation.threshold",
    "gates.auc.min",
    "gates.auc.max",
    "gates.auc_vs.max_drop",
    "contract.columns.tenure_months.min",
    "contract.max_quarantine_fraction",
    "triggers.drift.psi_above",
    "rollout.stages.0.traffic",
    "monitoring.psi_alert",
    "features.derived.x.expr",
    "model",
    "contract",
    "hydra.job.chdir",
]
RESOLVERS = [
    "${oc.env:HOME}",
    "${oc.${name}:HOME}",
    "${${name}:HOME}",
    "${oc.select:nope,${oc.env:HOME}}",
    "${oc.select:data.rows,1}",
    "${data.rows}",
    "${oc.decode:'1'}",
    "\\${oc.env:HOME}",
    "${now:%Y}",
    "${",
    "${oc.${oc.${name}}:X}",
]
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.sampled_from(RESOLVERS),
    st.sampled_from(["nan", ".nan", "inf", "-inf", "1e39", "10^39", "../../x", "/etc/passwd", "[[[[", "'", "~"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3))
KEY = st.one_of(st.sampled_from(KEYS), TEXT.filter(lambda k: "=" not in k))


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _override_value(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, allow_nan=True) if isinstance(value, list | dict) else str(value)


OVERRIDE = st.one_of(
    st.builds(lambda k, v: f"{k}={_override_value(v)}", KEY, VALUES),
    st.builds(lambda k, v: f"+{k}={_override_value(v)}", KEY, VALUES),
    st.builds(lambda k, d: f"{k}={_deep(d)}", st.sampled_from(KEYS), st.integers(1, 3000)),
    st.builds(lambda k: f"~{k}", st.sampled_from(KEYS)),
    TEXT,
).filter(lambda text: not text.startswith("-"))  # a leading '-' is an option for argparse, not an override


def _spec_text(key: str, value: object, depth: int) -> str:
    """GOOD with `key` set to `value` (dotted keys become nesting), optionally a deep list appended."""
    node: object = value
    for part in reversed(key.split(".")):
        node = {part: node}
    try:
        extra = yaml.safe_dump(node, allow_unicode=True)
    except yaml.YAMLError:
        extra = ""
    return GOOD + extra + (f"deep: {_deep(depth)}\n" if depth else "")


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz") / "specs"
    folder.mkdir()
    return folder


def _check(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    capsys.readouterr()
    code = main(["check", *argv, "--json"])
    captured = capsys.readouterr()
    assert code in (0, 2), (argv, captured.err[-2000:])
    assert "Traceback" not in captured.out + captured.err
    last = captured.out.strip().splitlines()[-1]
    assert json.loads(last)["status"] in ("ok", "error")


@settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(overrides=st.lists(OVERRIDE, min_size=1, max_size=3), multirun=st.booleans())
def test_any_override_gives_0_or_2(
    spec_dir: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], multirun: bool
) -> None:
    path = spec_dir / "good.yaml"
    if not path.exists():
        path.write_text(GOOD)
    _check(capsys, [*(["-m"] if multirun else []), str(path), *overrides])


@settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=KEY, value=VALUES, depth=st.sampled_from([0, 0, 0, 40, 3000]))
def test_any_spec_value_gives_0_or_2(
    spec_dir: Path, capsys: pytest.CaptureFixture[str], key: str, value: object, depth: int
) -> None:
    path = spec_dir / "fuzzed.yaml"
    path.write_text(_spec_text(key, value, depth), encoding="utf-8")
    _check(capsys, [str(path)])

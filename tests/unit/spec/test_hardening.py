"""Issue 15 (spec side): inputs that used to disable a gate, leak a secret, hang or crash `keel check`.

Each case is refused with exit 2 and a Problem naming file, line, key path and reason;
none may end in a traceback, and `--json` always prints its JSON object last.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.spec.errors import SpecError
from pipeline.spec.load import load_spec
from tests.unit.spec.test_bad_specs import GOOD

SECRET = "s3cr3t-value-from-the-environment"


def _fails(path: Path, overrides: list[str] | None = None) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides or [])
    return info.value.render()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, dict]:
    code = main(["check", *argv, "--json"])
    captured = capsys.readouterr()
    payload = json.loads(captured.out.strip().splitlines()[-1])
    assert "Traceback" not in captured.out + captured.err
    return code, captured.err, payload


# ---------------------------------------------------------------- 1. non-finite bounds


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        pytest.param(GOOD + "gates:\n  auc: {min: .nan}\n", [], ["spec.yaml:18", "gates.auc.min", "finite"], id="yaml"),
        pytest.param(GOOD, ["gates.auc.min=nan"], ["override 'gates.auc.min=nan'", "finite"], id="nan"),
        pytest.param(GOOD, ["gates.auc.max=inf"], ["gates.auc.max", "finite"], id="inf"),
        pytest.param(GOOD, ["gates.auc.min='nan'"], ["gates.auc.min", "finite"], id="quoted-nan"),
        pytest.param(GOOD, ["contract.columns.tenure_months.min=-inf"], ["tenure_months.min", "finite"], id="contract"),
        pytest.param(GOOD, ["triggers.drift.psi_above=.inf"], ["triggers.drift.psi_above", "finite"], id="threshold"),
        pytest.param(GOOD, ["evaluation.threshold=nan"], ["evaluation.threshold"], id="rate"),
        pytest.param(GOOD, ["gates.auc.min=70"], ["gates.auc.min", "above the range of auc [0, 1]"], id="auc-percent"),
        pytest.param(
            GOOD, ["+gates.error_rate={max: 5}"], ["gates.error_rate.max", "checks nothing"], id="error-rate-percent"
        ),
    ],
)
def test_bounds_must_be_finite_and_in_range(write_spec, text: str, overrides: list[str], expected: list[str]) -> None:
    message = _fails(write_spec(text), overrides)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_nan_gate_exits_2_with_json_last(write_spec, capsys) -> None:
    code, err, payload = _cli(capsys, str(write_spec(GOOD)), "gates.auc.min=nan")
    assert code == 2
    assert payload["status"] == "error" and payload["problems"][0]["key"] == "gates.auc.min"
    assert "not a finite number" in err


# ---------------------------------------------------------------- 3. resolver names built by interpolation

NESTED = "${oc.${name}:KEEL_TEST_SECRET}"


def _env_spec(write_spec, description: str) -> Path:
    return write_spec(GOOD.replace("name: good-spec", "name: env") + f"description: '{description}'\n")


@pytest.mark.parametrize(
    "description",
    [
        NESTED,
        "${${name}:KEEL_TEST_SECRET}",
        "${oc.select:nope,${oc.${name}:KEEL_TEST_SECRET}}",
        "prefix ${oc.${name}:KEEL_TEST_SECRET} suffix",
    ],
)
def test_resolver_built_by_interpolation_is_refused_in_a_spec(write_spec, monkeypatch, description: str) -> None:
    monkeypatch.setenv("KEEL_TEST_SECRET", SECRET)
    message = _fails(_env_spec(write_spec, description))
    assert "spec.yaml:17" in message and "description" in message
    assert "built by an interpolation" in message
    assert SECRET not in message


def test_resolver_built_by_interpolation_is_refused_in_an_override(write_spec, monkeypatch, capsys) -> None:
    monkeypatch.setenv("KEEL_TEST_SECRET", SECRET)
    path = write_spec(GOOD.replace("name: good-spec", "name: env"))
    message = _fails(path, [f"description='{NESTED}'"])
    assert "command line override" in message and "built by an interpolation" in message
    code, err, payload = _cli(capsys, str(path), f"description='{NESTED}'")
    assert code == 2 and SECRET not in err + json.dumps(payload)


def test_resolver_built_by_interpolation_is_refused_in_a_group_file(write_spec, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KEEL_TEST_SECRET", SECRET)
    group = tmp_path / "conf" / "model"
    group.mkdir(parents=True)
    text = f"family: lightgbm\nfeatures: [plan_type]\nparams: {{class_weight: '{NESTED}'}}\n"
    (group / "leaky.yaml").write_text(text)
    path = write_spec(GOOD.replace("name: good-spec", "name: env").replace("model: lightgbm", "model: leaky"))
    message = _fails(path)
    assert re.search(r"conf/model/leaky.yaml:3: model.params.class_weight: resolver name", message), message
    assert SECRET not in message


def test_plain_resolver_in_an_override_is_still_refused(write_spec) -> None:
    assert "resolver 'oc.env'" in _fails(write_spec(GOOD), ["description=${oc.env:HOME}"])


# ---------------------------------------------------------------- 5. alias bombs and oversized files


def _bomb(levels: int = 6) -> str:
    lines = ['  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghij"
    for prev, name in itertools.pairwise(names[: levels + 1]):
        lines.append(f"  {name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    return "bomb:\n" + "\n".join(lines) + "\n"


@pytest.mark.timeout(30)
def test_alias_bomb_in_the_spec_is_refused_fast(write_spec, capsys) -> None:
    path = write_spec(GOOD + _bomb())
    assert len(_bomb()) < 1024
    message = _fails(path)
    assert "spec.yaml:" in message and "expands to more than" in message
    code, _, payload = _cli(capsys, str(path))
    assert code == 2 and "aliases" in payload["problems"][0]["reason"]


@pytest.mark.timeout(30)
def test_alias_bomb_in_a_config_group_file_is_refused_fast(write_spec, tmp_path: Path) -> None:
    group = tmp_path / "conf" / "contract"
    group.mkdir(parents=True)
    (group / "bomb.yaml").write_text("name: bomb\ncolumns: {}\n" + _bomb())
    message = _fails(write_spec(GOOD.replace("contract: streamflow", "contract: bomb")))
    assert "conf/contract/bomb.yaml" in message and "expands to more than" in message


def _interpolation_bomb(copy_lists: bool) -> str:
    text, previous = "bomb:\n  a: 'xxxxxxxxxx'\n", "a"
    for name in "bcdefghi":
        refs = ["${bomb." + previous + "}"] * 10
        text += f"  {name}: [{', '.join(repr(r) for r in refs)}]\n" if copy_lists else f"  {name}: '{''.join(refs)}'\n"
        previous = name
    return text


@pytest.mark.timeout(30)
@pytest.mark.parametrize("copy_lists", [False, True], ids=["strings", "subtrees"])
def test_interpolation_bomb_is_refused_before_resolving(write_spec, copy_lists: bool) -> None:
    """`${a}` ten times per level, eight levels: 10^9 characters (or nodes) from a 1 KB spec."""
    text = _interpolation_bomb(copy_lists)
    assert len(text) < 1200
    message = _fails(write_spec(GOOD + text))
    assert "interpolations multiply what they repeat" in message and "bomb." in message


def test_ordinary_interpolations_still_resolve(write_spec) -> None:
    text = GOOD + "description: '${name} on ${data.source} (${oc.select:data.entity_id,x})'\n"
    assert load_spec(write_spec(text)).spec.description == "good-spec on synthetic:streamflow (subscriber_id)"


def test_recursive_alias_is_refused(write_spec) -> None:
    assert "not closed yet" in _fails(write_spec(GOOD + "loop: &loop [1, *loop]\n"))


def test_oversized_spec_is_refused(write_spec) -> None:
    message = _fails(write_spec(GOOD + "description: '" + "x" * (1 << 20) + "'\n"))
    assert "bytes" in message and "at most" in message


def test_deep_yaml_nesting_is_refused(write_spec, tmp_path: Path) -> None:
    assert "nested more than" in _fails(write_spec(GOOD + "deep: " + "[" * 5000 + "]" * 5000 + "\n"))
    group = tmp_path / "conf" / "contract"
    group.mkdir(parents=True)
    (group / "deep.yaml").write_text("name: deep\ncolumns: {}\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    message = _fails(write_spec(GOOD.replace("contract: streamflow", "contract: deep"), name="deep.yaml"))
    assert "conf/contract/deep.yaml" in message and "nested more than" in message


# ---------------------------------------------------------------- 6. tracebacks that must be exit 2


@pytest.mark.parametrize(
    ("expr", "expected"),
    [("-" * 1500 + "sessions_last_30d", "nests 1502 levels"), ("1+" * 900 + "tenure_months", "nests")],
)
def test_deeply_nested_expression_exits_2(write_spec, capsys, expr: str, expected: str) -> None:
    text = GOOD + f"features:\n  derived:\n    deep: {{expr: '{expr}'}}\n"
    code, err, payload = _cli(capsys, str(write_spec(text)))
    assert code == 2
    assert "features.derived.deep.expr" in err and expected in err
    assert payload["problems"][0]["line"] == 19


@pytest.mark.parametrize(
    ("text", "overrides"),
    [
        pytest.param(GOOD.replace("  source:", "  rows: " + "1" + "0" * 39 + "\n  source:"), [], id="int"),
        pytest.param(GOOD, ["data.rows=1e39"], id="float"),
        pytest.param(GOOD, ["data.rows=10^39"], id="caret"),
        pytest.param(GOOD, ["data.rows=2000000000"], id="above-cap"),
        pytest.param(GOOD, ["data.seed=100000000000000000000000000"], id="seed"),
    ],
)
def test_huge_numbers_exit_2(write_spec, capsys, text: str, overrides: list[str]) -> None:
    code, err, payload = _cli(capsys, str(write_spec(text)), *overrides)
    assert code == 2 and payload["status"] == "error"
    assert "data." in err or "command line" in err


@pytest.mark.parametrize("multirun", [False, True])
@pytest.mark.parametrize(
    "override",
    ["x=" + "[" * 3000 + "]" * 3000 + ",1", "x=[" + "[" * 40 + "1" + "]" * 40 + "]", "+=", "=1", "model=[null]"],
)
def test_deep_or_keyless_override_exits_2(write_spec, capsys, override: str, multirun: bool) -> None:
    """Found by test_fuzz_check: Hydra's recursive override parser (also in the sweep pre-check) and its asserts."""
    code, _, payload = _cli(capsys, *(["-m"] if multirun else []), str(write_spec(GOOD)), override)
    assert code == 2 and payload["status"] == "error"


# ---------------------------------------------------------------- 9. hydra blocks


def test_hydra_block_in_a_spec_is_refused(write_spec) -> None:
    message = _fails(write_spec(GOOD + "hydra:\n  job:\n    chdir: true\n"))
    assert "spec.yaml:17: hydra: a 'hydra' block is not allowed" in message


def test_hydra_block_in_a_global_group_file_is_refused(write_spec, tmp_path: Path) -> None:
    group = tmp_path / "conf" / "model"
    group.mkdir(parents=True)
    text = "# @package _global_\nhydra:\n  run: {dir: /tmp/x}\nmodel: {family: lightgbm, features: [plan_type]}\n"
    (group / "glob.yaml").write_text(text)
    message = _fails(write_spec(GOOD.replace("model: lightgbm", "model: glob")))
    assert "conf/model/glob.yaml:2: hydra:" in message


@pytest.mark.parametrize("override", ["hydra/launcher=basic", "hydra.job.chdir=true", "+hydra@x=y"])
def test_hydra_overrides_are_refused(write_spec, override: str) -> None:
    assert "Hydra's own" in _fails(write_spec(GOOD), [override])


def test_hydra_group_in_defaults_is_refused(write_spec) -> None:
    text = GOOD.replace("  - _self_", "  - override hydra/job_logging: disabled\n  - _self_")
    assert "defaults.hydra/job_logging" in _fails(write_spec(text))


# ---------------------------------------------------------------- 10. group choices are names, not paths


@pytest.fixture
def outside(tmp_path: Path, repo: Path) -> Path:
    """A valid contract file outside every config search path."""
    target = tmp_path / "outside"
    target.mkdir()
    (target / "c.yaml").write_text((repo / "conf" / "contract" / "streamflow.yaml").read_text())
    return target


def test_path_in_defaults_is_refused(write_spec, outside: Path) -> None:
    message = _fails(write_spec(GOOD.replace("contract: streamflow", "contract: ../../outside/c")))
    assert "spec.yaml:2: defaults.contract" in message and "not a plain option name" in message


@pytest.mark.parametrize(
    "override", ["contract=../../outside/c", "contract=../outside/c", "model=/etc/passwd", "contract=[../../x]"]
)
def test_path_in_a_group_override_is_refused(write_spec, outside: Path, override: str) -> None:
    message = _fails(write_spec(GOOD), [override])
    assert "command line override" in message and "not a plain option name" in message


def test_path_in_a_group_files_defaults_is_refused(write_spec, outside: Path, tmp_path: Path) -> None:
    group = tmp_path / "conf" / "model"
    group.mkdir(parents=True)
    text = "defaults:\n  - /contract/../../outside/c@_global_.contract\nfamily: lightgbm\nfeatures: [plan_type]\n"
    (group / "evil.yaml").write_text(text)
    message = _fails(write_spec(GOOD.replace("model: lightgbm", "model: evil")))
    assert "conf/model/evil.yaml" in message and "is not a config name" in message


def test_resolver_in_a_group_files_defaults_is_refused(write_spec, monkeypatch, tmp_path: Path) -> None:
    """Hydra resolves defaults-list interpolations while composing: the environment would pick the option."""
    monkeypatch.setenv("KEEL_TEST_SECRET", "streamflow")
    group = tmp_path / "conf" / "model"
    group.mkdir(parents=True)
    text = "defaults:\n  - /contract@_global_.contract: ${oc.env:KEEL_TEST_SECRET}\nfamily: lightgbm\nfeatures: [a]\n"
    (group / "envdef.yaml").write_text(text)
    message = _fails(write_spec(GOOD.replace("model: lightgbm", "model: envdef")))
    assert "conf/model/envdef.yaml" in message and "resolver 'oc.env'" in message


def test_plain_group_choices_still_work(write_spec) -> None:
    loaded = load_spec(write_spec(GOOD), ["model=logistic", "gates=[churn,churn_fairness]"])
    assert loaded.spec.model.family == "logistic"
    assert loaded.data_sources()["data"] == "synthetic:streamflow"


def test_data_sources_are_resolved_to_absolute_paths(write_spec, tmp_path: Path) -> None:
    loaded = load_spec(write_spec(GOOD), ["data.source=../../elsewhere/d.csv"])
    assert loaded.data_sources()["data"] == str((tmp_path / "specs" / "../../elsewhere/d.csv").resolve())

"""Review in pull requests (issue 16, part 3): markdown, verdict, --exit-code, --changed-since, keel schema."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from pipeline.cli import main
from pipeline.packaging.init import init_project
from pipeline.spec.diff import diff_specs
from pipeline.spec.json_schema import spec_json_schema
from pipeline.spec.load import load_spec
from pipeline.spec.review import default_specs_folder, render_markdown, verdict

REPO = Path(__file__).resolve().parents[3]
BASE = REPO / "specs" / "streamflow_churn.yaml"


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _changed() -> tuple[dict, dict]:
    old = load_spec(BASE).resolved
    new = copy.deepcopy(old)
    new["gates"]["auc"]["min"] = 0.8
    new["gates"]["brier"]["max"] = 0.1
    new["contract"]["columns"]["tenure_months"]["max"] = 100
    return old, new


def test_the_verdict_counts_what_a_reviewer_must_see() -> None:
    old, new = _changed()
    assert verdict(diff_specs(old, new)) == "2 gates stricter, 1 contract range narrowed, 0 removed"
    del new["gates"]["pr_auc"]
    new["description"] = "other"
    assert verdict(diff_specs(old, new)) == "2 gates stricter, 1 contract range narrowed, 1 other change, 1 removed"
    assert verdict([]) == "no changes"


def test_markdown_has_the_verdict_first_and_a_heading_per_concern() -> None:
    old, new = _changed()
    text = render_markdown(diff_specs(old, new), "a.yaml@main", "a.yaml")
    lines = text.splitlines()
    assert lines[0] == "### `a.yaml`"
    assert lines[2] == "**2 gates stricter, 1 contract range narrowed, 0 removed** (vs `a.yaml@main`)"
    assert "#### Contract" in lines and "#### Gates" in lines
    assert lines.index("#### Contract") < lines.index("#### Gates")
    assert "- gate auc: min 0.75 -> 0.8 (stricter)" in lines


def test_exit_code_is_1_only_when_the_resolved_specs_differ(tmp_path: Path) -> None:
    same = tmp_path / "specs" / "same.yaml"
    same.parent.mkdir()
    shutil.copy(BASE, same)
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    assert _run("diff", str(BASE), str(same), "--exit-code")[0] == 0
    code, out, _ = _run("diff", str(BASE), str(same), "gates.auc.min=0.9", "--exit-code", "--json")
    assert code == 0 and json.loads(out.splitlines()[-1])["verdict"] == "no changes"
    code, out, _ = _run(
        "diff", str(BASE), str(same), "--change", "gates.auc.min=0.9", "--exit-code", "--format", "markdown"
    )
    assert code == 1 and "**1 gate stricter, 0 removed**" in out
    assert _run("diff", str(BASE), str(same), "--change", "gates.auc.min=0.9")[0] == 0  # no --exit-code: 0


def test_default_specs_folder() -> None:
    assert default_specs_folder(["diff", "--changed-since", "main"]) == ["diff", "specs", "--changed-since", "main"]
    assert default_specs_folder(["diff", "--format", "markdown", "--changed-since=main"])[1] == "specs"
    assert default_specs_folder(["diff", "mine/", "--changed-since", "main"]) == [
        "diff",
        "mine/",
        "--changed-since",
        "main",
    ]
    assert default_specs_folder(["diff", "a.yaml", "b.yaml"]) == ["diff", "a.yaml", "b.yaml"]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_changed_since_reviews_every_spec_a_change_alters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The review workflow `keel init` writes, on a two-commit repository: a group change reaches its spec."""
    init_project(tmp_path, "0.1.0")
    spec = (tmp_path / "specs" / "churn.yaml").read_text()
    (tmp_path / "specs" / "steady.yaml").write_text(spec.replace("gates: project", "gates: churn"))
    (tmp_path / "specs" / "gone.yaml").write_text(spec.replace("name: churn", "name: gone"))

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True
        )

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "base")
    gates = tmp_path / "conf" / "gates" / "project.yaml"
    gates.write_text(gates.read_text().replace("auc: {min: 0.70}", "auc: {min: 0.75}"))
    (tmp_path / "specs" / "gone.yaml").unlink()
    (tmp_path / "specs" / "fresh.yaml").write_text(spec.replace("name: churn", "name: fresh"))
    git("add", "-A")
    git("commit", "-qm", "stricter project gate, one spec replaced")
    monkeypatch.chdir(tmp_path)
    workflow = yaml.safe_load((tmp_path / ".github/workflows/keel-review.yml").read_text())
    step = next(s["run"] for s in workflow["jobs"]["review"]["steps"] if "keel diff" in s.get("run", ""))
    assert '--changed-since "origin/${{ github.base_ref }}" --format markdown' in step

    code, out, _ = _run("diff", "--changed-since", "HEAD~1", "--format", "markdown", "--exit-code")
    assert code == 1
    assert out.startswith("## Keel review: 3 of 4 specs change (vs `HEAD~1`)")
    assert "### `specs/churn.yaml`" in out and "**1 gate stricter, 0 removed**" in out
    assert "- gate auc: min 0.7 -> 0.75 (stricter)" in out
    assert "### `specs/fresh.yaml`\n\n**new spec**" in out and "### `specs/gone.yaml`\n\n**spec removed**" in out
    assert "Unchanged: `specs/steady.yaml`" in out
    code, out, _ = _run("diff", "--changed-since", "HEAD~1", "--json")
    payload = json.loads(out.splitlines()[-1])
    assert code == 0 and payload["changed"] == ["specs/churn.yaml", "specs/fresh.yaml", "specs/gone.yaml"]
    code, out, _ = _run("diff", "--changed-since", "HEAD", "--exit-code")
    assert code == 0 and "no spec's resolved configuration changed since HEAD (3 specs checked)" in out
    (tmp_path / "specs" / "fresh.yaml").write_text(spec.replace("gates: project", "gates: nosuch"))
    code, _, err = _run("diff", "--changed-since", "HEAD")
    assert code == 2 and "nosuch" in err  # a spec that no longer composes fails the review job
    assert _run("diff", "--changed-since", "no-such-rev")[0] == 2


SPEC_FILES = [*sorted((REPO / "specs").glob("*.yaml")), REPO / "examples" / "attrition" / "attrition.yaml"]


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_the_json_schema_accepts_real_specs(path: Path) -> None:
    validator = jsonschema.Draft202012Validator(spec_json_schema())
    assert not [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]


def test_the_json_schema_refuses_unknown_keys_and_wrong_types(tmp_path: Path) -> None:
    code, out, _ = _run("schema", "--out", str(tmp_path / "keel-spec.json"))
    assert code == 0 and "yaml-language-server: $schema=" in out
    schema = json.loads((tmp_path / "keel-spec.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    spec = yaml.safe_load(BASE.read_text())
    assert not list(validator.iter_errors(load_spec(BASE).resolved))  # the resolved spec too
    for key, value in (("modle", 1), ("task", "regression")):
        assert list(validator.iter_errors({**spec, key: value})), key
    spec["data"]["rows"] = "many"
    assert list(validator.iter_errors(spec))
    spec["data"]["rows"] = "${oc.select:x,1}"
    assert not list(validator.iter_errors(spec))  # an interpolation is left to keel check

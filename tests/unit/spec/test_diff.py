"""`keel diff` says in words what a spec change does."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.spec.diff import diff_specs, render
from pipeline.spec.load import load_spec

REPO = Path(__file__).resolve().parents[3]
BASE = REPO / "specs" / "streamflow_churn.yaml"


def _variant(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "specs" / "variant.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BASE.read_text() + extra)
    return path


def _texts(old: Path, new: Path) -> list[str]:
    return [c.text for c in diff_specs(load_spec(old).resolved, load_spec(new).resolved)]


def test_threshold_change_is_explained(tmp_path: Path) -> None:
    texts = _texts(BASE, _variant(tmp_path, "gates:\n  auc: {min: 0.85}\n  brier: {max: 0.25}\n"))
    assert "gate auc: min 0.75 -> 0.85 (stricter)" in texts
    assert "gate brier: max 0.2 -> 0.25 (looser)" in texts


def test_new_allowed_value_is_explained(tmp_path: Path) -> None:
    plans = "[basic, standard, premium, family, student]"
    extra = f"contract:\n  columns:\n    plan_type: {{dtype: category, allowed: {plans}}}\n"
    assert _texts(BASE, _variant(tmp_path, extra)) == ["feature plan_type: new allowed value 'student'"]


def test_stage_change_is_explained(tmp_path: Path) -> None:
    extra = (
        "rollout:\n  stages:\n    - {name: shadow, traffic: 0.0, duration: 7d}\n"
        "    - {name: canary, traffic: 0.2, duration: 2d}\n    - {name: full, traffic: 1.0, duration: 1d}\n"
    )
    texts = _texts(BASE, _variant(tmp_path, extra))
    assert "stage canary: 10% for 3d -> 20% for 2d" in texts
    assert "stage ramp-25: removed (was 25% for 1d)" in texts


def test_changes_are_grouped_by_concern(tmp_path: Path) -> None:
    new = _variant(tmp_path, "gates:\n  auc: {min: 0.8}\nselection: {cv_folds: 5}\n")
    changes = diff_specs(load_spec(BASE).resolved, load_spec(new).resolved)
    assert [c.concern for c in changes] == ["model", "gates"]
    assert render(changes).splitlines() == [
        "model:",
        "  - selection.cv_folds: 3 -> 5",
        "gates:",
        "  - gate auc: min 0.75 -> 0.8 (stricter)",
    ]


def test_identical_specs_have_no_changes() -> None:
    assert diff_specs(load_spec(BASE).resolved, load_spec(BASE).resolved) == []


def test_cli_diff_json(tmp_path: Path) -> None:
    new = _variant(tmp_path, "gates:\n  auc: {min: 0.85}\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["diff", str(BASE), str(new), "--json"]) == 0
    payload = json.loads(out.getvalue().strip().splitlines()[-1])
    assert payload["changes"] == [
        {
            "concern": "gates",
            "path": "gates.auc.min",
            "old": 0.75,
            "new": 0.85,
            "text": "gate auc: min 0.75 -> 0.85 (stricter)",
        }
    ]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_diff_against_git_revision_uses_that_revisions_conf(tmp_path: Path) -> None:
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    shutil.copytree(REPO / "specs", tmp_path / "specs")

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True
        )

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "base")
    gates = tmp_path / "conf" / "gates" / "churn.yaml"
    gates.write_text(gates.read_text().replace("auc: {min: 0.75}", "auc: {min: 0.80}"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(
            [
                "diff",
                str(tmp_path / "specs" / "streamflow_churn.yaml"),
                "--against",
                "HEAD",
                "--conf",
                str(tmp_path / "conf"),
            ]
        )
    assert code == 0
    assert "gate auc: min 0.75 -> 0.8 (stricter)" in out.getvalue()


def test_diff_against_unknown_revision_is_a_clear_error(tmp_path: Path) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["diff", str(BASE), "--against", "no-such-rev-xyz"]) == 2
    assert "git" in err.getvalue() and "Traceback" not in err.getvalue()


def test_masked_churner_changes_are_explained() -> None:
    old = load_spec(BASE).resolved
    new = copy.deepcopy(old)
    new["masked_churners"].update(fraction=0.3, feature="engagement_intensity", enabled=False)
    changes = diff_specs(old, new)
    assert {c.concern for c in changes} == {"scoring"}
    assert [c.text for c in changes] == [
        "masked churners: disabled (no list is written)",
        "masked churners: fraction 0.5 -> 0.3 (lists fewer entities)",
        "masked churners feature: sessions_last_30d -> engagement_intensity",
    ]
    removed = {k: v for k, v in old.items() if k != "masked_churners"}
    [added] = diff_specs(removed, old)
    assert added.text == (
        "masked churners: added (sessions_last_30d rises less than 50% of its plan_type median "
        "since synthetic:streamflow_previous)"
    )
    assert diff_specs(old, removed)[0].text.startswith("masked churners: removed (was sessions_last_30d rises")


def test_overrides_are_named_per_side_and_change_applies_to_the_new_side_only() -> None:
    """`keel diff A A model=logistic` used to say only "no changes": the override was invisible."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["diff", str(BASE), str(BASE), "model=logistic"]) == 0
    text = out.getvalue()
    assert "[model=logistic]" in text.splitlines()[0] and "apply to both sides" in text
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["diff", str(BASE), str(BASE), "--change", "model=logistic", "--json"]) == 0
    payload = json.loads(out.getvalue().strip().splitlines()[-1])
    assert {"path": "model.family", "old": "lightgbm", "new": "logistic"}.items() <= next(
        c for c in payload["changes"] if c["path"] == "model.family"
    ).items()
    assert payload["new"].endswith("[model=logistic]") and "[" not in payload["old"]
